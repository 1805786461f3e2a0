"""The learning-rule contract: a batch of networks adapts on its support sets.

`Net` holds G layered networks (weights [G, out, in], biases [G, out]; ReLU
between layers, linear logits at the end): one per (individual, episode)
pair, so that a whole population meets a whole batch of episodes in every
tensor operation. `Rule.adapt(net, x [G, S, in], y [G, S], way)` is the public
method: it checks its inputs and runs `steps` full-batch updates, each a call
of the subclass's private hook `_update`. A rule never loops over networks.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Net:
    """G layered networks: weights [G, out, in] and biases [G, out] per layer."""

    weights: tuple[Tensor, ...]
    biases: tuple[Tensor, ...]

    @property
    def groups(self) -> int:
        return int(self.weights[0].shape[0])

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    def activations(self, x: Tensor) -> list[Tensor]:
        """Every layer's output [G, B, out] for inputs x [G, B, in]: ReLU, ..., logits."""
        out, h = [], x
        last = self.n_layers - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            a = torch.baddbmm(b[:, None, :], h, w.transpose(1, 2))
            h = a if k == last else a.relu()
            out.append(h)
        return out

    def __call__(self, x: Tensor) -> Tensor:
        return self.activations(x)[-1]

    def stepped(self, dw: list[Tensor], db: list[Tensor], lr: float) -> Net:
        """The nets after w <- w - lr * dw, b <- b - lr * db."""
        return Net(
            tuple(w - lr * d for w, d in zip(self.weights, dw, strict=True)),
            tuple(b - lr * d for b, d in zip(self.biases, db, strict=True)),
        )


def loss(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy of each network [G] on its own batch: logits [G, S, way], y [G, S]."""
    return F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(dim=1)


class Rule(ABC):
    """A learning rule. Subclasses set `name`, `default_lr`, `default_steps`, `defaults`."""

    name: ClassVar[str]
    default_lr: ClassVar[float]
    default_steps: ClassVar[int]
    # Rule-specific settings with their defaults.
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, *, lr: float | None = None, steps: int | None = None, **settings: Any):
        unknown = sorted(set(settings) - set(self.defaults))
        if unknown:
            valid = ", ".join(["lr", "steps", *self.defaults]) or "none"
            raise ValueError(f"rule {self.name!r}: unknown setting(s) {unknown}; valid: {valid}")
        self.lr = float(self.default_lr if lr is None else lr)
        self.steps = self.default_steps if steps is None else steps
        if not (math.isfinite(self.lr) and self.lr >= 0):
            raise ValueError(f"rule {self.name!r}: lr must be a finite number >= 0, got {lr}")
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or self.steps < 0:
            raise ValueError(f"rule {self.name!r}: steps must be an integer >= 0, got {steps}")
        self.steps = int(self.steps)
        self.settings = self._validate({**self.defaults, **settings})

    def _validate(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Check rule-specific settings; raise ValueError naming the fault."""
        return settings

    def updates_in_input_span(self, n_layers: int) -> bool:
        """Whether every change to the first layer is a combination of the support inputs,
        dW_0 = sum_s c_s x_s^T, so that a net can adapt on the inputs' coordinates in their span.

        True of any rule whose first-layer update is (something) times the input, as
        backprop's, feedback alignment's and equilibrium propagation's are.
        """
        return True

    def check_layers(self, n_layers: int) -> None:
        """Raise ValueError, naming what is valid, if the rule cannot adapt nets this deep."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"rule": self.name, "lr": self.lr, "steps": self.steps, **self.settings}

    def adapt(self, net: Net, x: Tensor, y: Tensor, way: int) -> Net:
        """The nets after `steps` updates on their support sets x [G, S, in], y [G, S] in [0, way)."""
        g, s = y.shape
        if x.ndim != 3 or tuple(x.shape[:2]) != (g, s) or net.groups != g:
            raise ValueError(
                f"support inputs must be [G, S, in] with labels [G, S] for G = {net.groups} "
                f"networks, got {list(x.shape)} and {list(y.shape)}"
            )
        if int(y.min()) < 0 or int(y.max()) >= way:
            raise ValueError(f"labels must be in [0, {way}), got {y.min()}..{y.max()}")
        if net.weights[-1].shape[1] != way:
            raise ValueError(f"the nets have {net.weights[-1].shape[1]} outputs for {way} classes")
        self.check_layers(net.n_layers)
        x = x.to(net.weights[0].dtype)
        state = self._start(net, x, y, way)
        for step in range(self.steps):
            net = self._update(net, x, y, way, step, state)
        return net

    def _start(self, net: Net, x: Tensor, y: Tensor, way: int) -> Any:
        """What the rule keeps over the steps of one adaptation (birth values, feedback)."""
        return None

    @abstractmethod
    def _update(self, net: Net, x: Tensor, y: Tensor, way: int, step: int, state: Any) -> Net:
        """One full-batch update of every net."""
