"""Ray: a run on a real two-node cluster (joined through --address) equals the serial run.

The cluster is `ray.cluster_utils.Cluster` on 127.0.0.1: a head node and a
second node of one CPU each, so the two evaluation actors land on different
nodes (raylets). Only what this module starts is stopped.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, changed, run_metrics
from typer.testing import CliRunner

from evo import config
from evo.checkpoint import read_state
from evo.cli import app
from evo.driver import new_run
from evo.problem import keep_ray_local

# Let the driver join without a token (this cluster only).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

# 24 genomes on two actors: pieces of 16 and 8, so a piece is padded (evo/problem.py).
# The actors draw their minibatches from the face bank, read from its cache file.
RAY_RUN = changed(
    TINY,
    seed=5,
    eval_every=3,
    checkpoint_every=3,
    task__objectives=["faces"],
    objectives={"faces": {"data": "bank", "bank_size": 1024}},
    layout__hidden=[8],
    decoder__settings={"hidden": [16, 16]},
    algorithm__population_size=24,
)
# The few-shot objective: episodes drawn in the driver, every genome adapted on the actors.
FEWSHOT_RUN = changed(
    RAY_RUN,
    task__objectives=["fewshot"],
    objectives={
        "fewshot": {"data": "digits", "size": 8, "way": 3, "query": 2, "episodes": 3}
        | {"test_episodes": 4}
    },
    algorithm__name="snes",
)
RUNS = {"faces": RAY_RUN, "fewshot": FEWSHOT_RUN}


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        pytest.skip("Ray is already connected in this process")
    keep_ray_local()  # every node on 127.0.0.1
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    try:
        yield c
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()


def _best(run_dir):
    return read_state(run_dir)["best"]


# The GA draws from the problem's generator after evaluating, so it also checks that
# creating the actors draws nothing from a step's random stream.
@pytest.mark.slow
@pytest.mark.parametrize(("run", "algorithm"), [("faces", "ga"), ("fewshot", "snes")])
def test_two_node_cluster_run_equals_serial_run(tmp_path, cluster, run, algorithm):
    raw = copy.deepcopy(RUNS[run])
    raw["algorithm"]["name"] = algorithm
    cfg = config.resolve(config.validate(raw))
    serial = new_run(cfg, tmp_path / "serial", progress=False)
    path = tmp_path / "cfg.toml"
    path.write_text(config.dumps(cfg))
    out = CliRunner().invoke(
        app,
        [
            "evolve",
            str(path),
            "--address",
            cluster.address,
            "--workers",
            "2",
            "--out",
            str(tmp_path / "ray"),
            "--quiet",
        ],
    )
    assert out.exit_code == 0, out.output
    (run_dir,) = (tmp_path / "ray").iterdir()
    assert config.load(run_dir / "config.toml")["address"] == cluster.address
    best = _best(run_dir)
    assert best["score"] == serial.best_fitness
    assert torch.equal(best["genome"], serial.best_genome)
    import ray

    assert not ray.is_initialized()  # the run disconnected; the cluster is still up
    assert len([n for n in cluster.list_all_nodes()]) == 2
    assert {n.node_ip_address for n in cluster.list_all_nodes()} == {"127.0.0.1"}


@pytest.mark.slow
def test_local_ray_stays_on_loopback():
    # The embedded mode of `--workers N` without --address, in a fresh process that
    # imports Ray (through EvoTorch) before connecting, as the CLI does.
    script = (
        "import evo.problem, ray, json\n"
        "assert evo.problem.connect_ray('', 1)\n"
        "@ray.remote\n"
        "def where(): return ray.util.get_node_ip_address()\n"
        "print(json.dumps([[n['NodeManagerAddress'] for n in ray.nodes()], ray.get(where.remote())]))\n"
        "ray.shutdown()\n"
    )
    # Neither the loopback switch nor this module's cluster address is inherited.
    drop = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    nodes, worker = json.loads(out.stdout.strip().splitlines()[-1])
    assert nodes == ["127.0.0.1"]
    assert worker == "127.0.0.1"


def _busy_actor_pids() -> list[int]:
    """Ray worker processes evaluating a piece right now (Ray names a worker by its task)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"ray::EvaluationActor.evaluate_batch_piece"):
            pids.append(int(proc.name))
    return pids


