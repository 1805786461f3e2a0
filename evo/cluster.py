"""Ray for a run: a local Ray on 127.0.0.1 only, or a cluster joined by address.

The problem (evo/problem.py) owns its actors; this module only starts or joins
Ray for the process. Settings never reach algorithm code.
"""

from __future__ import annotations

import os
import socket

# How long a cluster's address may take to answer before the run gives up on it.
CONNECT_TIMEOUT_S = 10.0


class RayAddressError(ConnectionError):
    """Nothing answers at the Ray address the run was given."""


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise RayAddressError unless something listens at `address` ("host:port" or
    "ray://host:port"; "auto" is Ray's own to find), within `timeout` seconds:
    Ray itself would wait minutes before it says so."""
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if address == "auto" or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise RayAddressError(
            f"address {address!r}: no Ray cluster answers there ({why} within {timeout:g} s); "
            "start its head with `ray start --head`, or give its address (host:port or auto)"
        ) from None


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


# The per-generation cost of Ray actors: the largest that bench/ray_overhead.py
# measured (the generation's sync, the genomes out and the evaluations back):
# 16-61 ms a generation on local actors in an earlier version, 0-13 ms now on
# local actors and on a two-node cluster of one machine. Kept at the larger
# figure: a network between machines adds to what one machine shows.
ACTOR_OVERHEAD_S = 0.06


def auto_workers(
    step_s: float, cluster_cpus: int, local_cpus: int, overhead_s: float = ACTOR_OVERHEAD_S
) -> tuple[int | str, str]:
    """What `workers = "auto"` runs with, and why: 0 (in-process) or "max" (every CPU).

    `step_s` is one in-process evaluation of a generation on this machine. On
    one machine actors never paid in bench/ray_overhead.py (torch already
    spreads one process's work over its cores), so a cluster with no more
    CPUs than this machine runs in-process. Otherwise the work spread over
    the cluster takes about step_s * local_cpus / cluster_cpus plus the
    actors' overhead, and actors are used when that is shorter.
    """
    if cluster_cpus <= local_cpus:
        return 0, (
            f"in-process: the cluster has {cluster_cpus} CPUs, this machine {local_cpus}, "
            "and on one machine Ray actors do not pay"
        )
    spread = step_s * local_cpus / cluster_cpus + overhead_s
    ms = f"an in-process evaluation takes {1e3 * step_s:.0f} ms, on {cluster_cpus} CPUs ~{1e3 * spread:.0f} ms"
    if spread < step_s:
        return "max", f"{cluster_cpus} Ray actors: {ms}"
    return 0, f"in-process: {ms} with the actors' overhead"


def connect_ray(address: str, workers: int | str) -> bool:
    """Start local Ray or join the cluster at `address`; True if this call started it.

    Locally, traffic stays on 127.0.0.1 and the dashboard is off. Joining a
    cluster leaves its network settings alone.
    """
    import ray

    if ray.is_initialized():
        return False
    if address:
        check_address(address)
        ray.init(address=address, log_to_driver=False)
    else:
        keep_ray_local()
        cpus = os.cpu_count() or 1
        if isinstance(workers, int):
            cpus = max(cpus, workers)
        # "local": a new Ray of its own, even where another is running on this machine.
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    return True
