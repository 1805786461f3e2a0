"""Runs checkpointed by earlier versions of innate still resume, and end as they would have.

tests/fixtures/checkpoints holds tiny run directories (config.toml, metrics.csv,
checkpoint.pt) written before evo/ was split into subpackages: SNES stopped
after 2 of 4 generations, the GA (NSGA-II) after 1 of 3, the gradient
optimiser after 2 of 4. Their checkpoints name the engines by their old class
paths. `expected.json` holds what an uninterrupted run of that version gave.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from evo.driver import resume_run

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints"


@pytest.mark.parametrize("name", ["snes", "ga", "gradient"])
def test_a_run_checkpointed_before_the_move_resumes_to_the_same_end(tmp_path, name):
    run_dir = tmp_path / name
    shutil.copytree(FIXTURES / name, run_dir)
    expected = json.loads((run_dir / "expected.json").read_text())
    res = resume_run(run_dir, progress=False, generations=expected["generations"])
    assert res.generation == expected["generations"] and not res.interrupted
    assert res.best_fitness == expected["best_fitness"]
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["fitness_best"] for r in rows] == expected["fitness_best"]
    assert [r["best_so_far"] for r in rows] == expected["best_so_far"]
