"""Ray: a run on a real two-node cluster (joined through --address) equals the serial run.

The cluster is `ray.cluster_utils.Cluster` on 127.0.0.1: a head node and a
second node of one CPU each, so the two evaluation actors land on different
nodes (raylets). Only what this module starts is stopped.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import TINY, changed
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
