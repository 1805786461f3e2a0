"""A search that goes wrong stops cleanly: the direct decoder's zero-std biases no
longer stall SNES and PGPE, a zero stdev is refused at config time, and a search
whose distribution turns non-finite stops at once, naming the generation and the
likely cause, keeping its last good checkpoint and best genome, never writing NaN."""

from __future__ import annotations

import csv
import math
from typing import Any

import pytest
import torch
from conftest import TINY, changed
from typer.testing import CliRunner

from evo import config
from evo.checkpoint import read_state
from evo.cli import app
from evo.driver import new_run
from evo.evals import EvalColumns
from evo.health import SearchDiverged, divergence
from evo.search import distribution
from genome.files import load_genome


def tiny(**changes: Any) -> dict[str, Any]:
    return config.resolve(config.validate(changed(TINY, **changes), "test"), "test")


@pytest.mark.parametrize("name", ["snes", "pgpe", "xnes", "cem"])
def test_the_direct_decoder_searches_with_finite_evaluations(tmp_path, name):
    cfg = tiny(generations=3, decoder={"name": "direct"}, algorithm={"name": name})
    res = new_run(cfg, tmp_path, progress=False)
    with open(res.run_dir / "metrics.csv", newline="") as f:
        assert [int(r["nan_count"]) for r in csv.DictReader(f)] == [0, 0, 0]
    assert torch.isfinite(load_genome(res.run_dir / "center.genome").genome).all()


@pytest.mark.parametrize("value", [0, 0.0, -0.5])
def test_a_zero_or_negative_stdev_init_is_refused(value):
    with pytest.raises(
        config.ConfigError, match=rf"algorithm.stdev_init: must be a number > 0, got {value}"
    ):
        tiny(algorithm={"name": "snes", "stdev_init": value})


def _collapse(monkeypatch) -> None:
    """Every gene's search stdev 0, as the direct decoder's biases had: 0 / 0 at generation 1."""
    monkeypatch.setattr(
        distribution, "search_stdev", lambda problem: torch.zeros(problem.decoder.genome_length())
    )


@pytest.mark.parametrize("name", ["snes", "pgpe"])
def test_a_search_that_turns_nan_stops_at_once_and_keeps_what_was_good(tmp_path, monkeypatch, name):
    _collapse(monkeypatch)
    cfg = tiny(generations=6, checkpoint_every=1, algorithm={"name": name})
    with pytest.raises(SearchDiverged) as err:
        new_run(cfg, tmp_path, progress=False)
    msg = str(err.value)
    assert msg.startswith("generation 1: ") and "is not finite; likely cause:" in msg
    assert "zero or tiny stdev" in msg and "last checkpoint: generation 1" in msg
    (run_dir,) = tmp_path.iterdir()
    assert read_state(run_dir)["generation"] == 1
    with open(run_dir / "metrics.csv", newline="") as f:
        assert [r["generation"] for r in csv.DictReader(f)] == ["0"]
    best = load_genome(run_dir / "best.genome")
    assert torch.isfinite(best.genome).all() and best.lineage["generation"] == 0
    assert math.isfinite(best.fitness["fitness"])
    # A non-finite centre is not written; SNES's stays finite while its stdev is NaN.
    if (run_dir / "center.genome").exists():
        assert torch.isfinite(load_genome(run_dir / "center.genome").genome).all()


def test_the_cli_says_where_a_search_went_nan_in_one_line(tmp_path, monkeypatch):
    _collapse(monkeypatch)
    path = tmp_path / "c.toml"
    path.write_text(config.dumps(tiny(generations=6)))
    out = CliRunner().invoke(app, ["evolve", str(path), "--out", str(tmp_path / "runs"), "--quiet"])
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: generation 1: ")
    assert "best genome so far" in lines[0]


def test_huge_finite_genomes_are_finite_and_any_nan_or_infinity_is_not():
    # The check sums first: a sum that overflows must not read as a non-finite search.
    cols = EvalColumns(n_objectives=1, names=("digits",), objectives=("digits",), weights=(1.0,))
    evals = torch.zeros(4, 3)
    huge = torch.full((4, 6), 3e38)
    assert not torch.isfinite(huge.sum())
    assert divergence(3, huge, evals, huge[0], cols) is None
    for bad in (math.nan, math.inf, -math.inf):
        center = huge[0].clone()
        center[2] = bad
        msg = divergence(3, huge, evals, center, cols)
        assert msg is not None and msg.startswith("generation 3: the search distribution's centre")
        genomes = huge.clone()
        genomes[:, 5] = bad
        msg = divergence(3, genomes, evals, huge[0], cols)
        assert msg is not None and "every genome of the population is not finite" in msg
        genomes[1, 5] = 1.0  # one finite genome: the generation goes on
        assert divergence(3, genomes, evals, huge[0], cols) is None
