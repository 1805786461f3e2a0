"""Benchmark: a generation of the few-shot objective, drawing its episodes against adapting on them.

Builds the run of a config (default `configs/fewshot.toml`: glyphs, 16 five-way
one-shot episodes a generation, sgd on a linear head, population 32) and, for
generations 0..G-1, times in one process what each generation does with the
objective's data: `GenomeProblem.data` (the episodes drawn from the background
scripts, every sample with its own form and distortion) and
`GenomeProblem.score` (every genome decoded and adapted on every episode, then
scored on the queries) of the population the run starts from. The median and
range over the generations are printed; the first generation (the glyph
masters' load and, with `samples`, drawing the set) is timed apart.
`--samples N` overrides the objective's `samples` (0: a fresh distortion for
every image of every episode).

    python bench/fewshot_generation.py [--config configs/fewshot.toml] [--generations 10]
                                       [--samples N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evo import build, config

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "fewshot.toml")
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--samples", type=int, help="glyph samples drawn per character")
    args = parser.parse_args()
    cfg = config.load(args.config)
    if args.samples is not None:
        cfg["objectives"]["fewshot"]["samples"] = args.samples
    problem = build.build_problem(cfg)
    n = cfg["algorithm"]["population_size"]
    population = problem.decoder.init(n, torch.Generator().manual_seed(0)).to(problem.device)
    draw, score = [], []
    for g in range(args.generations + 1):
        t = time.perf_counter()
        problem.data(g)
        t_draw = time.perf_counter() - t
        with torch.no_grad():
            t = time.perf_counter()
            problem.score(population, g)
            t_score = time.perf_counter() - t
        if g == 0:
            print(f"generation 0 (loads the data): draw {t_draw:.3f} s, score {t_score:.3f} s")
            continue
        draw.append(t_draw)
        score.append(t_score)
    fs = cfg["objectives"]["fewshot"]
    print(
        f"{fs['data']}, {fs['episodes']} episodes of {fs['way']}-way {fs['shot']}-shot "
        f"{fs['query']}-query, {fs['rule']}/{fs['head']}, samples {fs['samples']}, "
        f"population {n}; "
        f"seconds per generation over {args.generations}, median (range):"
    )
    for name, v in (("draw the episodes", draw), ("adapt and score", score)):
        print(f"  {name:18s} {statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})")
    share = statistics.median(draw) / (statistics.median(draw) + statistics.median(score))
    print(f"  drawing: {share:.1%} of the two")


if __name__ == "__main__":
    main()
