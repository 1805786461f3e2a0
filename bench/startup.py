"""Benchmark: how long a user waits for `innate evolve`'s first generation and for `innate inspect`.

Each is a fresh process, as a user starts it, timed from the start of the
process:

- `import torch` alone, the floor under both;
- `innate evolve CONFIG --generations 3` (default `configs/faces.toml`) until
  the run's metrics file has its first row, the first generation done (the
  face bank already on disk: the script makes it before timing);
- `innate inspect GENOME` to its exit, on the best genome of that run
  (110.9x, 25x25 -> 64 -> 1 with `configs/faces.toml`).

The three alternate, `--rounds` times, so load on the machine falls on all of
them alike; the median and range of each are printed, and each command's
time beyond torch's import (the median of their differences within a round).

    python bench/startup.py [--rounds 5] [--config configs/faces.toml]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "evo.cli"]


def import_torch() -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - t


def first_generation(config: Path, out: Path) -> float:
    """Seconds from starting `innate evolve` to the first row of its metrics file."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        [*CLI, "evolve", str(config), "--generations", "3", "--out", str(out), "--quiet"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        while True:
            rows = [len(m.read_text().splitlines()) for m in out.glob("*/metrics.csv")]
            if rows and max(rows) >= 2:
                took = time.perf_counter() - t
                break
            if proc.poll() is not None:
                raise RuntimeError(f"innate evolve ended first: {proc.stderr.read().decode()}")
            time.sleep(0.005)
    finally:
        _, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"innate evolve failed: {err.decode()}")
    return took


def inspect(genome: Path) -> float:
    t = time.perf_counter()
    subprocess.run([*CLI, "inspect", str(genome)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "faces.toml")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"import torch": [], "first generation": [], "inspect": []}
    with tempfile.TemporaryDirectory() as tmp:
        # Once before timing: the face bank is rendered and cached, the kernels built.
        first_generation(args.config, Path(tmp) / "warm")
        genome = next((Path(tmp) / "warm").glob("*/best.genome"))
        for r in range(args.rounds):
            times["import torch"].append(import_torch())
            times["first generation"].append(first_generation(args.config, Path(tmp) / f"r{r}"))
            times["inspect"].append(inspect(genome))
    base = times["import torch"]
    print(f"seconds from the start of a fresh process, {args.rounds} rounds: median (range)")
    for name, v in times.items():
        line = f"  {name:17s} {statistics.median(v):5.2f} ({min(v):.2f}-{max(v):.2f})"
        if name != "import torch":
            beyond = statistics.median(a - b for a, b in zip(v, base, strict=True))
            line += f"   beyond torch's import: {beyond:.2f}"
        print(line)


if __name__ == "__main__":
    main()
