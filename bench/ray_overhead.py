"""Benchmark: when Ray actors start to pay, on this machine.

For each workload, whole generations of `innate evolve` in-process
(`workers = 0`) against the same run on local Ray actors (`workers = N`),
timed as seconds per generation between runs of G1 and G2 generations, so
start-up (Ray's included) cancels out. Workloads, from cheap to heavy
objectives:

- faces: 25x25 -> 64 -> 1, gnet at 110.9x, population 64 and 256, 256 images;
- digits: MNIST subset, 784 -> 800 -> 10, gnet at 318.6x, population 64, 500 images;
- fewshot: the few-shot objective standing in for a lifetime loop (digits
  8x8 -> 64 -> 5, 16 episodes of 5-way 1-shot, sgd on a new linear head, 30
  steps), population 64.

Each figure is the median over --repeats pairs of runs (the range in
brackets): Ray's timings vary a lot from run to run. The per-generation cost
of the actors is the difference where they lose, the speed-up where they win.

    python bench/ray_overhead.py [--workers 2] [--generations 10,30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from evo import config
from evo.driver import new_run

WORKLOADS = {
    "faces, P=64": {
        "batch_size": 256,
        "task": {"objectives": ["faces"]},
        "layout": {"hidden": [64]},
        "decoder": {"name": "gnet", "settings": {"hidden": [8, 8], "code": "binary"}},
        "algorithm": {"name": "snes", "population_size": 64},
    },
    "faces, P=256": {
        "batch_size": 256,
        "task": {"objectives": ["faces"]},
        "layout": {"hidden": [64]},
        "decoder": {"name": "gnet", "settings": {"hidden": [8, 8], "code": "binary"}},
        "algorithm": {"name": "snes", "population_size": 256},
    },
    "digits 784-800-10, P=64": {
        "batch_size": 500,
        "task": {"objectives": ["digits"]},
        "objectives": {"digits": {"dataset": "mnist"}},
        "layout": {"hidden": [800]},
        "decoder": {"name": "gnet", "settings": {"hidden": [23, 23], "code": "binary"}},
        "algorithm": {"name": "snes", "population_size": 64},
    },
    "fewshot (lifetime loop), P=64": {
        "task": {"objectives": ["fewshot"]},
        "objectives": {"fewshot": {"data": "digits", "size": 8, "test_episodes": 4}},
        "layout": {"hidden": [64]},
        "decoder": {"name": "gnet", "settings": {"hidden": [8, 8], "code": "binary"}},
        "algorithm": {"name": "snes", "population_size": 64},
    },
}


def seconds(raw: dict, workers: int, generations: int) -> float:
    cfg = {**raw, "seed": 0, "generations": generations, "workers": workers}
    cfg.update(eval_every=10_000, checkpoint_every=10_000)
    cfg = config.resolve(config.validate(cfg, "bench"), "bench")
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        new_run(cfg, Path(out), progress=False)
        return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--generations", default="10,30", help="G1,G2")
    parser.add_argument("--only", help="workload names containing this text")
    parser.add_argument("--repeats", type=int, default=3, help="median of this many pairs of runs")
    args = parser.parse_args()
    g1, g2 = (int(g) for g in args.generations.split(","))
    print(f"seconds per generation, in-process vs {args.workers} local Ray actors")
    for name, raw in WORKLOADS.items():
        if args.only and args.only not in name:
            continue
        seconds(raw, 0, 1)  # data, banks and caches built before any timing
        per = {0: [], args.workers: []}
        for _ in range(args.repeats):
            for w in per:
                per[w].append((seconds(raw, w, g2) - seconds(raw, w, g1)) / (g2 - g1))
        local, ray = (statistics.median(per[w]) for w in per)
        spread = {w: f"{1e3 * min(v):.0f}-{1e3 * max(v):.0f}" for w, v in per.items()}
        verdict = (
            f"actors {local / ray:.2f}x faster"
            if ray < local
            else f"actors cost {1e3 * (ray - local):.1f} ms a generation"
        )
        print(
            f"  {name:30s} in-process {1e3 * local:7.1f} ms ({spread[0]})   "
            f"actors {1e3 * ray:7.1f} ms ({spread[args.workers]})   {verdict}"
        )


if __name__ == "__main__":
    main()
