"""Fault table: bad configs, broken run directories and kills, through the real CLI.

Each case runs `python -m evo.cli evolve ...` in a subprocess and is counted as
a one-line error (exit status 2, one line on stderr, no traceback) or not.
The bad configs are those of tests/test_evo_limits.py and a few more; the
broken run directories are copies of a finished tiny run with one fault each
(the checkpoint cut short, empty, random, a directory or missing; metrics.csv
corrupt; config.toml edited after the start; no such directory); for each,
every file the run had is checked to be unchanged afterwards (data lost). Kill
points: the run is SIGKILLed after k generations, resumed (with `--restart`
where it had no checkpoint yet), and its best genome compared bit for bit with
the uninterrupted run's. Last, many processes claim a run directory of one
name in the same second. A full disk and read-only or immutable directories
need privileges this script does not assume; tests/test_evo_rundir_faults.py
simulates them.

    python bench/fault_table.py [--jobs 2] [--starts 160]
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from conftest import TINY, changed  # noqa: E402
from test_evo_limits import BAD  # noqa: E402

from evo import config, rundir  # noqa: E402
from evo.checkpoint import CHECKPOINT, read_state  # noqa: E402

RUN = changed(TINY, generations=20, eval_every=10, checkpoint_every=1)
MORE_BAD: dict[str, str] = {
    "not TOML": "seed = = 1\n",
    "unknown key": "generatons = 5\n[task]\nobjectives = ['digits']\n",
    "no objectives": "seed = 1\n",
    "ga tournament 64 of 8": config.dumps(
        changed(TINY, algorithm={"name": "ga", "population_size": 8, "tournament_size": 64})
    ),
}


def cli(*args: Any) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "evo.cli", "evolve", *map(str, args), "--quiet"]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def one_line(res: subprocess.CompletedProcess) -> bool:
    lines = res.stderr.strip().splitlines()
    return res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ")


def traceback(res: subprocess.CompletedProcess) -> bool:
    return "Traceback" in res.stderr + res.stdout


def files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} if run.is_dir() else {}


def bad_configs(work: Path, jobs: int) -> list[tuple[str, bool, bool]]:
    texts = {k: config.dumps(changed(TINY, **c)) for k, (c, _) in BAD.items()}
    texts |= MORE_BAD

    def one(item: tuple[str, str]) -> tuple[str, bool, bool]:
        name, text = item
        case = work / "configs" / name.replace(" ", "_")
        case.mkdir(parents=True)
        (case / "c.toml").write_text(text)
        res = cli(case / "c.toml", "--out", case / "runs")
        made = (case / "runs").exists() and any((case / "runs").iterdir())
        return name, one_line(res) and not made, traceback(res)

    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(one, texts.items()))


def _edit(old: str, new: str):
    def edit(run: Path) -> None:
        text = (run / rundir.CONFIG).read_text()
        assert old in text, old
        (run / rundir.CONFIG).write_text(text.replace(old, new, 1))

    return edit


def _metrics_row(row: str):
    def edit(run: Path) -> None:
        header, _first, *rest = (run / rundir.METRICS).read_text().splitlines(keepends=True)
        (run / rundir.METRICS).write_text("".join([header, row, *rest]))

    return edit


def _dir_checkpoint(run: Path) -> None:
    (run / CHECKPOINT).unlink()
    (run / CHECKPOINT).mkdir()


BROKEN = {
    "checkpoint cut short": lambda r: (r / CHECKPOINT).write_bytes(
        (r / CHECKPOINT).read_bytes()[:700]
    ),
    "checkpoint empty (Aborted.)": lambda r: (r / CHECKPOINT).write_bytes(b""),
    "checkpoint random": lambda r: (r / CHECKPOINT).write_bytes(
        torch.randint(0, 256, (5000,), dtype=torch.uint8).numpy().tobytes()
    ),
    "checkpoint a directory": _dir_checkpoint,
    "checkpoint missing": lambda r: (r / CHECKPOINT).unlink(),
    "metrics binary": lambda r: (r / rundir.METRICS).write_bytes(b"\x89PNG\x00\xff" * 50),
    "metrics no header": lambda r: (r / rundir.METRICS).write_text("a,b\n1,2\n"),
    "metrics short row": _metrics_row("0,8\n"),
    "metrics bad generation": _metrics_row("zero" + "," * 13 + "\n"),
    "config seed edited": _edit("seed = 0", "seed = 3"),
    "config population edited": _edit("population_size = 8", "population_size = 12"),
    "config algorithm edited": _edit('name = "snes"', 'name = "cem"'),
    "config decoder edited": _edit("standardize = true", "standardize = false"),
    "config batch edited": _edit("batch_size = 64", "batch_size = 32"),
    "config not TOML": lambda r: (r / rundir.CONFIG).write_text("seed = = 0\n"),
    "config missing": lambda r: (r / rundir.CONFIG).unlink(),
    "restart over a good checkpoint": lambda r: None,
}


def broken_runs(work: Path, base: Path, jobs: int) -> list[tuple[str, bool, bool, bool]]:
    def one(item: tuple[str, Any]) -> tuple[str, bool, bool, bool]:
        name, breaks = item
        run = work / "broken" / name.replace(" ", "_").replace("(", "").replace(")", "")
        shutil.copytree(base, run)
        breaks(run)
        before, had = files(run), (run / CHECKPOINT).exists()
        extra = ["--restart"] if name.startswith("restart") else []
        res = cli("--resume", run, *extra)
        # Every file the run had is there, byte for byte (a good checkpoint still reads).
        kept = files(run) == before and (run / CHECKPOINT).exists() == had
        return name, one_line(res), traceback(res), kept

    with ThreadPoolExecutor(jobs) as pool:
        out = list(pool.map(one, BROKEN.items()))
    for name, target in (("--out a file", "file"), ("--out below a file", "file/sub")):
        (work / "file").write_text("x")
        res = cli(work / "c.toml", "--out", work / target)
        out.append((name, one_line(res), traceback(res), (work / "file").read_text() == "x"))
    return out


def _rows(run: Path) -> int:
    path = run / rundir.METRICS
    return max(0, len(path.read_text().splitlines()) - 1) if path.is_file() else 0


def kill_and_resume(work: Path, rows: int, whole: torch.Tensor) -> tuple[int, bool, bool]:
    out = work / f"kill{rows}"
    cmd = [sys.executable, "-m", "evo.cli", "evolve", str(work / "c.toml"), "--out", str(out)]
    p = subprocess.Popen([*cmd, "--quiet"], cwd=REPO, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and p.poll() is None:
        runs = list(out.glob("*/config.toml")) if out.is_dir() else []
        if runs and (rows == 0 or _rows(runs[0].parent) >= rows):
            break
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    killed = p.wait() == -signal.SIGKILL
    (run,) = out.iterdir()
    res = cli("--resume", run)
    restarted = "--restart" in res.stderr
    if restarted:
        res = cli("--resume", run, "--restart")
    same = res.returncode == 0 and torch.equal(read_state(run)["best"]["genome"], whole)
    return rows, same and killed, restarted


def _claim(args: tuple[Path, Any, dict[str, Any]]) -> str | None:
    out, barrier, cfg = args
    barrier.wait()
    try:
        return rundir.make_run_dir(cfg, out, "20260101-000000").name
    except Exception:
        return None


def same_second(work: Path, n: int) -> tuple[int, int]:
    cfg = config.resolve(config.validate(TINY))
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Manager().Barrier(n)
    with ctx.Pool(n) as pool:
        names = pool.map(_claim, [(work / "race", barrier, cfg)] * n)
    return sum(x is not None for x in names), len({x for x in names if x})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="CLI runs at a time")
    ap.add_argument("--starts", type=int, default=160, help="synchronised run starts")
    ap.add_argument("--kills", type=int, nargs="+", default=[0, 1, 5, 12])
    args = ap.parse_args()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "c.toml").write_text(config.dumps(config.resolve(config.validate(RUN))))
        res = cli(work / "c.toml", "--out", work / "base")
        assert res.returncode == 0, res.stderr
        (base,) = (work / "base").iterdir()
        whole = read_state(base)["best"]["genome"]

        configs = bad_configs(work, args.jobs)
        runs = broken_runs(work, base, args.jobs)
        kills = [kill_and_resume(work, k, whole) for k in args.kills]
        started, distinct = same_second(work, args.starts)

    for name, ok, tb in configs:
        print(f"  config  {'ok ' if ok and not tb else 'BAD'} {name}")
    for name, ok, tb, kept in runs:
        print(f"  run dir {'ok ' if ok and not tb and kept else 'BAD'} {name}")
    for rows, same, restarted in kills:
        how = "resumed with --restart" if restarted else "resumed"
        print(f"  kill    {'ok ' if same else 'BAD'} after {rows} generations, {how}")
    print(
        f"bad configs: {len(configs)} tried, {sum(ok for _, ok, _ in configs)} one-line errors, "
        f"{sum(tb for *_, tb in configs)} tracebacks"
    )
    print(
        f"broken run directories and outputs: {len(runs)} tried, "
        f"{sum(ok for _, ok, _, _ in runs)} one-line errors, "
        f"{sum(tb for _, _, tb, _ in runs)} tracebacks, "
        f"data lost: {sum(not kept for *_, kept in runs) or 'none'}"
    )
    print(
        f"kill points: {len(kills)} tried, {sum(s for _, s, _ in kills)} resumes identical to "
        "the uninterrupted run"
    )
    print(
        f"same-second starts: {args.starts} started, {started} got a directory, {distinct} distinct"
    )
    print(f"({time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()
