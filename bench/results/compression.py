"""The compression curve: digits accuracy against genome compression, per decoder and method.

    python bench/results/compression.py run   [--out DIR] [--rows FILE] [--jobs 2] [--threads 1]
                                              [--only NAME ...] [--all] [--seeds 0 1 2]
    python bench/results/compression.py table [--rows FILE]
    python bench/results/compression.py plot  [--rows FILE] [--png docs/compression.png]

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
selects on. `run` writes one row per point and seed to the rows file
(`--rows`, by default bench/results/compression.json, kept with the code so
that `table` and `plot` can be made again from it) as soon as the run
finishes, and skips those already there, so it can be stopped and started
again (a row is a result: the run directories under `--out` are not needed
to keep it); a run stopped before it finished goes on from its last
checkpoint (every 50 generations or 250 steps) when `run` is started again,
if its config is the point's (settings that cannot change a result aside),
with the same result as if it had not stopped (on the same kind of
processor; see `--threads`); a finished run is not reused: a point without
a row runs again; `--only` runs the named points (`gnet-gradient-300`), `--all`
also runs the points left out of the default grid for their cost (see
`EXPENSIVE`). `--seeds` runs each point once per seed (the run's `seed`:
the decoder's initial genome, the minibatches, the search); `table` and
`plot` give the mean over the seeds a point has, with the range. Runs go to
OUT/runs/POINT-sSEED, `--jobs` at a time on `--threads` threads each (one by
default: `OMP_NUM_THREADS=1`, as every row was run). A run's last bits
depend on its threads (the champion's re-scoring, the gradient searcher's
steps; see the README's Evolution section): to reproduce a row, or to resume
a run, use the threads it ran with.

`plot` draws the curve with the points Shuvaev et al. (PNAS 2024) report for
the g-network on MNIST (94% at 322x, 79% at 1,038x) beside it.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "results"))

DECODERS = ("gnet", "connectome")
METHODS = ("gradient", "evolution")
TARGETS = (10, 30, 100, 300, 1000, 3000)
# Points left out of the default grid: their cost on one thread puts one run
# near an hour or beyond (decode FLOP per genome from `decode_flops`; seconds
# per genome from bench/kernels.py on one AVX-512 core; hours from the rows,
# with another run on the machine's other core).
EXPENSIVE = {
    ("gnet", "evolution", 10): "36.5 GFLOP, ~0.25 s per genome: ~3.2 h for 800 generations",
    ("gnet", "evolution", 30): "11.4 GFLOP, ~0.08 s per genome: ~1 h for 800 generations",
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
checkpoint_every = 50
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


def load_rows(path: Path) -> dict[tuple[str, int], dict]:
    """The finished runs in the rows file `path`, by (point, seed)."""
    if not path.is_file():
        return {}
    return {(row["point"], row["seed"]): row for row in json.loads(path.read_text())}


def save_rows(path: Path, rows: dict[tuple[str, int], dict]) -> None:
    """Rewrite the rows file atomically (a kill never leaves half a file)."""
    from tasks.cache import write_atomic

    ordered = [rows[k] for k in sorted(rows)]
    write_atomic(path, json.dumps(ordered, indent=1).encode() + b"\n")


def unfinished(runs: Path, cfg: Path) -> Path | None:
    """The newest run under `runs` to go on from: one whose checkpoint is short of its
    generations, started from `cfg` (settings that cannot change a result aside)."""
    from evo import config
    from evo.checkpoint import CheckpointError, read_state
    from evo.resume import config_changes

    want = config.load(cfg)
    found = []
    for d in runs.glob("*/"):
        checkpoint = d / "checkpoint.pt"
        if not checkpoint.is_file():
            continue
        try:
            started = config.load(d / "config.toml", check_init=False, saved_run=True)
            generation = int(read_state(d)["generation"])
        except (config.ConfigError, CheckpointError, KeyError):
            continue  # not a run to go on from: a fresh one is started
        if generation < started["generations"] and not config_changes(started, want):
            found.append((checkpoint.stat().st_mtime, d.name, d))
    return max(found)[2] if found else None


def evolve(cfg: Path, runs: Path, log: Path, threads: int = 1) -> Path:
    """Run `cfg` in a directory of its own under `runs`; a run stopped before it finished (the
    process killed, the machine restarted) goes on from its last checkpoint."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    runs.mkdir(parents=True, exist_ok=True)
    earlier = unfinished(runs, cfg)
    if earlier is not None:
        print(f"{cfg.stem}: resuming {earlier}", flush=True)
        where = ["--resume", str(earlier)]
    else:
        where = [str(cfg), "--out", str(runs)]
    with open(log, "a") as f:
        start = f.tell()  # this attempt's lines only: an earlier one may have finished
        f.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(where)}, {threads} threads\n")
        f.flush()
        subprocess.run(
            [sys.executable, "-m", "evo.cli", "evolve", *where, "--quiet"],
            cwd=ROOT,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            check=True,
        )
    with open(log, "rb") as f:
        f.seek(start)
        lines = f.read().decode(errors="replace").splitlines()
    for line in reversed(lines):
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
    rows = load_rows(args.rows)
    points = grid(args.all)
    if args.only:
        known = {point_name(*p): p for p in grid(True)}
        unknown = [n for n in args.only if n not in known]
        if unknown:
            sys.exit(f"unknown points {unknown}; valid: {', '.join(known)}")
        points = [known[n] for n in args.only]
    # The costliest first (gnet before connectome, wide before narrow): the pool stays full.
    todo = sorted(
        ((p, seed) for p in points for seed in args.seeds if (point_name(*p), seed) not in rows),
        key=lambda ps: (ps[0][0] != "gnet", ps[0][2], ps[1]),
    )
    total = len(points) * len(args.seeds)
    print(f"{len(todo)} of {total} runs to do, {args.jobs} at a time", flush=True)

    def one(p: tuple[str, str, int], seed: int) -> None:
        name = point_name(*p)
        cfg = out / "configs" / f"{name}-s{seed}.toml"
        cfg.write_text(config_text(*p, seed=seed))
        t0 = time.perf_counter()
        log = out / "configs" / f"{name}-s{seed}.log"
        runs = out / "runs" / f"{name}-s{seed}"
        runs.mkdir(parents=True, exist_ok=True)
        with open(runs / ".lock", "w") as lock:
            try:  # one process at a time per point and seed (two `run`s may overlap)
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"{name} seed {seed}: running in another process; skipped", flush=True)
                return
            if (name, seed) in load_rows(args.rows):
                return  # another process finished it meanwhile
            run_dir = evolve(cfg, runs, log, args.threads)
        row = {"point": name, "decoder": p[0], "method": p[1], "target": p[2], "seed": seed}
        row.update(score(run_dir), run=run_dir.name)
        with saving:  # json.dumps and fsync let the other thread run: one writer at a time
            rows[name, seed] = row
            # Another `run` may have added rows since this one read the file: keep them.
            rows.update({k: v for k, v in load_rows(args.rows).items() if k not in rows})
            save_rows(args.rows, rows)
        took = (time.perf_counter() - t0) / 60
        print(f"{name} seed {seed}: test {row['best_test_acc']:.3f} ({took:.1f} min)", flush=True)

    saving = threading.Lock()
    with ThreadPoolExecutor(args.jobs) as pool:
        for f in [pool.submit(one, p, seed) for p, seed in todo]:
            f.result()


