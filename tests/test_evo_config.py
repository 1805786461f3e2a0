"""Config validation: every error names the field and what would be valid; resolving is stable."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
from conftest import TINY, changed
from typer.testing import CliRunner

from evo import build, config, rundir
from evo.cli import app
from evo.search import ALGORITHMS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# The tiny run with every top-level key left to its default.
BASE = {k: TINY[k] for k in ("task", "layout", "decoder", "algorithm")}


def _with(**changes):
    return changed(BASE, **changes)


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [
        (
            _with(generatons=5),
            r"top level: unknown key\(s\) \['generatons'\]; valid keys: .*generations",
        ),
        (
            _with(task__objectives=["smell"]),
            r"task.objectives\[0\]: 'smell' is not valid; valid values: faces, digits, fewshot, wiring",
        ),
        (_with(task__objectives=["faces", "digits"]), r"task.objectives: at most one of"),
        (_with(task__weights=[1.0, 2.0]), r"task.weights: must be a list of 1 numbers"),
        (
            _with(task__dataset="cifar"),
            r"task.dataset: 'cifar' is not valid; valid values: digits, mnist",
        ),
        (
            _with(task__augment="flip"),
            r"task.augment: 'flip' is not valid; valid values: none, shift",
        ),
        (
            _with(task__objectives=["faces"], task__augment="shift"),
            r"task.augment: 'shift' is not valid; valid values: none",
        ),
        (
            _with(algorithm__name="adam"),
            r"algorithm.name: 'adam' is not valid; valid values: snes, xnes, pgpe, cem, cmaes, ga, gradient",
        ),
        (
            _with(algorithm__popsize=8),
            r"algorithm: unknown key\(s\) \['popsize'\]; valid keys: .*population_size",
        ),
        (
            _with(algorithm__center_learning_rate="fast"),
            r"algorithm.center_learning_rate: must be a finite number, got 'fast'",
        ),
        (
            _with(task__weights=[float("nan")]),
            r"task.weights\[0\]: must be a finite number, got nan",
        ),
        (
            _with(device="gpu"),
            r"device: must be \"cpu\" or \"cuda\" \(or \"cuda:N\"\), got 'gpu'",
        ),
        (
            _with(task__mode="pareto"),
            r"task.mode: pareto needs algorithm.name in \['ga'\], got 'snes'",
        ),
        (
            _with(algorithm__name="gradient", algorithm__population_size=4),
            r"algorithm.population_size: must be 1",
        ),
        (_with(decoder__name="brain"), r"decoder.name: 'brain' is not valid; valid values: gnet"),
        (_with(workers=-1), r"workers: must be an integer >= 0, \"max\" or \"auto\""),
        (_with(generations=0), r"generations: must be an integer >= 1"),
        (
            _with(final_batch_size=0),
            r"final_batch_size: must be an integer from 1 to 1048576, got 0",
        ),
        (_with(batch_ramp=2.5), r"batch_ramp: must be an integer >= 1, got 2.5"),
        (_with(batch_ramp=100), r"batch_ramp: sets how the batch grows: give final_batch_size"),
        (
            _with(batch_size=64, final_batch_size=32),
            r"final_batch_size: the batch only grows: must be >= batch_size \(64\), got 32",
        ),
        (_with(layout__hidden=[0]), r"layout.hidden: must be a list of integers from 1 to 65536"),
        (
            _with(archive__batch_size=512),
            r'archive.batch_size: keeps a Pareto front: needs task.mode = "pareto"',
        ),
        (_with(archive__every=0), r"archive.every: must be an integer >= 1, got 0"),
        (_with(archive__batch_size=-1), r"archive.batch_size: must be an integer >= 0, got -1"),
        (_with(archive__size=1), r"archive.size: must be 0 \(the population size\) or >= 2"),
        (_with(archive__depth=3), r"archive: unknown key\(s\) \['depth'\]; valid keys: batch_size"),
        (_with(archive__feed=-1), r"archive.feed: must be an integer >= 0, got -1"),
        (
            _with(task__objectives=["digits", "wiring"], algorithm__name="ga", archive__feed=4),
            r"archive.feed: returns archive members: needs archive.batch_size >= 1",
        ),
        (
            _with(
                task__objectives=["digits", "wiring"],
                algorithm__name="ga",
                algorithm__re_evaluate=False,
                archive__batch_size=300,
                archive__feed=4,
            ),
            r"archive.feed: returned members have no score on the generation's batch: needs "
            r"algorithm.re_evaluate = true",
        ),
        (
            _with(
                task__objectives=["digits", "wiring"],
                algorithm__name="ga",
                algorithm__population_size=8,
                archive__batch_size=300,
                archive__feed=8,
            ),
            r"archive.feed: must be below algorithm.population_size \(8\), got 8",
        ),
    ],
)
def test_config_errors_name_field_and_valid_values(raw, pattern):
    with pytest.raises(config.ConfigError, match=pattern):
        config.resolve(config.validate(raw, "my.toml"), "my.toml")


def test_augment_reaches_the_data_objective_only():
    cfg = config.resolve(
        config.validate(_with(task__objectives=["digits", "wiring"], task__augment="shift"))
    )
    assert [o.augment for o in build.make_objectives(cfg)] == ["shift", "none"]
    assert config.resolve(config.validate(BASE))["objectives"]["digits"]["augment"] == "none"


def test_decoder_setting_errors_come_from_the_decoder():
    with pytest.raises(
        config.ConfigError, match=r"my.toml: decoder: gnet: unknown setting.*valid settings"
    ):
        config.resolve(config.validate(_with(decoder__settings={"width": 3}), "my.toml"), "my.toml")


def test_layout_input_output_come_from_the_task():
    cfg = config.resolve(config.validate(BASE))
    assert cfg["layout"]["input"] == [8, 8] and cfg["layout"]["output"] == 10
    with pytest.raises(
        config.ConfigError, match=r"layout.output: the task 'digits' needs 10, got 3"
    ):
        config.resolve(config.validate(_with(layout__output=3)))


def test_batch_size_beyond_the_training_set_fails_before_the_run():
    with pytest.raises(
        config.ConfigError,
        match=r"batch_size: the 'digits' training set has 1437 examples; valid values: 1 to 1437",
    ):
        config.resolve(config.validate(_with(batch_size=2000)))
    assert config.resolve(config.validate(_with(batch_size=1437)))["batch_size"] == 1437
    with pytest.raises(
        config.ConfigError,
        match=r"final_batch_size: the 'digits' training set has 1437 examples; valid values: 1 to",
    ):
        config.resolve(config.validate(_with(final_batch_size=1438)))
    pareto = _with(
        task__objectives=["digits", "wiring"], algorithm__name="ga", archive__batch_size=1438
    )
    with pytest.raises(
        config.ConfigError,
        match=r"archive.batch_size: the 'digits' training set has 1437 examples; valid values",
    ):
        config.resolve(config.validate(pareto))


def test_compression_target_picks_the_widest_decoder():
    cfg = config.resolve(config.validate(_with(decoder__compression=20.0)))
    dec = build.build_decoder(cfg)
    assert dec.compression() >= 20.0
    assert build.build_decoder(config.resolve(config.validate(cfg))).settings == dec.settings


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.toml")))
def test_shipped_configs_resolve_and_round_trip(name):
    cfg = config.load(CONFIGS / name)
    again = config.resolve(config.validate(tomllib.loads(config.dumps(cfg))))
    assert again == cfg


def test_every_algorithm_has_defaults_that_validate():
    for name in ALGORITHMS:
        raw = _with(algorithm={"name": name})
        cfg = config.validate(raw)
        assert cfg["algorithm"]["name"] == name


def test_overrides_and_run_name():
    cfg = config.override(
        config.resolve(config.validate(BASE)), generations=7, population=10, seed=3, workers="max"
    )
    assert (cfg["generations"], cfg["algorithm"]["population_size"], cfg["seed"]) == (7, 10, 3)
    assert rundir.run_name(cfg, "T") == "digits__gnet__s3__T"


def test_cli_reports_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[task]\nobjectives = ["digits"]\n[algorithm]\nname = "snes"\nsigma = 1\n')
    res = CliRunner().invoke(app, ["evolve", str(bad), "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "bad.toml: algorithm: unknown key(s) ['sigma']; valid keys:" in res.output
    res = CliRunner().invoke(app, ["evolve", str(tmp_path / "none.toml")])
    assert res.exit_code == 2 and "no such config file" in res.output


def test_each_objective_has_its_own_settings_table():
    raw = _with(task__objectives=["digits", "wiring"], objectives={"digits": {"augment": "shift"}})
    cfg = config.resolve(config.validate(raw))
    assert cfg["objectives"] == {"digits": {"dataset": "digits", "augment": "shift"}, "wiring": {}}
    assert [o.augment for o in build.make_objectives(cfg)] == ["shift", "none"]
    # The old place, [task], reads into the same table.
    old = config.resolve(config.validate(_with(task__augment="shift")))
    assert old["objectives"]["digits"]["augment"] == "shift" and "augment" not in old["task"]
    assert config.validate(tomllib.loads(config.dumps(cfg)))["objectives"] == cfg["objectives"]


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [
        (
            _with(objectives={"digits": {"dataset": "cifar"}}),
            r"objectives.digits.dataset: 'cifar' is not valid; valid values: digits, mnist",
        ),
        (
            _with(objectives={"faces": {"augment": "none"}}),
            r"objectives.faces: sets an objective the run does not use; task.objectives: digits",
        ),
        (
            _with(objectives={"digits": {"shots": 5}}),
            r"objectives.digits: unknown key\(s\) \['shots'\]; valid keys: augment, dataset",
        ),
        (
            _with(task__dataset="mnist", objectives={"digits": {"dataset": "digits"}}),
            r"task.dataset: 'mnist', but objectives.digits.dataset says 'digits'; give it once",
        ),
        (_with(objectives=3), r"objectives: must hold one table per objective"),
    ],
)
def test_objective_settings_errors_name_the_table(raw, pattern):
    with pytest.raises(config.ConfigError, match=pattern):
        config.validate(raw, "test")
