"""Atomic checkpoints of a run: the engine's full state, the generation, the best so far.

A checkpoint is written to a temporary file in the run directory, flushed,
fsynced and renamed over ``checkpoint.pt``, so a run killed at any moment
leaves either the previous checkpoint or the new one, never half of one.

The engine (an EvoTorch searcher with its distribution, optimizer and
population, or the gradient optimiser's genome and Adam state) is pickled
whole, except for the problem it points to: that is stored as a reference
(`persistent_id`) and replaced by the resumed run's freshly built problem,
so Ray actor handles and data sets never enter the file. Randomness needs no
saved state beyond this: every generation re-seeds its generators from
(seed, generation) (evo/search/engine.py).

Classes are pickled by their module path. Engines that have moved since a
checkpoint was written are found at their new home through `MOVED`, so runs
checkpointed before a move still resume.

Checkpoints are pickles: load only those your own runs wrote. Genome files,
which are meant to be shared, are safetensors (genome/files.py).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from genome.files import write_atomic

CHECKPOINT = "checkpoint.pt"
FORMAT = 1
_PROBLEM = "problem"

# (old module, class) -> new module, for classes that checkpoints name and that moved.
MOVED = {
    ("evo.algorithms", "EvoEngine"): "evo.search.engine",
    ("evo.algorithms", "NSGA2"): "evo.search.nsga2",
    ("evo.gradient", "GradientEngine"): "evo.search.gradient",
}


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, problem: Any):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._problem = problem

    def persistent_id(self, obj: Any) -> str | None:
        return _PROBLEM if obj is self._problem else None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, problem: Any):
        super().__init__(file)
        self._problem = problem

    def persistent_load(self, pid: Any) -> Any:
        if pid != _PROBLEM:
            raise pickle.UnpicklingError(f"unknown reference {pid!r} in checkpoint")
        return self._problem

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(MOVED.get((module, name), module), name)


def save_checkpoint(run_dir: Path, engine: Any, problem: Any, state: dict[str, Any]) -> Path:
    """Write the engine (minus `problem`) and the driver's `state` to run_dir/checkpoint.pt."""
    buf = io.BytesIO()
    _Pickler(buf, problem).dump(engine)
    payload = {"format": FORMAT, "engine": buf.getvalue(), **state}
    out = io.BytesIO()
    torch.save(payload, out)
    path = Path(run_dir) / CHECKPOINT
    write_atomic(path, out.getvalue())
    return path


def load_checkpoint(run_dir: Path, problem: Any) -> tuple[Any, dict[str, Any]]:
    """The engine, bound to `problem`, and the driver's state from run_dir/checkpoint.pt."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not an innate checkpoint of format {FORMAT}")
    engine = _Unpickler(io.BytesIO(payload.pop("engine")), problem).load()
    payload.pop("format")
    return engine, payload


def read_state(run_dir: Path) -> dict[str, Any]:
    """The driver's state of a checkpoint without rebuilding its engine (for reports)."""
    payload = torch.load(Path(run_dir) / CHECKPOINT, map_location="cpu", weights_only=False)
    payload.pop("engine", None)
    return payload
