"""Checkpoints hold tensors and plain values only: nothing in one can run code.

A planted pickle is refused by `innate evolve --resume` and `innate report`
with one line, and its payload never runs; checkpoints of the old pickled
format (tests/fixtures/checkpoints: tiny SNES, GA and gradient runs written by
innate before checkpoints held state only) are refused with their version and
what to do; searchers whose state the resume test does not reach (a torch
optimiser inside SNES, the GA on a Pareto front without an archive) resume exactly.
"""

from __future__ import annotations

import csv
import os
import pathlib
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY, changed
from typer.testing import CliRunner

from evo import config
from evo.checkpoint import CHECKPOINT, CheckpointError, read_checkpoint
from evo.cli import app
from evo.driver import new_run, resume_run

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints"


def tiny(**changes: Any) -> dict[str, Any]:
    return config.resolve(config.validate(changed(TINY, **changes), "test"), "test")


class Payload:
    """Unpickling this touches `marker`: what a planted checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


class Shell:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return new_run(tiny(generations=2), tmp_path_factory.mktemp("runs"), progress=False).run_dir


def _plant(run_dir: Path, tmp_path: Path, how: str) -> tuple[Path, Path]:
    planted = tmp_path / "run"
    shutil.copytree(run_dir, planted)
    marker = tmp_path / "pwned"
    if how == "torch.save":
        torch.save({"format": "innate-checkpoint", "engine": Payload(marker)}, planted / CHECKPOINT)
    elif how == "pickle":
        (planted / CHECKPOINT).write_bytes(pickle.dumps(Payload(marker)))
    else:
        torch.save({"generation": 1, "best": Shell(marker)}, planted / CHECKPOINT)
    return planted, marker


@pytest.mark.parametrize("how", ["torch.save", "pickle", "os.system"])
@pytest.mark.parametrize("command", ["resume", "report"])
def test_a_planted_pickle_is_refused_in_one_line_and_runs_nothing(run_dir, tmp_path, how, command):
    planted, marker = _plant(run_dir, tmp_path, how)
    args = ["evolve", "--resume", str(planted)] if command == "resume" else ["report", str(planted)]
    out = CliRunner().invoke(app, [*args, "--quiet"] if command == "resume" else args)
    assert out.exit_code == 2, out.output
    assert not marker.exists()
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and CHECKPOINT in lines[0]
    assert "version 2" in lines[0] and "Traceback" not in out.output


@pytest.mark.parametrize("name", ["snes", "ga", "gradient"])
def test_a_checkpoint_of_the_pickled_format_is_refused_naming_its_version(tmp_path, name):
    run = tmp_path / name
    shutil.copytree(FIXTURES / name, run)
    before = (run / CHECKPOINT).read_bytes(), (run / "metrics.csv").read_bytes()
    with pytest.raises(
        CheckpointError, match=r"checkpoint version 1 .* Restart the run, or finish"
    ):
        resume_run(run, progress=False, generations=4)
    # Refused before anything in the run directory changed.
    assert ((run / CHECKPOINT).read_bytes(), (run / "metrics.csv").read_bytes()) == before
    out = CliRunner().invoke(app, ["report", str(run)])
    assert out.exit_code == 2 and "checkpoint version 1" in out.output


def test_a_checkpoint_holds_tensors_and_plain_values_with_its_version(run_dir):
    payload = read_checkpoint(run_dir)  # torch.load(weights_only=True) inside
    assert payload["format"] == "innate-checkpoint" and payload["version"] == 2
    assert payload["algorithm"] == "snes" and payload["generation"] == 2

    def leaves(v):
        if isinstance(v, dict):
            for x in v.values():
                yield from leaves(x)
        elif isinstance(v, list | tuple):
            for x in v:
                yield from leaves(x)
        else:
            yield v

    kinds = {type(v) for v in leaves(payload)}
    assert kinds <= {torch.Tensor, int, float, str, bool, type(None)}, kinds


def test_a_checkpoint_of_another_algorithm_is_refused(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    text = (run / "config.toml").read_text().replace('name = "snes"', 'name = "cem"')
    (run / "config.toml").write_text(text)
    with pytest.raises(CheckpointError, match=r"algorithm 'snes', but the run's config says 'cem'"):
        resume_run(run, progress=False, generations=3)


def _rows(run: Path) -> list[str]:
    with open(run / "metrics.csv", newline="") as f:
        return [r["fitness_best"] for r in csv.DictReader(f)]


@pytest.mark.parametrize(
    "changes",
    [
        {"algorithm": {"name": "snes", "population_size": 8, "optimizer": "adam"}},
        {
            "task": {"objectives": ["digits", "wiring"], "mode": "pareto"},
            "algorithm": {"name": "ga", "population_size": 8},
        },
    ],
    ids=["snes-adam", "ga-pareto"],
)
def test_resume_is_exact_for_optimiser_and_pareto_state(tmp_path, changes):
    cfg = tiny(generations=4, checkpoint_every=1, **changes)
    whole = new_run(cfg, tmp_path / "whole", progress=False)
    part = new_run(config.override(cfg, generations=2), tmp_path / "part", progress=False)
    resumed = resume_run(part.run_dir, progress=False, generations=4)
    assert torch.equal(resumed.best_genome, whole.best_genome)
    assert _rows(resumed.run_dir) == _rows(whole.run_dir)
