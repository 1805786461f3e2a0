"""Load: memory of large populations and of long runs, through the real `innate evolve` loop.

    python bench/load.py [--generations 1000] [--populations 64 1024 4096]

Each workload runs `evo.driver.new_run` in a fresh process (so each peak is
its own), on the faces body of the README (25x25 -> 64 -> 1, gnet at 110.9x,
256 bank images a generation, SNES), while a thread samples the process's
resident memory (VmRSS) every 50 ms:

- population sweep: 3 generations at each population; the peak RSS and the
  peak above the process's RSS before the run (torch, data, Ray excluded);
  the population is decoded and scored in chunks of 16 genomes
  (`evo.problem.EVAL_CHUNK`), so memory grows with the population's genes
  and evaluations only, not with its networks.
- long run: `--generations` generations at population 64, checkpoints every
  100; RSS when 10% of the run is done and at its end, and the growth
  between them per 100 generations (a least-squares line through the samples
  of the last 90%).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FACES = {
    "batch_size": 256,
    "eval_every": 100,
    "checkpoint_every": 100,
    "task": {"objectives": ["faces"]},
    "layout": {"hidden": [64]},
    "decoder": {"name": "gnet", "compression": 100.0, "settings": {"code": "binary"}},
    "algorithm": {"name": "snes"},
}


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(population: int, generations: int) -> dict:
    """One run in this process; its RSS samples (seconds since the start, MiB)."""
    from evo import config
    from evo.driver import new_run

    raw = {**FACES, "generations": generations}
    raw["algorithm"] = {**FACES["algorithm"], "population_size": population}
    cfg = config.resolve(config.validate(raw))
    before = rss_mib()
    samples: list[tuple[float, float]] = []
    done = threading.Event()
    t0 = time.perf_counter()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.perf_counter() - t0, rss_mib()))
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    with tempfile.TemporaryDirectory() as out:
        res = new_run(cfg, out, progress=False)
    done.set()
    thread.join()
    samples.append((time.perf_counter() - t0, rss_mib()))
    return {
        "population": population,
        "generations": res.generation,
        "genes": int(res.best_genome.numel()),
        "before_mib": before,
        "samples": samples,
        "wall_s": time.perf_counter() - t0,
    }


def run_child(population: int, generations: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(population), str(generations)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def growth_per_100(samples: list[tuple[float, float]], generations: int, wall: float) -> float:
    """MiB per 100 generations: a least-squares line through the last 90% of the samples."""
    tail = [(t, m) for t, m in samples if t >= 0.1 * wall]
    n = len(tail)
    mt = sum(t for t, _ in tail) / n
    mm = sum(m for _, m in tail) / n
    slope = sum((t - mt) * (m - mm) for t, m in tail) / sum((t - mt) ** 2 for t, _ in tail)
    return slope * wall / generations * 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generations", type=int, default=1000, help="of the long run")
    ap.add_argument("--populations", type=int, nargs="+", default=[64, 1024, 4096])
    ap.add_argument("--child", type=int, nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    print(
        "| population | genes | generations | RSS before the run | peak RSS | peak above before |"
    )
    print("|---|---|---|---|---|---|")
    for p in args.populations:
        r = run_child(p, 3)
        peak = max(m for _, m in r["samples"])
        print(
            f"| {p:,} | {r['genes']} | {r['generations']} | {r['before_mib']:.0f} MiB | "
            f"{peak:.0f} MiB | {peak - r['before_mib']:.0f} MiB |",
            flush=True,
        )
    r = run_child(64, args.generations)
    wall, samples = r["wall_s"], r["samples"]
    at_10 = next(m for t, m in samples if t >= 0.1 * wall)
    end = samples[-1][1]
    slope = growth_per_100(samples, args.generations, wall)
    print(
        f"\nlong run: {r['generations']:,} generations at population 64 in {wall:.0f} s; RSS "
        f"{at_10:.0f} MiB at 10%, {end:.0f} MiB at the end, peak "
        f"{max(m for _, m in samples):.0f} MiB; growth {slope:+.2f} MiB per 100 generations"
    )


if __name__ == "__main__":
    main()
