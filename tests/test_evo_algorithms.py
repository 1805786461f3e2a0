"""GA settings: out-of-range values fail naming the field and what is valid;
`re_evaluate = false` scores only the children after the first generation."""

from __future__ import annotations

import csv
from typing import Any

import pytest
from run_configs import TINY as BASE
from run_configs import changed

from evo import config as C
from evo.algorithms import ALGORITHMS, check_ga
from evo.run import new_run

# The shared tiny run, as a Pareto GA on digits and wiring.
TINY = changed(
    BASE,
    task__objectives=["digits", "wiring"],
    task__mode="pareto",
    algorithm__name="ga",
)


def ga(**changes: Any) -> dict[str, Any]:
    return {**ALGORITHMS["ga"].defaults, **changes}


@pytest.mark.parametrize(
    ("hyper", "message"),
    [
        (
            ga(mutation_probability=1.5),
            "algorithm.mutation_probability: must be a number in [0, 1], got 1.5",
        ),
        (ga(mutation_stdev=0.0), "algorithm.mutation_stdev: must be a number > 0, got 0.0"),
        (ga(eta=-1), "algorithm.eta: must be a number > 0, got -1"),
        (ga(tournament_size=2.5), "algorithm.tournament_size: must be an integer >= 1, got 2.5"),
        (ga(re_evaluate="no"), "algorithm.re_evaluate: must be true or false, got 'no'"),
    ],
)
def test_ga_settings_out_of_range_name_the_field(hyper, message):
    with pytest.raises(ValueError) as err:
        check_ga(hyper)
    assert str(err.value) == message


def test_ga_defaults_pass_and_re_evaluate_is_a_config_key():
    check_ga(ga())
    cfg = C.validate(changed(TINY, algorithm__re_evaluate=False), "test")
    assert cfg["algorithm"]["re_evaluate"] is False
    with pytest.raises(C.ConfigError, match=r"algorithm\.re_evaluate: must be true or false"):
        C.validate(changed(TINY, algorithm__re_evaluate="yes"), "test")


@pytest.mark.parametrize(
    ("re_evaluate", "per_generation"), [(True, [16, 16, 16]), (False, [16, 8, 8])]
)
def test_re_evaluate_false_scores_only_the_children(tmp_path, re_evaluate, per_generation):
    cfg = C.resolve(C.validate(changed(TINY, algorithm__re_evaluate=re_evaluate), "test"), "test")
    run_dir = new_run(cfg, tmp_path, progress=False).run_dir
    with open(run_dir / "metrics.csv", newline="") as f:
        evaluations = [int(r["evaluations"]) for r in csv.DictReader(f)]
    assert evaluations == per_generation
