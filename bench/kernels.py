"""Benchmark: the native g-network decode kernel per MLP width, for each build the CPU runs.

`gnet` decodes on the CPU through the fused per-pair kernel of
`genome/native/pairs.cpp`, built for the widest vectors the CPU has: 512-bit
(AVX-512) where torch runs at that level, else 256-bit (AVX2 + FMA). Every
build gives the same bits (tests/test_native.py); this measures what each
costs, side by side in one process: each repeat decodes the same population
with every build in turn, then with the plain torch path
(`INNATE_KERNELS=torch`) where it fits in memory. The widths are those of the
compression curve's g-networks on the MNIST body (784 -> 800 -> 10, binary
codes, from about 10x to 3,000x) and the README's faces body (25x25 -> 32 ->
1, [8, 8], a population of 64).

    python bench/kernels.py [--threads 1] [--repeats 5] [--no-torch]
    git show REV:genome/native/pairs.cpp > old.cpp && python bench/kernels.py --against old.cpp

Prints ms per genome (best and median over the repeats) and GFLOP/s of the
best, from `GNet.decode_flops`.

`--against FILE` times the pair kernel alone (`innate_pairs`: the per-pair
MLP and the rows' standardisation, whose C interface every version shares)
built from FILE, another version's source, side by side in each repeat with
this version's, on the same projections and parameters, both built here
with the first flag set the CPU runs; it prints ms per genome for each,
their ratio, and whether their weights agree to the bit.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import genome.native as native
import genome.native.build as native_build
from genome import Layout
from genome.decoders.gnet import GNet

# (what, input sheet, hidden layers, outputs, g-network widths, population)
CASES = [
    ("faces 25x25 -> 32 -> 1", (25, 25), [32], 1, [8, 8], 64),
    ("MNIST 784 -> 800 -> 10, ~3,000x", (28, 28), [800], 10, [4, 4], 16),
    ("MNIST, ~1,000x", (28, 28), [800], 10, [10, 10], 8),
    ("MNIST, ~300x", (28, 28), [800], 10, [23, 23], 4),
    ("MNIST, ~100x", (28, 28), [800], 10, [47, 47], 2),
    ("MNIST, ~30x", (28, 28), [800], 10, [93, 93], 1),
    ("MNIST, ~10x", (28, 28), [800], 10, [168, 168], 1),
]
# The torch path holds [pairs, width] per layer: left out above this many floats.
TORCH_MAX_FLOATS = 200_000_000


def builds() -> dict[str, list[list[str]]]:
    """Each build the CPU runs, by name: its flag sets, best first (as `flag_sets` gives them)."""
    out = {"default": native_build.flag_sets()}
    if native_build.AVX512[0] in out["default"][0]:
        openmp = ["-fopenmp"] if "-fopenmp" in out["default"][0] else []
        out["AVX2"] = [[*native_build.FLAGS, *native_build.AVX2, *openmp]]
    return out


def library_of(flag_sets: list[list[str]]):
    """A loader for `genome.native` that builds with these flag sets only."""
    loaded: dict = {}

    def build_library(real: str, widths: tuple[int, ...]):
        if (real, widths) not in loaded:
            saved = native_build.flag_sets
            native_build.flag_sets = lambda: [list(f) for f in flag_sets]
            try:
                loaded[real, widths] = native_build.build_library.__wrapped__(real, widths)
            finally:
                native_build.flag_sets = saved
        return loaded[real, widths]

    return build_library


def pairs_library(source: Path, widths: tuple[int, ...]) -> ctypes.CDLL:
    """The pair kernel built from `source` with the first flag set the CPU runs (float)."""
    defines = [
        "-DREAL=float",
        f"-DWIDTHS={','.join(map(str, widths))}",
        f"-DN_WIDTHS={len(widths)}",
    ]
    stem = f"against-{'x'.join(map(str, widths))}"
    compiler = os.environ.get("CXX", "g++")
    lib = native_build._load(compiler, native_build.flag_sets()[0], defines, stem, source)
    if isinstance(lib, str):
        sys.exit(f"cannot build {source}: {lib}")
    i32, i64, ptr, dbl = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p, ctypes.c_double
    lib.innate_pairs.argtypes = [i32] + [i64] * 6 + [ptr] * 5 + [dbl, dbl]
    lib.innate_pairs.restype = None
    return lib


def pair_calls(decoder: GNet, pop: torch.Tensor, threads: int):
    """Per layer, the arguments of `innate_pairs` (but the output) and the output [p, out, in]."""
    genes = decoder.blocks().split(pop)
    h = decoder.settings["hidden"]
    codes = [native.codes_layout(c) for c in decoder.layout.codes("binary")]
    calls, keep = [], []
    for k, (n_post, n_pre) in enumerate(decoder.layout.layer_shapes()):
        a = native.project(codes[k], genes[f"l{k}.pre"])
        b = native.project(codes[k + 1], genes[f"l{k}.post"], genes[f"l{k}.b1"])
        names = [genes[f"l{k}.{x}{j + 1}"].flatten(1) for j in range(1, len(h)) for x in "wb"]
        params = torch.cat([*names, genes[f"l{k}.out"]], dim=1)
        mult = decoder.multiplier(n_pre, genes[f"l{k}.gain"]).contiguous()
        out = torch.empty(pop.shape[0], n_post, n_pre)
        keep += [a, b, params, mult]
        sizes = (n_post, n_pre, a.shape[2], b.shape[2])
        ptrs = (a.data_ptr(), b.data_ptr(), params.data_ptr())
        tail = (mult.data_ptr(), native.REL_EPS, torch.finfo(torch.float32).tiny)
        calls.append(((threads, 0, pop.shape[0] * n_post, *sizes, *ptrs), tail, out))
    return calls, keep


def against(source: Path, repeats: int, threads: int) -> None:
    """This version's pair kernel and `source`'s, side by side on the same inputs."""
    print(f"\npair kernel alone (innate_pairs), this version against {source}, {threads} thread(s)")
    print("| body | widths | against: ms per genome (median) | this version | ratio | same bits |")
    print("|---|---|---|---|---|---|")
    for what, sheet, hidden, outs, widths, pop_size in CASES:
        decoder = GNet(Layout.build(sheet, hidden, outs), hidden=widths, code="binary")
        pop = decoder.init(pop_size, torch.Generator().manual_seed(0))
        # Both built here from their sources with the same flags (the first set the CPU runs).
        libs = {
            "against": pairs_library(source, tuple(widths)),
            "this": pairs_library(native_build.SOURCE, tuple(widths)),
        }
        runs = {name: pair_calls(decoder, pop, threads) for name in libs}
        times: dict[str, list[float]] = {name: [] for name in libs}
        for r in range(repeats + 1):  # the first round warms up
            for name, lib in libs.items():
                t0 = time.perf_counter()
                for head, tail, out in runs[name][0]:
                    lib.innate_pairs(*head, out.data_ptr(), *tail)
                if r:
                    times[name].append(time.perf_counter() - t0)
        same = all(
            torch.equal(x[2], y[2])
            for x, y in zip(runs["against"][0], runs["this"][0], strict=True)
        )
        best = {n: min(ts) / pop_size * 1e3 for n, ts in times.items()}
        med = {n: statistics.median(ts) / pop_size * 1e3 for n, ts in times.items()}
        cells = [f"{best[n]:.3f} ({med[n]:.3f})" for n in libs]
        ratio = best["against"] / best["this"]
        print(f"| {what} | {widths} | {' | '.join(cells)} | {ratio:.2f}x | {same} |", flush=True)


def timed(decoder: GNet, pop: torch.Tensor) -> float:
    t0 = time.perf_counter()
    decoder.decode(pop)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-torch", action="store_true", help="leave out the plain torch path")
    ap.add_argument("--against", type=Path, metavar="FILE", help="another version's pairs.cpp")
    args = ap.parse_args()
    if args.threads < 1 or args.repeats < 1:
        ap.error("--threads and --repeats must be >= 1")
    if args.against is not None and not args.against.is_file():
        ap.error(f"--against: no file {args.against}")
    torch.set_num_threads(args.threads)
    if args.against is not None:
        against(args.against, args.repeats, args.threads)
        return
    loaders = {name: library_of(sets) for name, sets in builds().items()}
    lanes = {}
    for name, load in loaders.items():
        lib = load("float", (8, 8))
        if isinstance(lib, str):
            sys.exit(f"the {name} build of the kernels failed: {lib}")
        lanes[name] = lib.innate_lanes()
    print(
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{args.threads} thread(s), best and median of {args.repeats}; "
        + ", ".join(f"{n} build: {lanes[n]} float lanes" for n in loaders)
    )
    names = [*loaders, *([] if args.no_torch else ["torch path"])]
    head = " | ".join(f"{n}: ms per genome (median) | GFLOP/s" for n in names)
    print(f"| body | widths | genes | {head} |")
    print("|---|---|---|" + "---|---|" * len(names))
    original = native.build_library
    try:
        for what, sheet, hidden, outs, widths, pop_size in CASES:
            decoder = GNet(Layout.build(sheet, hidden, outs), hidden=widths, code="binary")
            pop = decoder.init(pop_size, torch.Generator().manual_seed(0))
            pairs = max(o * i for o, i in decoder.layout.layer_shapes())
            times: dict[str, list[float]] = {n: [] for n in names}
            run_torch = not args.no_torch and pairs * max(widths) * pop_size <= TORCH_MAX_FLOATS
            for r in range(args.repeats + 1):  # the first round builds and warms up
                for name, load in loaders.items():
                    native.build_library = load
                    with native.use("native"):
                        t = timed(decoder, pop)
                    if r:
                        times[name].append(t)
                if run_torch:
                    with native.use("torch"):
                        t = timed(decoder, pop)
                    if r:
                        times["torch path"].append(t)
            flops = decoder.decode_flops()
            cells = []
            for name in names:
                ts = times[name]
                if not ts:
                    cells.append("- | -")
                    continue
                best, med = min(ts) / pop_size, statistics.median(ts) / pop_size
                cells.append(f"{best * 1e3:.2f} ({med * 1e3:.2f}) | {flops / best / 1e9:.1f}")
            genes = decoder.genome_length()
            print(f"| {what} | {widths} | {genes:,} | " + " | ".join(cells) + " |", flush=True)
    finally:
        native.build_library = original


if __name__ == "__main__":
    main()
