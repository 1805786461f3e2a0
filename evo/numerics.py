"""Runs whose bits do not depend on the number of threads: MKL's strict reproducible mode.

torch's CPU matrix products run in Intel oneMKL, whose GEMM divides a product's
work by thread, so that one genome's re-score, or a gradient step, gives other
last bits on 1 and on 2 threads and a long search drifts apart. oneMKL's
conditional numerical reproducibility in strict mode (`MKL_CBWR=AUTO,STRICT`;
oneMKL Developer Guide, "Obtaining Numerically Reproducible Results") makes
its GEMM give the same bits for any thread count. A run with
`thread_invariant = true` requires that mode in its process and on each Ray
actor.

MKL reads `MKL_CBWR` once, at the process's first matrix product, so the
variable is set before anything of the run computes, and the mode is then
confirmed from MKL's own report (its verbose line names it, `CNR:AUTO,STRICT`):
a process that had already run a product in another mode is refused, not run
in a mode it does not have.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile

import torch

ENV = "MKL_CBWR"
STRICT = "AUTO,STRICT"


class ThreadInvarianceError(RuntimeError):
    """A run asks for thread-invariant numerics that this process cannot give."""


def mkl_mode() -> str | None:
    """The reproducibility mode MKL runs in ("OFF", "AUTO,STRICT", ...), as MKL reports it.

    None where torch has no MKL or the report cannot be read. Runs one small
    product, which starts MKL in the mode `MKL_CBWR` names if nothing had yet.
    """
    if not torch.backends.mkl.is_available() or sys.platform == "win32":
        return None  # (on Windows MKL writes through a C runtime this process cannot flush)
    try:
        report = _verbose_report()
    except (OSError, AttributeError, AssertionError, RuntimeError):
        return None
    found = re.search(r"CNR:(\S+)", report)
    return found.group(1) if found else None


def _verbose_report() -> str:
    """What MKL's verbose mode prints (to file descriptor 1) for one product."""
    flush = ctypes.CDLL(None).fflush
    a = torch.ones(64, 64, dtype=torch.float32)
    if sys.stdout is not None:
        sys.stdout.flush()
    with tempfile.TemporaryFile() as f:
        saved = os.dup(1)
        try:
            flush(None)
            os.dup2(f.fileno(), 1)
            with torch.backends.mkl.verbose(torch.backends.mkl.VERBOSE_ON):
                a @ a
        finally:
            flush(None)
            os.dup2(saved, 1)
            os.close(saved)
        f.seek(0)
        return f.read().decode(errors="replace")


def require_thread_invariance(where: str = "this process") -> None:
    """Put MKL in strict mode here, or raise ThreadInvarianceError saying why it cannot be.

    A refusal leaves the environment as it found it.
    """
    value = os.environ.get(ENV)
    if value is not None and not value.upper().endswith(",STRICT"):
        raise ThreadInvarianceError(
            f"thread_invariant = true needs MKL's strict mode, but {where} has "
            f"{ENV}={value!r}: unset it or set it to {STRICT}"
        )
    if value is None:
        os.environ[ENV] = STRICT
    mode = mkl_mode()
    if mode is not None and mode.upper().endswith("STRICT"):
        return
    if value is None:
        del os.environ[ENV]
    if mode is not None:
        raise ThreadInvarianceError(
            f"thread_invariant = true: MKL already runs in {where} with reproducibility mode "
            f"{mode} (a matrix product ran before the run set {ENV}); set {ENV}={STRICT} in "
            "the environment before Python starts, or run `innate evolve`"
        )
    if not torch.backends.mkl.is_available():
        why = "a torch without MKL"
    else:
        why = "MKL, but its mode cannot be read here" + (
            " (MKL_VERBOSE_OUTPUT_FILE is set: unset it)"
            if os.environ.get("MKL_VERBOSE_OUTPUT_FILE")
            else ""
        )
    raise ThreadInvarianceError(
        f"thread_invariant = true needs torch's matrix products in Intel MKL, in a mode it "
        f"can confirm; {where} has {why}: set thread_invariant = false"
    )


def actor_env() -> dict[str, str]:
    """What a Ray actor's environment needs for strict mode (its runtime_env's env_vars)."""
    return {ENV: os.environ.get(ENV, STRICT)}
