"""Fingerprints of short runs: what a change that should only save time must leave alone.

Runs a few generations of each workload the benchmarks and the shipped configs
name (in-process, into temporary directories) and hashes what a run
produces: metrics.csv without its timing columns, and every genome file's
genes and recorded fitness. Run it before and after a change and compare; a
change to speed alone keeps every fingerprint. Runs are in-process (Ray's
equality with them is the tests' part), and their last bits depend on
torch's thread count: compare runs made with the same `OMP_NUM_THREADS`
(with 1 on a machine of several cores, the searchers also draw their noise
ahead; evo/search/sampling.py).

    python bench/fingerprint.py [--json out.json] [--compare before.json] [NAME ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import loop

from evo import config
from evo.driver import new_run
from evo.rundir import TIMING_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
# Shipped configs and how many generations of each (enough to step every searcher
# several times, write a test row and a checkpoint).
CONFIGS = {"faces": 25, "faces_wiring": 25, "digits": 12, "fewshot": 6}


def workloads() -> Iterator[tuple[str, dict[str, Any]]]:
    yield "loop-faces-direct", loop.innate_config("direct", 60)
    yield "loop-faces-gnet", loop.innate_config("gnet", 60)
    yield "loop-digits-direct", loop.innate_config("direct", 12, loop.WORKLOADS["digits"])
    for name, generations in CONFIGS.items():
        cfg = config.load(ROOT / "configs" / f"{name}.toml")
        yield (
            name,
            config.override(
                cfg, name, generations=generations, workers=0, eval_every=5, checkpoint_every=5
            ),
        )


def fingerprint(run_dir: Path) -> str:
    from genome.files import load_genome

    h = hashlib.sha256()
    header, *rows = (run_dir / "metrics.csv").read_text().splitlines()
    keep = [i for i, c in enumerate(header.split(",")) if c not in TIMING_COLUMNS]
    for row in rows:
        cells = row.split(",")
        h.update(",".join(cells[i] for i in keep).encode() + b"\n")
    for path in sorted(run_dir.rglob("*.genome")):
        genome = load_genome(path)
        h.update(str(path.relative_to(run_dir)).encode())
        h.update(genome.genome.numpy().tobytes())
        h.update(json.dumps(genome.metadata.get("fitness"), sort_keys=True).encode())
    return h.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="workloads to run (default: all)")
    parser.add_argument("--json", type=Path, help="write the fingerprints here")
    parser.add_argument("--compare", type=Path, help="fingerprints of an earlier --json")
    args = parser.parse_args()
    earlier = json.loads(args.compare.read_text()) if args.compare else {}
    found: dict[str, str] = {}
    for name, cfg in workloads():
        if args.names and name not in args.names:
            continue
        with tempfile.TemporaryDirectory() as out:
            found[name] = fingerprint(new_run(cfg, Path(out), progress=False).run_dir)
        verdict = ""
        if name in earlier:
            verdict = (
                "  same" if earlier[name] == found[name] else f"  DIFFERS from {earlier[name]}"
            )
        print(f"{name:20s} {found[name]}{verdict}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(found, indent=1) + "\n")
    if any(earlier.get(k, v) != v for k, v in found.items()):
        sys.exit(1)


if __name__ == "__main__":
    main()
