"""Ray for a run: a local Ray on 127.0.0.1 only, or a cluster joined by address.

The problem (evo/problem.py) owns its actors; this module only starts or joins
Ray for the process. Settings never reach algorithm code.
"""

from __future__ import annotations

import os


def keep_ray_local() -> None:
    """Make the Ray started next in this process (and its workers) use 127.0.0.1 only.

    Ray advertises the machine's interface address unless clusters are
    disabled. The environment variable covers the processes Ray starts; the
    constant covers this one, where Ray read the variable when it was first
    imported (EvoTorch imports it). Not for joining a cluster by address.
    """
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def connect_ray(address: str, workers: int | str) -> bool:
    """Start local Ray or join the cluster at `address`; True if this call started it.

    Locally, traffic stays on 127.0.0.1 and the dashboard is off. Joining a
    cluster leaves its network settings alone.
    """
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        keep_ray_local()
        cpus = os.cpu_count() or 1
        if isinstance(workers, int):
            cpus = max(cpus, workers)
        # "local": a new Ray of its own, even where another is running on this machine.
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    return True
