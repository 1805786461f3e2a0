"""Broken run directories and outputs get one line, exit status 2, and lose nothing.

A checkpoint cut short, empty, random or a directory; a missing one (no silent
restart from generation 0: `--restart` says so); a corrupt metrics.csv; a
config.toml edited after the start; an output directory that is a file,
read-only or immutable; a disk that fills during a checkpoint (the last one
stays whole); and many runs started in the same second, which all get a
directory of their own.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY, assert_one_line_error, changed
from typer.testing import CliRunner

from evo import config, rundir
from evo.checkpoint import CHECKPOINT, read_state
from evo.cli import app
from evo.driver import new_run

# A checkpoint every generation, so that a fault can come between two of them.
RAW = changed(TINY, generations=3, checkpoint_every=1)


def tiny(**changes: Any) -> dict[str, Any]:
    return config.resolve(config.validate(changed(RAW, **changes), "test"), "test")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, torch.Tensor]:
    res = new_run(tiny(), tmp_path_factory.mktemp("runs"), progress=False)
    return res.run_dir, res.best_genome


@pytest.fixture
def run(finished, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished[0], copy)
    return copy


def evolve(*args: Any) -> Any:
    return CliRunner().invoke(app, ["evolve", *map(str, args), "--quiet"])


def snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def _checkpoint_cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:500])


def _checkpoint_empty(path: Path) -> None:
    path.write_bytes(b"")


def _checkpoint_random(path: Path) -> None:
    # Seed 3's bytes make the weights-only unpickler raise a KeyError (once a traceback).
    g = torch.Generator().manual_seed(3)
    path.write_bytes(
        torch.randint(0, 256, (4000,), dtype=torch.uint8, generator=g).numpy().tobytes()
    )


def _checkpoint_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


BROKEN = {
    "cut short": (_checkpoint_cut_short, "not a whole torch file"),
    "empty": (_checkpoint_empty, "empty: 0 bytes"),
    "random": (_checkpoint_random, "not a whole torch file"),
    "a directory": (_checkpoint_directory, "a directory, not a file"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_checkpoint_is_refused_in_one_line_and_left_as_it_was(run, case):
    breaks, words = BROKEN[case]
    breaks(run / CHECKPOINT)
    before = snapshot(run)
    assert_one_line_error(evolve("--resume", run), CHECKPOINT, words, "--restart")
    assert snapshot(run) == before and (run / CHECKPOINT).exists()


def test_restart_sets_an_unreadable_checkpoint_aside_and_runs_the_same_search(run, finished):
    _checkpoint_cut_short(run / CHECKPOINT)
    broken = (run / CHECKPOINT).read_bytes()
    res = evolve("--resume", run, "--restart")
    assert res.exit_code == 0, res.output
    assert (run / "checkpoint.pt.unreadable").read_bytes() == broken
    assert read_state(run)["generation"] == 3
    assert torch.equal(read_state(run)["best"]["genome"], finished[1])


def test_a_missing_checkpoint_is_refused_naming_restart_not_silently_restarted(run):
    (run / CHECKPOINT).unlink()
    before = snapshot(run)
    assert_one_line_error(evolve("--resume", run), "no checkpoint", f"--resume {run} --restart")
    assert snapshot(run) == before
    assert evolve("--resume", run, "--restart").exit_code == 0
    assert read_state(run)["generation"] == 3


def test_restart_refuses_to_throw_away_a_readable_checkpoint(run):
    before = snapshot(run)
    assert_one_line_error(evolve("--resume", run, "--restart"), "readable, at generation 3")
    assert snapshot(run) == before


METRICS = {
    "binary": (b"\x89PNG\r\n\x1a\n\x00\xff" * 20, "not text"),
    "no header": (b"hello,world\na,b\n", "line 1 is not a metrics header"),
    "a short row": (None, "line 3 has 2 fields"),
    "a bad generation": (None, "line 2: generation 'x0'"),
}


@pytest.mark.parametrize("command", ["resume", "report"])
@pytest.mark.parametrize("case", list(METRICS))
def test_a_corrupt_metrics_csv_is_refused_naming_the_line(run, case, command):
    data, words = METRICS[case]
    path = run / rundir.METRICS
    if data is None:
        header, *rows = path.read_text().splitlines(keepends=True)
        if case == "a short row":
            rows[1] = "1,8\n"
        else:
            rows[0] = "x" + rows[0]
        data = "".join([header, *rows]).encode()
    path.write_bytes(data)
    before = snapshot(run)
    if command == "resume":
        res = evolve("--resume", run, "--generations", 4)
    else:
        res = CliRunner().invoke(app, ["report", str(run)])
    assert_one_line_error(res, str(path), words)
    assert snapshot(run) == before


def test_a_row_cut_short_by_a_kill_is_dropped_and_the_run_goes_on(run):
    with open(run / rundir.METRICS, "a") as f:
        f.write("3,8,0,12.")  # no newline: the kill came mid-append
    res = evolve("--resume", run, "--generations", 4)
    assert res.exit_code == 0, res.output
    gens = [r.split(",")[0] for r in (run / rundir.METRICS).read_text().splitlines()[1:]]
    assert gens == ["0", "1", "2", "3"]


EDITS = {
    "seed": ("seed = 0", "seed = 7", "seed (0 -> 7)"),
    "population": (
        "population_size = 8",
        "population_size = 16",
        "algorithm.population_size (8 -> 16)",
    ),
    "decoder": (
        "standardize = true",
        "standardize = false",
        "decoder.settings.standardize (True -> False)",
    ),
    "batch": ("batch_size = 64", "batch_size = 32", "batch_size (64 -> 32)"),
}


@pytest.mark.parametrize("case", list(EDITS))
def test_a_config_edited_after_the_start_is_refused_naming_the_field(run, case):
    old, new, words = EDITS[case]
    text = (run / rundir.CONFIG).read_text()
    assert old in text, text
    (run / rundir.CONFIG).write_text(text.replace(old, new, 1))
    before = snapshot(run)
    assert_one_line_error(
        evolve("--resume", run, "--generations", 4), "changed since the run started", words
    )
    assert snapshot(run) == before


def test_a_resume_may_change_how_long_and_how_often_to_test(run):
    text = (run / rundir.CONFIG).read_text()
    text = text.replace("generations = 3", "generations = 4").replace(
        "eval_every = 2", "eval_every = 1"
    )
    (run / rundir.CONFIG).write_text(text)
    res = evolve("--resume", run)
    assert res.exit_code == 0, res.output
    assert read_state(run)["generation"] == 4


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(config.dumps(tiny()))
    return path


def _refuse(err: int, text: str):
    def mkdir(path, *args, **kwargs):
        raise OSError(err, text, str(path))

    return mkdir


@pytest.mark.parametrize(
    ("err", "text"),
    [(errno.EACCES, "Permission denied"), (errno.EPERM, "Operation not permitted")],
    ids=["read-only", "immutable"],
)
def test_an_output_directory_that_refuses_writes_gets_one_line(
    config_file, tmp_path, err, text, monkeypatch
):
    # Simulated: as root, chmod and chattr do not stop this process.
    out = tmp_path / "runs"
    out.mkdir()
    monkeypatch.setattr(rundir.os, "mkdir", _refuse(err, text))
    assert_one_line_error(evolve(config_file, "--out", out), str(out), text, "--out")
    assert not any(out.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod")
def test_a_read_only_output_directory_really_refused(config_file, tmp_path):
    out = tmp_path / "runs"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert_one_line_error(evolve(config_file, "--out", out), str(out), "Permission denied")
    finally:
        out.chmod(0o755)


@pytest.mark.parametrize("where", ["a file", "below a file"])
def test_out_on_a_file_gets_one_line(config_file, tmp_path, where):
    file = tmp_path / "runs"
    file.write_text("not a directory")
    out = file if where == "a file" else file / "sub"
    assert_one_line_error(evolve(config_file, "--out", out), str(out), "--out")
    assert file.read_text() == "not a directory"


def _disk_fills_at_checkpoint(monkeypatch, n: int, err: int = errno.ENOSPC) -> None:
    """From the n-th checkpoint on, every fsync fails as on a full disk."""
    import evo.checkpoint

    real, calls = evo.checkpoint.write_atomic, []

    def write(path, data):
        calls.append(path)
        if len(calls) == n:

            def fsync(fd):
                raise OSError(err, os.strerror(err))

            monkeypatch.setattr(os, "fsync", fsync)
        return real(path, data)

    monkeypatch.setattr(evo.checkpoint, "write_atomic", write)


def test_a_full_disk_keeps_the_last_checkpoint_whole_and_says_so(
    config_file, tmp_path, finished, monkeypatch
):
    out = tmp_path / "runs"
    _disk_fills_at_checkpoint(monkeypatch, 2)
    res = evolve(config_file, "--out", out)
    (run,) = out.iterdir()
    assert_one_line_error(
        res,
        "No space left on device",
        "last checkpoint (generation 1) is intact",
        f"--resume {run}",
    )
    assert read_state(run)["generation"] == 1
    assert not list(run.glob(".*.tmp"))
    monkeypatch.undo()  # space freed
    assert evolve("--resume", run).exit_code == 0
    assert torch.equal(read_state(run)["best"]["genome"], finished[1])


def test_a_run_directory_made_read_only_mid_run_says_what_to_do(config_file, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    _disk_fills_at_checkpoint(monkeypatch, 3, errno.EACCES)
    res = evolve(config_file, "--out", out)
    (run,) = out.iterdir()
    assert_one_line_error(
        res, "Permission denied", "(generation 2) is intact", f"make {run} writable"
    )


def _claim(args: tuple[Path, Any, dict[str, Any]]) -> str:
    out, barrier, cfg = args
    barrier.wait()
    return rundir.make_run_dir(cfg, out, "20260101-000000").name


def test_runs_started_in_the_same_second_each_get_their_own_directory(tmp_path):
    n = 24
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Manager().Barrier(n)
    with ctx.Pool(n) as pool:
        names = pool.map(_claim, [(tmp_path, barrier, tiny())] * n)
    assert len(set(names)) == n
    assert all((tmp_path / name / rundir.CONFIG).is_file() for name in names)
