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

Prints ms per genome (best and median over the repeats) and GFLOP/s of the
best, from `GNet.decode_flops`.
"""

from __future__ import annotations

import argparse
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


def timed(decoder: GNet, pop: torch.Tensor) -> float:
    t0 = time.perf_counter()
    decoder.decode(pop)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-torch", action="store_true", help="leave out the plain torch path")
    args = ap.parse_args()
    if args.threads < 1 or args.repeats < 1:
        ap.error("--threads and --repeats must be >= 1")
    torch.set_num_threads(args.threads)
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
