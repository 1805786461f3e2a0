"""The compression curve: digits accuracy against genome compression, per decoder and method.

    python bench/results/compression.py run   [--out DIR] [--jobs 2] [--only NAME ...] [--all]
    python bench/results/compression.py table [--out DIR]
    python bench/results/compression.py plot  [--out DIR] [--png docs/compression.png]

The body is the MNIST subset's 784-800-10 (4,000 training and 1,000 test
images, `objectives.digits.dataset = "mnist"`). Each point is one `innate
evolve` run of a decoder sized by `Decoder.for_compression` (the widest one
with at least the target compression) and trained by one method, on a fixed
budget chosen before any point was run:

- gradient: the `gradient` searcher (Adam through the decoder), 1,000 steps
  of 256 training images, learning rate 0.01 decayed to 0 by a cosine, every
  training image shifted by up to 2 px (`augment = "shift"`);
- evolution: SNES, population 48, initial stdev 0.5, 800 generations of 256
  training images (38,400 genome evaluations).

Each run's `best.genome` (and, for SNES, `center.genome`, the search
distribution's mean) is scored here on the 1,000 test images, which no run
selects on. `run` writes one row per point to OUT/compression.json as soon as
the point finishes, and skips points already there, so it can be stopped and
started again; `--only` runs the named points (`gnet-gradient-300`), `--all`
also runs the points left out of the default grid for their cost (see
`EXPENSIVE`). Runs go to OUT/runs, one thread each (`OMP_NUM_THREADS=1`),
`--jobs` at a time.

`plot` draws the curve with the points Shuvaev et al. (PNAS 2024) report for
the g-network on MNIST (94% at 322x, 79% at 1,038x) beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "results"))

DECODERS = ("gnet", "connectome")
METHODS = ("gradient", "evolution")
TARGETS = (10, 30, 100, 300, 1000, 3000)
# Points left out of the default grid: their cost per step on one thread
# (measured on the 2-core development machine) puts one run beyond an hour.
# gnet's fused native decode kernel covers narrow g-networks only; from 100x
# down each SNES individual costs ~0.5 s per generation (~25 s a generation).
EXPENSIVE = {
    ("gnet", "gradient", 10): "~3 s per step: ~50 min for 1,000 steps",
    ("gnet", "evolution", 10): "~1.3 s per individual: ~14 h for 800 generations",
    ("gnet", "evolution", 30): "~0.5 s per individual: ~6 h for 800 generations",
    ("gnet", "evolution", 100): "~0.6 s per individual: ~6 h for 800 generations",
}
# The uncompressed body trained by the same gradient budget: the curve's ceiling.
REFERENCE = ("direct", "gradient", 1)
PAPER = [(322, 0.94), (1038, 0.79)]  # Shuvaev et al., PNAS 2024: MNIST, g-network

GRADIENT = """\
generations = 1000
batch_size = 256
eval_every = 100
checkpoint_every = 250
device = "cpu"

[task]
objectives = ["digits"]

[objectives.digits]
dataset = "mnist"
augment = "shift"

[algorithm]
name = "gradient"
population_size = 1
learning_rate = 0.01
lr_schedule = "cosine"
"""

EVOLUTION = """\
generations = 800
batch_size = 256
eval_every = 100
checkpoint_every = 200
device = "cpu"

[task]
objectives = ["digits"]

[objectives.digits]
dataset = "mnist"