# Heavier than RAY_RUN, so that pieces take long enough to be caught mid-evaluation.
KILL_RUN = changed(RAY_RUN, generations=20, batch_size=1024, layout__hidden=[64], eval_every=4)


@pytest.mark.slow
def test_run_survives_a_ray_worker_killed_mid_generation(tmp_path, cluster, caplog):
    cfg = config.resolve(config.validate(copy.deepcopy(KILL_RUN)))
    serial = new_run(cfg, tmp_path / "serial", progress=False)
    killed: list[int] = []
    done = threading.Event()

    def killer() -> None:
        # The first worker seen evaluating a piece, killed by its pid, once.
        while not done.is_set() and not killed:
            for pid in _busy_actor_pids():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.002)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        with caplog.at_level("WARNING", logger="innate"):
            ray_cfg = {**cfg, "address": cluster.address, "workers": 2}
            res = new_run(ray_cfg, tmp_path / "ray", progress=False)
    finally:
        done.set()
        thread.join()
    assert killed, "no worker was caught evaluating"
    assert "a Ray actor was lost" in caplog.text
    assert res.generation == cfg["generations"]
    # The lost piece was evaluated again: the same run as the undisturbed serial one.
    assert res.best_fitness == serial.best_fitness
    assert torch.equal(res.best_genome, serial.best_genome)
    assert run_metrics(res.run_dir) == run_metrics(serial.run_dir)


@pytest.mark.slow
def test_thread_invariant_actors_run_mkl_strict_or_are_refused(cluster, monkeypatch):
    import ray

    from evo import build
    from evo.numerics import ThreadInvarianceError

    cfg = config.resolve(config.validate(changed(TINY, thread_invariant=True, workers=2)))
    has_mkl = torch.backends.mkl.is_available()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        problem = build.build_problem(cfg)
        if has_mkl:
            problem.start_actors()  # checks every actor's mode
            modes = ray.get([a.call.remote("numerics_mode", [], {}) for a in problem.actors])
            problem.close()
            assert len(modes) == 2 and all(m.endswith("STRICT") for m in modes)
        # Actors whose MKL is not strict are stopped, and the run refused.
        monkeypatch.setattr("evo.problem.actor_env", lambda: {"MKL_CBWR": "COMPATIBLE"})
        problem = build.build_problem(cfg)
        mode = "COMPATIBLE" if has_mkl else "unknown"
        with pytest.raises(
            ThreadInvarianceError, match=f"Ray actor 0 of 2 runs MKL in mode {mode}"
        ):
            problem.start_actors()
        assert problem.actors is None
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_auto_workers_on_a_cluster_runs_a_trivial_objective_in_process(
    tmp_path, cluster, monkeypatch, capsys
):
    import ray

    # This machine as a one-CPU one, so that the two-CPU cluster has more and the
    # choice rests on the timed evaluation.
    monkeypatch.setattr("evo.workers.os.cpu_count", lambda: 1)
    cfg = config.resolve(config.validate(copy.deepcopy(TINY)))
    serial = new_run(cfg, tmp_path / "serial", progress=False)
    res = new_run(
        {**cfg, "address": cluster.address, "workers": "auto"}, tmp_path / "auto", progress=False
    )
    err = capsys.readouterr().err
    assert 'workers = "auto": in-process: an in-process evaluation takes' in err
    assert res.best_fitness == serial.best_fitness
    assert not ray.is_initialized()  # it let go of the cluster it did not need


