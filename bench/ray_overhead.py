"""Benchmark: when Ray actors start to pay, on this machine.

For each workload, `innate evolve` in-process (`workers = 0`) against the
same run on local Ray actors (`workers = N`): the median over generations of
each generation's step (sampling, evaluation, the searcher's update), read
from the run's metrics, so start-up (Ray's included) is left out; the first
--skip generations (warm-up) are dropped. Workloads, from cheap to heavy
objectives:

- faces: 25x25 -> 64 -> 1, gnet at 110.9x, population 64 and 256, 256 images;
- digits: MNIST subset, 784 -> 800 -> 10, gnet at 318.6x, population 64, 500 images;
- fewshot: the few-shot objective standing in for a lifetime loop (digits
  8x8 -> 64 -> 5, 16 episodes of 5-way 1-shot, sgd on a new linear head, 30
  steps), population 64.

In brackets, the quartiles over generations. The per-generation cost of the
actors is the difference where they lose, the speed-up where they win.

Where the actors run: local Ray on this machine (default); a two-node
cluster started here on 127.0.0.1 (`--two-node`: a head and a second node of
one CPU each, as the tests' cluster, so the two actors land on different
nodes and their messages cross between raylets and object stores); or a
cluster already running, joined by address (`--address host:port`, e.g. a
real multi-machine cluster, where the crossover lies). The in-process runs
always run in this process.

    python bench/ray_overhead.py [--workers 2] [--generations 30]
                                 [--two-node | --address HOST:PORT] [--only TEXT]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from evo import config
from evo.driver import new_run

FACES = {
    "batch_size": 256,
    "task": {"objectives": ["faces"]},
    "layout": {"hidden": [64]},
    "decoder": {"name": "gnet", "settings": {"hidden": [8, 8], "code": "binary"}},
}
WORKLOADS = {
    "faces, P=64": {**FACES, "algorithm": {"name": "snes", "population_size": 64}},
    "faces, P=256": {**FACES, "algorithm": {"name": "snes", "population_size": 256}},
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


def step_times(raw: dict, workers: int, generations: int, address: str = "") -> list[float]:
    """Seconds of each generation's step (sampling, evaluation, update), from the run's
    metrics: start-up, Ray's included, is not in them."""
    cfg = {**raw, "seed": 0, "generations": generations, "workers": workers}
    if workers:
        cfg["address"] = address
    cfg.update(eval_every=10_000, checkpoint_every=10_000)
    cfg = config.resolve(config.validate(cfg, "bench"), "bench")
    with tempfile.TemporaryDirectory() as out:
        run_dir = new_run(cfg, Path(out), progress=False).run_dir
        with open(run_dir / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    return [int(r["evaluations"]) / float(r["evals_per_s"]) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--generations", type=int, default=30)
    parser.add_argument("--skip", type=int, default=3, help="first generations left out")
    parser.add_argument("--only", help="workload names containing this text")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--two-node", action="store_true", help="a two-node cluster on 127.0.0.1")
    where.add_argument("--address", default="", help="join the Ray cluster at this address")
    args = parser.parse_args()
    if args.workers < 1 or args.generations <= args.skip + 1:
        parser.error("--workers must be >= 1 and --generations more than --skip + 1")
    if args.two_node:
        with two_node_cluster() as address:
            compare(args, address, "actors on a two-node cluster on 127.0.0.1")
    else:
        compare(args, args.address, f"actors on {args.address}" if args.address else "local actors")


@contextlib.contextmanager
def two_node_cluster() -> Iterator[str]:
    """A head and a second node of one CPU each on 127.0.0.1, joined by this process; stopped
    after (only what it started)."""
    import ray
    from ray.cluster_utils import Cluster

    from evo.cluster import keep_ray_local

    keep_ray_local()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # this cluster only: joined without a token
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster.address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def compare(args: argparse.Namespace, address: str, where: str) -> None:
    print(f"seconds per generation, in-process vs {args.workers} Ray {where}")
    for name, raw in WORKLOADS.items():
        if args.only and args.only not in name:
            continue
        per = {}
        for w in (0, args.workers):
            times = step_times(raw, w, args.generations, address)[args.skip :]
            per[w] = (statistics.median(times), *statistics.quantiles(times, n=4)[::2])
        local, ray = per[0][0], per[args.workers][0]
        spread = {w: f"{1e3 * v[1]:.0f}-{1e3 * v[2]:.0f}" for w, v in per.items()}
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
