"""Benchmark: a population's sampling with the native noise kernel against torch's, and ROC-AUC's two paths.

Sampling is what EvoTorch's separable Gaussians (SNES, CEM) do each
generation: `out.normal_(generator=g); out *= sigma; out += mu` on a
population [P, D]. `genome.native.noise.normal_` draws the same bits (tests
hold it to that) with its kernel, the scale and shift in the same pass. Each
repeat times both, side by side in one process, on the same shapes: the faces
body's direct genome (64 x 20,065), digits' (64 x 79,510), a large
population (1,024 x 20,065) and the faces genome in float64 (whose transform
torch, and so the kernel, does with the C library's scalar functions); and,
at each of torch's thread counts from 1 to `--threads`, since the kernel
splits its transform over torch's threads.

ROC-AUC (`evo.objectives.roc_auc`) counts on the CPU at float32 by sorting
integer keys with NumPy (`twice_the_wins_by_sorting`); torch's `sort` and
`searchsorted` (`twice_the_wins_by_searching`, the path of other devices and
types) give the same counts. Both counts are timed on the faces objective's
outputs, 64 x 200, and a larger batch, 64 x 1,000.

    python bench/noise.py [--repeats 7] [--threads 2]

Prints ms per call, best and median over the repeats (each repeat the best of
a few calls), and the ratio of the best times: torch's / innate's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evo.objectives import base as objectives_base
from genome.native import noise

# (what, P, D, dtype): genomes are float32 unless a run asks for float64.
SHAPES = [
    ("faces direct", 64, 20_065, torch.float32),
    ("digits direct", 64, 79_510, torch.float32),
    ("faces, P 1,024", 1024, 20_065, torch.float32),
    ("faces direct, float64", 64, 20_065, torch.float64),
]
AUC_SHAPES = [(64, 200), (64, 1000)]


def best_of(fn, *args, calls: int = 5) -> float:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t)
    return min(times)


def by_torch(out: torch.Tensor, g: torch.Generator, sigma: torch.Tensor, mu: torch.Tensor) -> None:
    """evotorch.tools.make_gaussian's draw, scaling and shift."""
    out.normal_(generator=g)
    out *= sigma
    out += mu


def by_native(out: torch.Tensor, g: torch.Generator, sigma: torch.Tensor, mu: torch.Tensor) -> None:
    if not noise.normal_(out, g, scale=sigma, shift=mu):
        sys.exit("the native noise kernel does not apply here (see its warning)")


def sampling(repeats: int, threads: int) -> None:
    print(f"\nSampling [P, D] with sigma and mu (ms; best / median of {repeats}), torch threads:")
    print("| population | threads | torch normal_, *=, += | native | torch / native |")
    print("|---|---|---|---|---|")
    for what, p, d, dtype in SHAPES:
        g = torch.Generator().manual_seed(0)
        sigma = torch.rand(d, generator=g, dtype=dtype) + 0.1
        mu = torch.randn(d, generator=g, dtype=dtype)
        out = torch.empty(p, d, dtype=dtype)
        for n in range(1, threads + 1):
            torch.set_num_threads(n)
            times: dict[str, list[float]] = {"torch": [], "native": []}
            for r in range(repeats + 1):  # the first round warms up
                for name, fn in (("torch", by_torch), ("native", by_native)):
                    t = best_of(fn, out, g, sigma, mu)
                    if r:
                        times[name].append(t)
            print(
                f"| {what} ({p} x {d:,}) | {n} | {_cell(times['torch'])} | "
                f"{_cell(times['native'])} | {min(times['torch']) / min(times['native']):.2f}x |"
            )


def auc(repeats: int, threads: int) -> None:
    torch.set_num_threads(threads)
    print(f"\nROC-AUC of P rows of B scores (ms; best / median of {repeats}), {threads} thread(s):")
    print("| P x B | torch sort + searchsorted | NumPy integer keys | torch / NumPy |")
    print("|---|---|---|---|")
    paths = {
        "torch": objectives_base.twice_the_wins_by_searching,
        "numpy": objectives_base.twice_the_wins_by_sorting,
    }
    for p, b in AUC_SHAPES:
        g = torch.Generator().manual_seed(b)
        scores = torch.randn(p, b, generator=g)
        labels = (torch.randperm(b, generator=g) % 2).bool()
        times: dict[str, list[float]] = {name: [] for name in paths}
        for r in range(repeats + 1):
            for name, path in paths.items():
                t = best_of(path, scores, labels)
                if r:
                    times[name].append(t)
        print(
            f"| {p} x {b} | {_cell(times['torch'])} | {_cell(times['numpy'])} | "
            f"{min(times['torch']) / min(times['numpy']):.2f}x |"
        )


def _cell(times: list[float]) -> str:
    return f"{min(times) * 1e3:.3f} / {statistics.median(times) * 1e3:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    if args.repeats < 1 or args.threads < 1:
        ap.error("--repeats and --threads must be >= 1")
    print(
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"noise kernel: {'AVX2' if noise._library(torch.float32).innate_noise_avx2() else 'scalar'}"
        " transform"
    )
    sampling(args.repeats, args.threads)
    auc(args.repeats, args.threads)


if __name__ == "__main__":
    main()