def test_auto_workers_choice():
    from evo.cluster import ACTOR_OVERHEAD_S, auto_workers

    # No more CPUs than this machine: in-process without a look at the cost.
    assert auto_workers(10.0, 8, 8)[0] == 0
    # A heavy generation (1 s here) spread over 4x the CPUs: actors.
    workers, why = auto_workers(1.0, 8, 2)
    assert workers == "max" and "8 Ray actors" in why
    # A trivial one: the actors' overhead is more than the whole evaluation.
    assert auto_workers(ACTOR_OVERHEAD_S / 2, 64, 2)[0] == 0
    # The crossover: spread over 2x the CPUs, actors pay from twice the overhead.
    assert auto_workers(2.1 * ACTOR_OVERHEAD_S, 4, 2)[0] == "max"
    assert auto_workers(1.9 * ACTOR_OVERHEAD_S, 4, 2)[0] == 0


def test_auto_workers_on_one_machine_runs_in_process(tmp_path):
    import ray

    cfg = config.resolve(config.validate(changed(TINY, workers="auto")))
    res = new_run(cfg, tmp_path, progress=False)
    serial = new_run({**cfg, "workers": 0}, tmp_path / "serial", progress=False)
    assert res.best_fitness == serial.best_fitness
    assert not ray.is_initialized()


# The cluster whose head is lost lives in a process of its own: a cluster object whose
# head is gone keeps trying to reach it from the process that made it, and a later
# fork of that process (tests/test_evo_rundir_faults.py) would hang.
LOSE_HEAD = """
import os, subprocess, sys, time
from pathlib import Path
from ray.cluster_utils import Cluster
from evo.problem import keep_ray_local
config_path, out = Path(sys.argv[1]), Path(sys.argv[2])
keep_ray_local()
c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
c.add_node(num_cpus=1)
c.wait_for_nodes()
env = dict(os.environ, RAY_gcs_rpc_server_reconnect_timeout_s="5")
cmd = [sys.executable, "-m", "evo.cli", "evolve", str(config_path), "--quiet"]
cmd += ["--address", c.address, "--workers", "2", "--out", str(out)]
proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
deadline = time.monotonic() + 600
while not list(out.glob("*/checkpoint.pt")):
    if proc.poll() is not None or time.monotonic() > deadline:
        proc.kill()
        sys.exit("no checkpoint: " + proc.stdout.read().decode()[-2000:])
    time.sleep(0.05)
c.remove_node(c.head_node)
try:
    text = proc.communicate(timeout=120)[0].decode()
finally:
    if proc.poll() is None:
        proc.kill()
    for node in list(c.worker_nodes):
        c.remove_node(node, allow_graceful=False)
print(proc.returncode)
print(text[-2000:])
"""


@pytest.mark.slow
def test_lost_head_node_leaves_a_resumable_run(tmp_path):
    """The head node dies mid-run: Ray ends the driver (GCS unreachable, or its actors'
    node crashed), the run directory keeps its last checkpoint, and a resume ends as
    the undisturbed run."""
    from evo.driver import resume_run

    cfg = config.resolve(config.validate(changed(RAY_RUN, generations=2000, checkpoint_every=5)))
    path = tmp_path / "cfg.toml"
    path.write_text(config.dumps(cfg))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    lost = subprocess.run(
        [sys.executable, "-c", LOSE_HEAD, str(path), str(tmp_path / "runs")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert lost.returncode == 0, lost.stderr[-2000:]
    code, _, output = lost.stdout.partition("\n")
    assert int(code) != 0  # the driver did not finish
    # Whichever Ray notices first: the GCS unreachable, or the actors' owner node gone.
    assert "GCS" in output or "node has crashed" in output, output
    (run_dir,) = (tmp_path / "runs").iterdir()
    done = read_state(run_dir)["generation"]
    assert 5 <= done < 30
    serial = new_run({**cfg, "generations": 30}, tmp_path / "serial", progress=False)
    resumed = resume_run(run_dir, progress=False, generations=30, workers=0, address="")
    assert resumed.best_fitness == serial.best_fitness
    assert torch.equal(resumed.best_genome, serial.best_genome)
    assert run_metrics(resumed.run_dir) == run_metrics(serial.run_dir)