def summary(rows: dict[tuple[str, int], dict]) -> list[dict]:
    """One entry per point, in grid order: its rows over seeds, the mean and range of each score."""
    by_point: dict[str, list[dict]] = {}
    for (point, _), row in sorted(rows.items()):
        by_point.setdefault(point, []).append(row)
    order = {n: i for i, n in enumerate(point_name(*p) for p in grid(True))}
    out = []
    for point in sorted(by_point, key=lambda n: order.get(n, 1e9)):
        runs = by_point[point]
        entry = {k: runs[0][k] for k in ("decoder", "method", "target", "genes", "compression")}
        entry["seeds"] = [r["seed"] for r in runs]
        entry["wall_s"] = sum(r["wall_s"] for r in runs) / len(runs)
        for key in ("best_test_acc", "center_test_acc", "best_train_acc"):
            vals = [r[key] for r in runs if r.get(key) is not None]
            if vals:
                entry[key] = (sum(vals) / len(vals), min(vals), max(vals))
        out.append(entry)
    return out


def _pct(stat: tuple[float, float, float] | None) -> str:
    if stat is None:
        return ""
    mean, lo, hi = stat
    return f"{100 * mean:.1f}%" + ("" if lo == hi else f" ({100 * lo:.1f}-{100 * hi:.1f})")