[algorithm]
name = "snes"
population_size = 48
stdev_init = 0.5
"""


def point_name(decoder: str, method: str, target: int) -> str:
    return f"{decoder}-{method}-{target}"


def grid(include_expensive: bool) -> list[tuple[str, str, int]]:
    points = [REFERENCE]
    points += [
        (d, m, t)
        for d in DECODERS
        for m in METHODS
        for t in TARGETS
        if include_expensive or (d, m, t) not in EXPENSIVE
    ]
    return points


def config_text(decoder: str, method: str, target: int, seed: int) -> str:
    body = GRADIENT if method == "gradient" else EVOLUTION
    dec = f'[decoder]\nname = "{decoder}"\n'
    if decoder != "direct":
        dec += f'compression = {float(target)}\nsettings = {{ code = "binary" }}\n'
    return f"seed = {seed}\n{body}\n[layout]\nhidden = [800]\n\n{dec}"


def load_rows(out: Path) -> dict[str, dict]:
    path = out / "compression.json"
    if not path.is_file():
        return {}
    return {row["point"]: row for row in json.loads(path.read_text())}


def save_rows(out: Path, rows: dict[str, dict]) -> None:
    """Rewrite compression.json atomically (a kill never leaves half a file)."""
    from tasks.cache import write_atomic

    ordered = sorted(rows.values(), key=lambda r: r["point"])
    write_atomic(out / "compression.json", json.dumps(ordered, indent=1).encode())


def evolve(cfg: Path, runs: Path, log: Path) -> Path:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with open(log, "w") as f:
        subprocess.run(
            [sys.executable, "-m", "evo.cli", "evolve", str(cfg), "--out", str(runs), "--quiet"],
            cwd=ROOT,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            check=True,
        )
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("finished generation"):
            return Path(line.split(": ", 1)[1].strip())
    raise RuntimeError(f"{cfg}: the run did not finish; see {log}")


def score(run_dir: Path) -> dict:
    import tomllib
    from summarize import held_out, wall_s

    from genome.files import load_genome

    cfg = tomllib.loads((run_dir / "config.toml").read_text())
    row: dict = {}
    for kind in ("best", "center"):
        path = run_dir / f"{kind}.genome"
        if not path.is_file():
            continue
        gf = load_genome(path)
        scores = held_out(gf.decoder.decode(gf.genome), cfg)
        row[f"{kind}_test_acc"] = scores["test_acc"]
        row[f"{kind}_train_acc"] = scores["train_acc"]
        row["genes"] = gf.decoder.genome_length()
        row["compression"] = round(gf.decoder.compression(), 1)
        row["settings"] = gf.decoder.settings
    row["wall_s"] = round(wall_s(run_dir), 1)
    return row


def run(args: argparse.Namespace) -> None:
    out = args.out
    (out / "configs").mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(exist_ok=True)
    rows = load_rows(out)
    points = grid(args.all)
    if args.only:
        known = {point_name(*p): p for p in grid(True)}
        unknown = [n for n in args.only if n not in known]
        if unknown:
            sys.exit(f"unknown points {unknown}; valid: {', '.join(known)}")
        points = [known[n] for n in args.only]
    # The costliest first (gnet before connectome, wide before narrow): the pool stays full.
    todo = sorted(
        (p for p in points if point_name(*p) not in rows), key=lambda p: (p[0] != "gnet", p[2])
    )
    print(f"{len(todo)} of {len(points)} points to run, {args.jobs} at a time", flush=True)

    def one(p: tuple[str, str, int]) -> None:
        name = point_name(*p)
        cfg = out / "configs" / f"{name}.toml"
        cfg.write_text(config_text(*p, seed=args.seed))
        t0 = time.perf_counter()
        run_dir = evolve(cfg, out / "runs", out / "configs" / f"{name}.log")
        row = {"point": name, "decoder": p[0], "method": p[1], "target": p[2], "seed": args.seed}
        row.update(score(run_dir), run=run_dir.name)
        rows[name] = row
        save_rows(out, rows)  # one thread at a time runs this line (the GIL)
        took = (time.perf_counter() - t0) / 60
        print(f"{name}: test {row['best_test_acc']:.3f} ({took:.1f} min)", flush=True)

    with ThreadPoolExecutor(args.jobs) as pool:
        for f in [pool.submit(one, p) for p in todo]:
            f.result()


def table(args: argparse.Namespace) -> None:
    rows = load_rows(args.out)
    print(
        "| decoder | method | target | genes | compression | test (best) | test (mean) | train | min |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    order = {n: i for i, n in enumerate(point_name(*p) for p in grid(True))}
    for r in sorted(rows.values(), key=lambda r: order.get(r["point"], 1e9)):
        mean = r.get("center_test_acc")
        print(
            f"| {r['decoder']} | {r['method']} | {r['target']}x | {r['genes']:,} | "
            f"{r['compression']:,.1f}x | {100 * r['best_test_acc']:.1f}% | "
            f"{'' if mean is None else f'{100 * mean:.1f}%'} | "
            f"{100 * r['best_train_acc']:.1f}% | {r['wall_s'] / 60:.1f} |"
        )
    for key, why in EXPENSIVE.items():
        if point_name(*key) not in rows:
            print(f"| {key[0]} | {key[1]} | {key[2]}x | not run: {why} | | | | | |")


def plot(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = load_rows(args.out)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = {"gradient": "-", "evolution": "--"}
    colors = {"gnet": "C0", "connectome": "C1"}
    for d in DECODERS:
        for m in METHODS:
            pts = sorted(
                (r["compression"], r["best_test_acc"])
                for r in rows.values()
                if r["decoder"] == d and r["method"] == m
            )
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, styles[m], marker="o", color=colors[d], label=f"{d}, {m}")
    ref = rows.get(point_name(*REFERENCE))
    if ref:
        ax.axhline(ref["best_test_acc"], color="0.5", lw=0.8, label="uncompressed (direct)")
    xs, ys = zip(*PAPER, strict=True)
    ax.plot(xs, ys, "k*", ms=11, label="Shuvaev et al. 2024 (g-network)")
    ax.set_xscale("log")
    ax.set_xlabel("compression (p-network parameters / genes)")
    ax.set_ylabel("test accuracy (MNIST subset, 1,000 images)")
    ax.set_title("Digits 784-800-10: accuracy against compression")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    args.png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=100, bbox_inches="tight")
    print(f"wrote {args.png}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("run", "table", "plot"))
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "compression")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (one thread each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="+", metavar="POINT", help="run these points (see the grid)")
    ap.add_argument("--all", action="store_true", help="also the points in EXPENSIVE")
    ap.add_argument("--png", type=Path, default=ROOT / "docs" / "compression.png")
    args = ap.parse_args()
    if args.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {args.jobs}")
    {"run": run, "table": table, "plot": plot}[args.command](args)


if __name__ == "__main__":
    main()
