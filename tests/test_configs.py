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
    # `run` started again resumes the newest run of a point and seed stopped short of its
    # generations, from the same config; a finished run, one of another config or one
    # without a checkpoint is not resumed: a fresh run starts.
    import os

    from conftest import TINY, changed

    from evo.driver import new_run

    curve = _curve()
    runs, log = tmp_path / "runs", tmp_path / "p-s0.log"

    def config_file(name, **changes):
        path = tmp_path / f"{name}.toml"
        raw = changed(TINY, generations=4, checkpoint_every=1, **changes)
        path.write_text(config.dumps(config.resolve(config.validate(raw))))
        return path

    def stopped_run(generations, **changes):
        # A run of `generations` whose config then asks for 4: stopped part-way.
        short = config.load(config_file("short", **changes))
        run_dir = new_run({**short, "generations": generations}, runs, progress=False).run_dir
        (run_dir / "config.toml").write_text(config.dumps({**short, "generations": 4}))
        return run_dir

    cfg = config_file("p-s0")
    assert curve.unfinished(runs, cfg) is None
    stopped_run(4)  # finished
    stopped_run(2, seed=5)  # another config
    assert curve.unfinished(runs, cfg) is None
    older, newer = stopped_run(1), stopped_run(2)
    os.utime(older / "checkpoint.pt", (1e9, 1e9))
    assert curve.unfinished(runs, cfg) == newer

    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd[cmd.index("evolve") + 1 :])
        if "nothing" not in calls[-1]:
            kwargs["stdout"].write(f"finished generation 4: {tmp_path / 'done'}\n")

    monkeypatch.setattr(curve.subprocess, "run", fake_run)
    assert curve.evolve(cfg, runs, log) == tmp_path / "done"
    assert calls[-1] == ["--resume", str(newer), "--quiet"]
    fresh = tmp_path / "fresh"
    assert curve.evolve(cfg, fresh, log) == tmp_path / "done"
    assert calls[-1] == [str(cfg), "--out", str(fresh), "--quiet"]
    # Only this attempt's lines count: an earlier attempt that finished says nothing of it.
    monkeypatch.setattr(curve, "unfinished", lambda runs, cfg: Path("nothing"))
    with pytest.raises(RuntimeError, match="did not finish"):
        curve.evolve(cfg, fresh, log)
