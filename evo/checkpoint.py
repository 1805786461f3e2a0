"""Atomic checkpoints of a run: the searcher's state, the generation, the best so far.

A checkpoint holds tensors and plain values only (numbers, strings, lists,
dicts), written with `torch.save` and read with `torch.load(weights_only=True)`,
which builds nothing but those: a file planted in a run directory cannot run
code on `innate evolve --resume` or `innate report`. The searcher's state is
what its registry entry extracts (`Algorithm.engine_state`, evo/search/state.py);
a resume builds the searcher afresh from the run's config and puts the state
back. Randomness needs no saved state: every generation re-seeds its
generators from (seed, generation) (evo/search/engine.py).

A checkpoint is written to a temporary file in the run directory, flushed,
fsynced and renamed over ``checkpoint.pt``, so a run killed at any moment
leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import torch

from genome.files import write_atomic

CHECKPOINT = "checkpoint.pt"
KIND = "innate-checkpoint"
# 1: a pickle of the searcher (innate 0.1 before hardening), no longer read. 2: state only.
VERSION = 2


class CheckpointError(ValueError):
    """A checkpoint this version cannot read; the message says why and what to do."""


def save_checkpoint(
    run_dir: Path, algorithm: str, engine: dict[str, Any], state: dict[str, Any]
) -> Path:
    """Write the searcher's state `engine` and the driver's `state` to run_dir/checkpoint.pt.

    An OSError (a full disk, a directory made read-only) names the checkpoint; the
    previous checkpoint is then still whole, as the write is atomic.
    """
    payload = {
        "format": KIND,
        "version": VERSION,
        "algorithm": algorithm,
        "engine": engine,
        **state,
    }
    out = io.BytesIO()
    torch.save(payload, out)
    path = Path(run_dir) / CHECKPOINT
    try:
        write_atomic(path, out.getvalue())
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    return path


def _unreadable(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: not an innate checkpoint of version {VERSION} ({why}), so it was not loaded; "
        f"put back a good copy, or run again from generation 0 with: innate evolve --resume "
        f"{path.parent} --restart"
    )


def _why(path: Path, e: Exception) -> str:
    """Why torch.load refused `path`, in a few words."""
    if not zipfile.is_zipfile(path):
        return "not a whole torch file: cut short, or another kind of file"
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    # weights_only names the first thing it would not build ("Unsupported global: ...").
    named = [ln for ln in lines if ln.startswith("WeightsUnpickler error")]
    first = (named or lines or [type(e).__name__])[0]
    return f"holds more than tensors and plain values: {first.split('. ')[0][:160]}"


def read_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The whole payload of run_dir/checkpoint.pt, read without running anything in it."""
    path = Path(run_dir) / CHECKPOINT
    if path.is_dir():
        raise _unreadable(path, "a directory, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    if path.stat().st_size == 0:
        raise _unreadable(path, "empty: 0 bytes")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        # On random bytes the weights-only unpickler fails in many ways (KeyError,
        # IndexError...): any failure to load is an unreadable checkpoint.
        raise _unreadable(path, _why(path, e)) from None
    if not isinstance(payload, dict) or payload.get("format") not in (KIND, 1):
        raise CheckpointError(f"{path}: not an innate checkpoint")
    version = payload.get("version", payload["format"])
    if version != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {version} (a pickle of the searcher) is no longer "
            f"read, as loading it could run code; this version reads version {VERSION}. "
            "Restart the run, or finish it with the innate version that wrote it"
        )
    return payload


def load_checkpoint(run_dir: Path, algorithm: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The searcher's state and the driver's state from run_dir/checkpoint.pt."""
    payload = read_checkpoint(run_dir)
    if payload["algorithm"] != algorithm:
        raise CheckpointError(
            f"{Path(run_dir) / CHECKPOINT}: written by algorithm {payload['algorithm']!r}, "
            f"but the run's config says {algorithm!r}"
        )
    engine = payload.pop("engine")
    for key in ("format", "version", "algorithm"):
        payload.pop(key)
    return engine, payload


def read_state(run_dir: Path) -> dict[str, Any]:
    """The driver's state of a checkpoint (generation, best so far), for reports."""
    payload = read_checkpoint(run_dir)
    payload.pop("engine", None)
    return payload
