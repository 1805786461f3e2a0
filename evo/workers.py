"""Where a run's evaluations go when `workers = "auto"`: in-process or on Ray actors.

On a cluster with more CPUs than this machine, one generation is timed
in-process and `evo.cluster.auto_workers` chooses from the overhead of
actors measured in bench/ray_overhead.py. A run's result is the same either
way (a run on actors equals the serial run); only its speed differs.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from evo import build
from evo.cluster import auto_workers
from evo.problem import GenomeProblem


def probe_step(problem: GenomeProblem, population_size: int) -> float:
    """Seconds one in-process evaluation of `population_size` genomes takes (the second of two:
    the first pays for warming up). Draws nothing from the run's random streams."""
    genomes = problem.decoder.init(population_size, torch.Generator().manual_seed(0))
    seconds = math.inf
    for _ in range(2):
        t0 = time.perf_counter()
        with torch.no_grad():
            problem.fitness(problem.score(genomes, 0))
        seconds = time.perf_counter() - t0
    return seconds


def choose_workers(cfg: dict[str, Any], run_dir: Path) -> tuple[GenomeProblem, int | str]:
    """The problem of a `workers = "auto"` run on a joined cluster, and the workers chosen
    (0 or "max"); the choice and its reason are printed on stderr."""
    import ray

    problem = build.build_problem(cfg, run_dir, workers=0)
    cluster_cpus = int(ray.cluster_resources().get("CPU", 0))
    local_cpus = os.cpu_count() or 1
    step = (
        probe_step(problem, cfg["algorithm"]["population_size"])
        if cluster_cpus > local_cpus
        else 0.0
    )
    workers, why = auto_workers(step, cluster_cpus, local_cpus)
    print(f'workers = "auto": {why}', file=sys.stderr)
    if workers:
        problem.close()
        problem = build.build_problem(cfg, run_dir, workers=workers)
    return problem, workers
