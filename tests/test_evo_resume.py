"""Kill and resume through the real CLI: `python -m evo.cli evolve` in a subprocess.

SIGKILL part-way, then `--resume`, ends with the best genome of a run never
interrupted (bit for bit); SIGINT stops at a generation boundary and leaves a
readable checkpoint.
"""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, changed
from typer.testing import CliRunner

from evo import build, config
from evo.checkpoint import read_state
from evo.cli import app
from evo.driver import new_run

# Long enough to be stopped part-way: a checkpoint every generation.
RAW = changed(TINY, seed=2, generations=40, eval_every=20, checkpoint_every=1)
REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "evo.cli", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _rows(out: Path) -> int:
    runs = list(out.glob("*/metrics.csv"))
    if not runs:
        return 0
    with open(runs[0], newline="") as f:
        return max(0, sum(1 for _ in f) - 1)


def _start_and_signal(tmp_path: Path, sig: int, after_rows: int) -> tuple[Path, str, int]:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(config.dumps(config.resolve(config.validate(RAW))))
    out = tmp_path / "runs"
    p = _cli("evolve", str(cfg), "--out", str(out), "--quiet")
    deadline = time.monotonic() + 120
    while _rows(out) < after_rows:
        assert p.poll() is None, p.communicate()[0]
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.01)
    assert p.poll() is None, "the run ended before it could be interrupted"
    p.send_signal(sig)
    text = p.communicate(timeout=60)[0]
    (run_dir,) = out.iterdir()
    return run_dir, text, p.returncode


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    run_dir, _, rc = _start_and_signal(tmp_path, signal.SIGKILL, after_rows=4)
    assert rc == -signal.SIGKILL
    stopped = read_state(run_dir)["generation"]
    assert 0 < stopped < RAW["generations"]
    # The same CLI command, in this process (a second interpreter would only add start-up time).
    out = CliRunner().invoke(app, ["evolve", "--resume", str(run_dir), "--quiet"])
    assert out.exit_code == 0, out.output
    assert f"finished generation {RAW['generations']}" in out.output
    whole = new_run(config.load(run_dir / "config.toml"), tmp_path / "whole", progress=False)
    best = read_state(run_dir)["best"]
    assert torch.equal(best["genome"], whole.best_genome)
    assert best["score"] == whole.best_fitness
    with open(run_dir / "metrics.csv", newline="") as f:
        gens = [int(r["generation"]) for r in csv.DictReader(f)]
    assert gens == list(range(RAW["generations"]))
    try:
        from genome.files import load_genome
    except ImportError:
        return
    assert torch.equal(load_genome(run_dir / "best.genome").genome, whole.best_genome)


@pytest.mark.slow
def test_sigint_leaves_a_readable_checkpoint(tmp_path):
    run_dir, text, rc = _start_and_signal(tmp_path, signal.SIGINT, after_rows=2)
    assert rc == 0, text
    assert "interrupted at generation" in text and f"--resume {run_dir}" in text
    state = read_state(run_dir)
    assert 0 < state["generation"] < RAW["generations"]
    assert (
        state["best"]["genome"].shape[0]
        == build.build_decoder(config.load(run_dir / "config.toml")).genome_length()
    )
    assert _rows(run_dir.parent) == state["generation"]
    assert (run_dir / "best.genome").is_file()
