"""Every bad config gets one line and no traceback, before a run directory exists:
sizes past their bound, searchers whose memory grows with D^2 on a large genome,
populations too small to rank, devices this machine lacks, negative rates and
weights, and a cluster address where nothing listens."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY, changed
from typer.testing import CliRunner

from evo import config
from evo.cli import app

BAD: dict[str, tuple[dict[str, Any], str]] = {
    "batch_size 1e12": ({"batch_size": 10**12}, "batch_size: must be an integer from 1 to"),
    "population 1e9": (
        {"algorithm": {"name": "snes", "population_size": 10**9}},
        "algorithm.population_size: must be an integer from 1 to",
    ),
    "population x genes": (
        {"algorithm": {"name": "snes", "population_size": 60000}, "layout__hidden": [60000]},
        "above the bound of",
    ),
    "layout hidden 1e7": ({"layout__hidden": [10**7]}, "layout.hidden: must be a list of integers"),
    "decoder hidden 1e5": (
        {"decoder__settings": {"hidden": [10**5, 4]}},
        "decoder.settings.hidden: widths must be at most",
    ),
    "cmaes on 19,210 genes": (
        {"decoder": {"name": "direct"}, "layout__hidden": [256], "algorithm__name": "cmaes"},
        "cmaes keeps a full covariance",
    ),
    "xnes on 19,210 genes": (
        {"decoder": {"name": "direct"}, "layout__hidden": [256], "algorithm__name": "xnes"},
        "Use snes, pgpe or cem",
    ),
    **{
        f"{name} of 1": (
            {"algorithm": {"name": name, "population_size": 1}},
            "algorithm.population_size: ",
        )
        for name in ("cem", "cmaes", "snes", "ga")
    },
    "device meta": ({"device": "meta"}, 'device: must be "cpu" or "cuda"'),
    "gradient learning rate < 0": (
        {"algorithm": {"name": "gradient", "population_size": 1, "learning_rate": -0.1}},
        "algorithm.learning_rate: must be a number > 0",
    ),
    "negative weight": (
        {"task": {"objectives": ["digits", "wiring"], "weights": [1.0, -1.0]}},
        "task.weights[1]: must be >= 0",
    ),
    "negative compression": ({"decoder__compression": -2.0}, "decoder.compression: must be 0"),
    "seed 2^70": ({"seed": 2**70}, "seed: must be an integer from 0 to"),
    "center_learning_rate -1": (
        {"algorithm": {"name": "pgpe", "center_learning_rate": -1.0}},
        "algorithm.center_learning_rate: must be a number > 0",
    ),
    "stdev_init 0": ({"algorithm__stdev_init": 0.0}, "algorithm.stdev_init: must be a number > 0"),
    "ga mutation_probability 2": (
        {"algorithm": {"name": "ga", "mutation_probability": 2.0}},
        "algorithm.mutation_probability: must be a number in [0, 1]",
    ),
    "ga tournament above the population": (
        {"algorithm": {"name": "ga", "population_size": 8, "tournament_size": 9}},
        "algorithm.tournament_size: must be an integer from 1 to algorithm.population_size (8)",
    ),
}


def _evolve(tmp_path: Path, raw: dict[str, Any]) -> tuple[int, str, Path]:
    path = tmp_path / "c.toml"
    # Written unchecked: the CLI is what must refuse it.
    path.write_text(config.dumps(raw))
    out = tmp_path / "runs"
    res = CliRunner().invoke(app, ["evolve", str(path), "--out", str(out), "--quiet"])
    return res.exit_code, res.output, out


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_config_gets_one_line_and_no_run_directory(tmp_path, case):
    changes, expected = BAD[case]
    code, output, out = _evolve(tmp_path, changed(TINY, **changes))
    lines = output.strip().splitlines()
    assert code == 2, output
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], output
    assert not out.exists() or not any(out.iterdir())


def test_cuda_without_a_cuda_device_is_refused(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, output, _ = _evolve(tmp_path, changed(TINY, device="cuda"))
    assert code == 2 and "has no CUDA device" in output and len(output.strip().splitlines()) == 1


def test_an_address_where_nothing_listens_fails_fast_and_clearly(tmp_path):
    import time

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    code, output, _ = _evolve(tmp_path, changed(TINY, address=f"127.0.0.1:{port}", workers=1))
    assert time.monotonic() - t0 < 30
    assert code == 2, output
    assert f"address '127.0.0.1:{port}': no Ray cluster answers there" in output