def table(args: argparse.Namespace) -> None:
    rows = load_rows(args.rows)
    print(
        "| decoder | method | target | genes | compression | seeds "
        "| test (best genome) | test (mean genome) | train | min per run |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for e in summary(rows):
        print(
            f"| {e['decoder']} | {e['method']} | {e['target']}x | {e['genes']:,} | "
            f"{e['compression']:,.1f}x | {len(e['seeds'])} | {_pct(e.get('best_test_acc'))} | "
            f"{_pct(e.get('center_test_acc'))} | {_pct(e.get('best_train_acc'))} | "
            f"{e['wall_s'] / 60:.1f} |"
        )
    done = {point for point, _ in rows}
    for key, why in EXPENSIVE.items():
        if point_name(*key) not in done:
            print(f"| {key[0]} | {key[1]} | {key[2]}x | not run: {why} | | | | | | |")


def plot(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = summary(load_rows(args.rows))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = {"gradient": "-", "evolution": "--"}
    colors = {"gnet": "C0", "connectome": "C1"}
    for d in DECODERS:
        for m in METHODS:
            pts = sorted(
                (e["compression"], *e["best_test_acc"])
                for e in entries
                if e["decoder"] == d and e["method"] == m
            )
            if pts:
                xs, mean, lo, hi = (list(c) for c in zip(*pts, strict=True))
                err = [
                    [a - b for a, b in zip(mean, lo, strict=True)],
                    [b - a for a, b in zip(mean, hi, strict=True)],
                ]
                ax.errorbar(
                    xs,
                    mean,
                    yerr=err,
                    fmt=styles[m],
                    marker="o",
                    color=colors[d],
                    capsize=3,
                    label=f"{d}, {m}",
                )
    ref = next((e for e in entries if e["decoder"] == REFERENCE[0]), None)
    if ref:
        ax.axhline(ref["best_test_acc"][0], color="0.5", lw=0.8, label="uncompressed (direct)")
    xs, ys = zip(*PAPER, strict=True)
    ax.plot(xs, ys, "k*", ms=11, label="Shuvaev et al. 2024 (g-network)")
    ax.set_xscale("log")
    ax.set_xlabel("compression (p-network parameters / genes)")
    ax.set_ylabel("test accuracy (MNIST subset, 1,000 images)")
    ax.set_title("Digits 784-800-10: accuracy against compression (mean, range over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    args.png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=100, bbox_inches="tight")
    print(f"wrote {args.png}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("run", "table", "plot"))
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "compression", help="the runs")
    ap.add_argument(
        "--rows",
        type=Path,
        default=ROOT / "bench" / "results" / "compression.json",
        help="one row per finished run (point and seed)",
    )
    ap.add_argument("--jobs", type=int, default=2, help="runs at once")
    ap.add_argument("--threads", type=int, default=1, help="threads of each run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="a run per point and seed")
    ap.add_argument("--only", nargs="+", metavar="POINT", help="run these points (see the grid)")
    ap.add_argument("--all", action="store_true", help="also the points in EXPENSIVE")
    ap.add_argument("--png", type=Path, default=ROOT / "docs" / "compression.png")
    args = ap.parse_args()
    if args.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    {"run": run, "table": table, "plot": plot}[args.command](args)


if __name__ == "__main__":
    main()
