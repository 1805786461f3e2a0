"""The shipped configs grow the genomes of the results they are named after."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from evo import build, config
from evo.cli.run import DEMO

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _compression(cfg) -> float:
    return build.build_decoder(cfg).compression()


def test_faces_toml_is_the_demo_run():
    faces = config.load(CONFIGS / "faces.toml")
    demo = config.resolve(config.validate(copy.deepcopy(DEMO), "demo"), "demo")
    for key in ("seed", "generations", "batch_size", "layout", "decoder", "algorithm", "task"):
        assert faces[key] == demo[key], key
    assert faces["objectives"] == demo["objectives"]
    assert round(_compression(faces), 1) == 110.9


@pytest.mark.parametrize("name", ["faces_wiring.toml", "results/faces_lfw.toml"])
def test_faces_configs_share_the_faces_genome(name):
    # A faces run's best.genome can start any of them (--init needs the same decoder and layout).
    faces = config.load(CONFIGS / "faces.toml")
    other = config.load(CONFIGS / name)
    assert (other["decoder"], other["layout"]) == (faces["decoder"], faces["layout"])


@pytest.mark.parametrize(
    "path", sorted((CONFIGS / "results").glob("*x.toml")), ids=lambda p: p.stem
)
def test_a_result_named_for_a_compression_reaches_it(path):
    want = float(re.search(r"(\d+)x$", path.stem)[1])
    assert _compression(config.load(path)) >= want


def _curve():
    import importlib.util

    path = CONFIGS.parent / "bench" / "results" / "compression.py"
    spec = importlib.util.spec_from_file_location("compression_curve", path)
    curve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(curve)
    return curve


def test_compression_curve_configs_reach_their_targets(tmp_path):
    # Every point of bench/results/compression.py is a valid run config whose decoder
    # compresses the 784-800-10 body at least as much as the point says.
    curve = _curve()
    points = curve.grid(include_expensive=True)
    assert len(points) == 1 + len(curve.DECODERS) * len(curve.METHODS) * len(curve.TARGETS)
    assert set(curve.EXPENSIVE) < set(points)
    for decoder, method, target in points:
        f = tmp_path / f"{decoder}-{method}-{target}.toml"
        f.write_text(curve.config_text(decoder, method, target, seed=0))
        cfg = config.load(f)
        assert (
            cfg["layout"]["hidden"] == [800] and cfg["objectives"]["digits"]["dataset"] == "mnist"
        )
        assert cfg["algorithm"]["name"] == ("gradient" if method == "gradient" else "snes")
        assert _compression(cfg) >= target


def test_compression_curve_goes_on_from_a_stopped_runs_checkpoint(tmp_path, monkeypatch):
    # `run` started again resumes the newest run of a point that has a checkpoint,
    # and starts afresh where none has one (killed before its first checkpoint).
    import os
    import time

    curve = _curve()
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd[cmd.index("evolve") + 1 :])
        kwargs["stdout"].write(f"finished generation 800: {tmp_path / 'done'}\n")
        kwargs["stdout"].flush()

    monkeypatch.setattr(curve.subprocess, "run", fake_run)
    runs, cfg, log = tmp_path / "runs" / "p-s0", tmp_path / "p-s0.toml", tmp_path / "p-s0.log"
    assert curve.evolve(cfg, runs, log) == tmp_path / "done"
    assert calls[-1] == [str(cfg), "--out", str(runs), "--quiet"]
    (runs / "a").mkdir()  # killed before its first checkpoint: nothing to go on from
    curve.evolve(cfg, runs, log)
    assert calls[-1][0] == str(cfg)
    for name, age in (("b", 20), ("c", 10)):
        (runs / name).mkdir()
        (runs / name / "checkpoint.pt").write_bytes(b"")
        then = time.time() - age
        os.utime(runs / name, (then, then))
    curve.evolve(cfg, runs, log)
    assert calls[-1] == ["--resume", str(runs / "c"), "--quiet"]
