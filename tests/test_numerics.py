"""Thread-invariant runs (evo/numerics.py): the same bits on 1 and 2 threads, or a clear refusal."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY, changed, run_metrics

from evo import config
from evo.driver import new_run
from evo.numerics import ENV, STRICT, ThreadInvarianceError
from evo.resume import config_changes
from genome.files import load_genome

ROOT = Path(__file__).resolve().parents[1]
HAS_MKL = torch.backends.mkl.is_available()

# The g-network by gradient on the digits body of the compression curve (784 -> 800 -> 10):
# without strict numerics its runs on 1 and 2 threads part from the first step on the
# processor this was written on (a one-genome GEMM divides its sums by thread).
GRADIENT = """\
thread_invariant = true
generations = 5
batch_size = 64
eval_every = 5
checkpoint_every = 5

[task]
objectives = ["digits"]

[objectives.digits]
dataset = "mnist"

[layout]
hidden = [800]

[decoder]
name = "gnet"
compression = 300.0
settings = { code = "binary" }

[algorithm]
name = "gradient"
population_size = 1
learning_rate = 0.01
"""


def _python(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`python ARGS` with the environment's MKL_CBWR replaced by `env`'s, if any."""
    clean = {k: v for k, v in os.environ.items() if k != ENV}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_thread_invariant_must_be_true_or_false():
    with pytest.raises(config.ConfigError, match="thread_invariant: must be true or false, got 1"):
        config.validate(changed(TINY, thread_invariant=1))
    assert config.resolve(config.validate(copy.deepcopy(TINY)))["thread_invariant"] is False


def test_a_run_saved_before_the_setting_resumes_as_false():
    cfg = config.resolve(config.validate(copy.deepcopy(TINY)))
    older = {k: v for k, v in cfg.items() if k != "thread_invariant"}
    assert config_changes(older, cfg) == []
    assert config_changes(older, {**cfg, "thread_invariant": True}) == [
        "thread_invariant (False -> True)"
    ]


def test_mkl_reports_the_mode_the_environment_set():
    code = "from evo.numerics import mkl_mode; print(mkl_mode())"
    strict = _python("-c", code, **{ENV: STRICT})
    off = _python("-c", code)
    assert strict.returncode == off.returncode == 0, strict.stderr + off.stderr
    # The report goes to a file, not to the process's output.
    if HAS_MKL:
        assert strict.stdout.strip().splitlines() == ["AUTO,STRICT"]
        assert off.stdout.strip().splitlines() == ["OFF"]
    else:
        assert strict.stdout.strip() == off.stdout.strip() == "None"


def test_mkl_mode_is_read_with_standard_output_closed():
    clean = {k: v for k, v in os.environ.items() if k != ENV}
    res = subprocess.run(
        [sys.executable, "-c", "import sys; from evo.numerics import mkl_mode; "
         "print(mkl_mode(), file=sys.stderr)"],
        cwd=ROOT,
        env={**clean, ENV: STRICT},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
        preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1] == ("AUTO,STRICT" if HAS_MKL else "None")


def test_a_process_whose_mkl_already_runs_unstrict_is_refused_and_left_as_it_was():
    code = (
        "import os, torch\n"
        "from evo.numerics import ENV, ThreadInvarianceError, require_thread_invariance\n"
        "torch.ones(64, 64) @ torch.ones(64, 64)  # MKL starts here, in its default mode\n"
        "try:\n"
        "    require_thread_invariance()\n"
        "except ThreadInvarianceError as e:\n"
        "    print(e)\n"
        "print(os.environ.get(ENV))\n"
    )
    res = _python("-c", code)
    assert res.returncode == 0, res.stderr[-2000:]
    why = (
        "MKL already runs in this process with reproducibility mode OFF"
        if HAS_MKL
        else "a torch without MKL"
    )
    message, env = res.stdout.strip().splitlines()
    assert why in message
    assert env == "None"  # not left set for the processes it starts


def test_a_conflicting_mkl_setting_is_refused_before_the_run_directory(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, "AVX2")
    cfg = config.resolve(config.validate(changed(TINY, thread_invariant=True)))
    with pytest.raises(ThreadInvarianceError, match="MKL_CBWR='AVX2': unset it or set it to"):
        new_run(cfg, tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_the_command_line_refuses_it_in_one_line(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(GRADIENT)
    res = _python(
        "-m", "evo.cli", "evolve", str(cfg), "--out", str(tmp_path), **{ENV: "COMPATIBLE"}
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: thread_invariant = true needs MKL's strict mode, but this process has "
        "MKL_CBWR='COMPATIBLE': unset it or set it to AUTO,STRICT"
    ]


def test_a_thread_invariant_run_is_the_same_on_one_and_two_threads(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(GRADIENT)
    runs = []
    for threads in ("1", "2"):
        out = tmp_path / f"t{threads}"
        res = _python(
            "-m", "evo.cli", "evolve", str(cfg), "--out", str(out), "--quiet",
            OMP_NUM_THREADS=threads,
            MKL_NUM_THREADS=threads,
        )  # fmt: skip
        if not HAS_MKL:  # nothing here can make its products thread-invariant: refused
            assert res.returncode == 2 and "a torch without MKL" in res.stderr
            return
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        (run_dir,) = out.iterdir()
        runs.append(run_dir)
    assert run_metrics(runs[0]) == run_metrics(runs[1])
    best = [load_genome(r / "best.genome").genome for r in runs]
    assert torch.equal(best[0], best[1])
