"""Shared test configs: the tiny run every evo test starts from, changed by path.

Test modules import them (`from conftest import TINY, changed`): they are used
at collection time, in parametrize lists, where fixtures cannot be.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from evo.rundir import TIMING_COLUMNS

# A run of seconds: digits through a 16-unit hidden layer, a population of 8.
TINY: dict[str, Any] = {
    "seed": 0,
    "generations": 3,
    "batch_size": 64,
    "eval_every": 2,
    "checkpoint_every": 2,
    "task": {"objectives": ["digits"]},
    "layout": {"hidden": [16]},
    "decoder": {"name": "gnet", "settings": {"hidden": [4, 4]}},
    "algorithm": {"name": "snes", "population_size": 8},
}


def changed(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of `base` with each `a__b__c=value` set at raw["a"]["b"]["c"]."""
    raw = copy.deepcopy(base)
    for path, value in changes.items():
        *head, last = path.split("__")
        d = raw
        for k in head:
            d = d.setdefault(k, {})
        d[last] = value
    return raw


def assert_one_line_error(res: Any, *words: str) -> None:
    """A CLI result that failed with status 2 and one line on stderr naming `words`."""
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.output
    for w in words:
        assert w in lines[0], lines[0]


def run_metrics(run_dir: Path) -> list[list[str]]:
    """A run's metrics.csv rows without the timing columns, which differ from run to run."""
    header, *rows = (Path(run_dir) / "metrics.csv").read_text().splitlines()
    keep = [i for i, c in enumerate(header.split(",")) if c not in TIMING_COLUMNS]
    return [[row.split(",")[i] for i in keep] for row in rows]
