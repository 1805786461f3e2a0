"""A searcher's state as tensors and plain values, and back: what a checkpoint holds.

Checkpoints must not be pickles of objects (loading one can run any code), so
each registry entry (evo/search/base.py) names what of its searcher changes as
it steps, and these helpers copy that out and back into a freshly built
searcher of the same config: the population and its evaluations, the search
distribution's parameters, the optimiser's state, and the entry's own
attributes (CMA-ES's evolution paths and covariance, the step count...).
Everything else (the settings, the operators, the problem) is rebuilt from the
run's config, so restoring into a fresh searcher gives the very same one.
"""

from __future__ import annotations

from typing import Any

import torch
from evotorch import SolutionBatch

# What a checkpoint may hold besides tensors (the types torch.load(weights_only=True) reads).
PLAIN = (bool, int, float, str, type(None))


def plain(value: Any, where: str) -> Any:
    """`value` as a tensor (a detached copy on the CPU) or a plain value; TypeError otherwise."""
    if isinstance(value, torch.Tensor):
        return value.as_subclass(torch.Tensor).detach().cpu().clone()
    if isinstance(value, PLAIN):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a NumPy scalar
        return value.item()
    if isinstance(value, dict):
        return {plain(k, where): plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise TypeError(f"{where}: a {type(value).__name__} cannot go into a checkpoint")


def _like(value: Any, current: Any) -> Any:
    """A saved value on the device and dtype of the attribute it replaces."""
    if isinstance(value, torch.Tensor) and isinstance(current, torch.Tensor):
        return value.to(device=current.device, dtype=current.dtype)
    return value


def optimizer_state(optimizer: Any) -> dict[str, Any] | None:
    """The state of EvoTorch's ClipUp (its velocity) or of a wrapped torch optimiser."""
    if optimizer is None:
        return None
    if hasattr(optimizer, "_optim"):  # evotorch.optimizers.TorchOptimizer (Adam, SGD)
        return {"torch": plain(optimizer._optim.state_dict(), "optimizer")}
    if hasattr(optimizer, "_velocity"):  # evotorch.optimizers.ClipUp
        return {"velocity": plain(optimizer._velocity, "optimizer.velocity")}
    raise TypeError(f"optimizer {type(optimizer).__name__} has no known state to checkpoint")


def restore_optimizer(optimizer: Any, state: dict[str, Any] | None) -> None:
    if state is None:
        return
    if "torch" in state:
        optimizer._optim.load_state_dict(state["torch"])
    else:
        optimizer._velocity = _like(state["velocity"], optimizer._velocity)


def searcher_state(searcher: Any, attrs: tuple[str, ...]) -> dict[str, Any]:
    """The state of an EvoTorch searcher: `attrs`, population, distribution, optimiser."""
    out: dict[str, Any] = {"attrs": {a: plain(getattr(searcher, a), a) for a in attrs}}
    pop = searcher._population
    if pop is not None:
        out["values"] = plain(pop.values, "population.values")
        out["evals"] = plain(pop.evals, "population.evals")
    dist = getattr(searcher, "_distribution", None)
    if dist is not None:
        out["distribution"] = plain(dist.parameters, "distribution")
    if getattr(searcher, "_optimizer", None) is not None:
        out["optimizer"] = optimizer_state(searcher._optimizer)
    return out


def restore_searcher(searcher: Any, attrs: tuple[str, ...], state: dict[str, Any]) -> None:
    """Put `state` (from `searcher_state`) into a searcher freshly built from the same config."""
    for a in attrs:
        setattr(searcher, a, _like(state["attrs"][a], getattr(searcher, a)))
    problem = searcher.problem
    if "values" in state:
        pop = SolutionBatch(problem, popsize=state["values"].shape[0], empty=True)
        pop.set_values(state["values"].to(device=pop.device, dtype=problem.dtype))
        pop.set_evals(state["evals"].to(pop.device))
        searcher._population = pop
    if "distribution" in state:
        dist = searcher._distribution
        params = {k: _like(v, dist.parameters.get(k)) for k, v in state["distribution"].items()}
        searcher._distribution = dist.modified_copy(**params)
    if "optimizer" in state:
        restore_optimizer(searcher._optimizer, state["optimizer"])
    searcher.clear_status()
