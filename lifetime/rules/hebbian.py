"""The ABCD Hebbian rule of Najarro and Risi (NeurIPS 2020, "Meta-learning through
Hebbian plasticity in random networks"), supervised by clamping the output.

Each weight from a presynaptic unit with activity pre to a postsynaptic unit
with activity post changes by

    dw = lr * (A * pre * post + B * pre + C * post + D),

averaged over the support set, with one (A, B, C, D) per layer (Najarro and
Risi evolve one per synapse; per layer is what a compressed genome can carry,
and later it lives in the genome and is evolved). By default the new head
has A = 1 and the body's layers all zero, so the body stays as it was born. During learning the output
is clamped to the teacher: the output layer's post is the one-hot label, so
that with A = 1 a new head comes to hold each class's summed features.
Biases do not change (the networks of Najarro and Risi have none).

After every update each layer is normalised as in their code, by its largest
absolute weight; here scaled back to the largest absolute weight it had at the
start of the adaptation (their weights start in [-1, 1], so the two agree
there), which keeps the born network's scale. A layer that starts at zero (a
new head) is scaled to a largest weight of 1.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from lifetime.rules.base import Net, Rule


class Hebbian(Rule):
    name = "hebbian"
    # Chosen on validation-script glyph episodes (bench/results/fewshot.py tune), linear head.
    default_lr = 0.03
    default_steps = 10
    # (A, B, C, D) of the new head, and of the body's layers: one row for all, or
    # one per hidden layer. The body stays as it was born unless told otherwise.
    defaults: ClassVar[dict[str, Any]] = {
        "head": [1.0, 0.0, 0.0, 0.0],
        "hidden": [0.0, 0.0, 0.0, 0.0],
    }

    def _validate(self, settings: dict[str, Any]) -> dict[str, Any]:
        rows = {}
        for key in ("head", "hidden"):
            c = torch.as_tensor(settings[key], dtype=torch.float64)
            c = c[None] if c.ndim == 1 else c
            if c.ndim != 2 or c.shape[1] != 4 or len(c) < 1 or not torch.isfinite(c).all():
                raise ValueError(
                    f"rule 'hebbian': {key} must be finite [A, B, C, D]"
                    + (" or a list of one per hidden layer" if key == "hidden" else "")
                    + f", got {settings[key]!r}"
                )
            if key == "head" and len(c) != 1:
                raise ValueError(f"rule 'hebbian': head must be one [A, B, C, D], got {c.tolist()}")
            rows[key] = c
        self._rows = rows
        return settings

    def coefficients(self, n_layers: int) -> Tensor:
        """[n_layers, 4]: the (A, B, C, D) of each adapted layer, the head last."""
        hidden = self._rows["hidden"]
        if len(hidden) == 1:
            hidden = hidden.expand(n_layers - 1, 4)
        elif len(hidden) != n_layers - 1:
            raise ValueError(
                f"rule 'hebbian': {len(hidden)} rows of hidden coefficients for "
                f"{n_layers - 1} adapted hidden layers; give one row, or one per layer"
            )
        return torch.cat([hidden, self._rows["head"]])

    def updates_in_input_span(self, n_layers: int) -> bool:
        # B * pre is in the span, but C * post and D are not, and the normalisation
        # reads the whole matrix: only a first layer that does not change qualifies.
        return n_layers > 1 and not bool(self.coefficients(n_layers)[0].any())

    def _start(self, net: Net, x: Tensor, y: Tensor, way: int) -> Any:
        dtype = net.weights[0].dtype
        peaks = []
        for w in net.weights:
            m = w.abs().amax(dim=(1, 2), keepdim=True)
            peaks.append(torch.where(m > 0, m, torch.ones_like(m)))
        return self.coefficients(net.n_layers).to(net.weights[0].device, dtype), peaks

    def _update(self, net: Net, x: Tensor, y: Tensor, way: int, step: int, state: Any) -> Net:
        coef, peaks = state
        acts = net.activations(x)
        s = x.shape[1]
        posts = [*acts[:-1], torch.nn.functional.one_hot(y, way).to(x.dtype)]
        pres = [x, *acts[:-1]]
        weights = []
        for k, (w, pre, post) in enumerate(zip(net.weights, pres, posts, strict=True)):
            a, b, c, d = coef[k]
            dw = (
                a * (post.transpose(1, 2) @ pre) / s
                + b * pre.mean(dim=1)[:, None, :]
                + c * post.mean(dim=1)[:, :, None]
                + d
            )
            w = w + self.lr * dw
            m = w.abs().amax(dim=(1, 2), keepdim=True)
            weights.append(torch.where(m > 0, w * (peaks[k] / m.clamp_min(1e-30)), w))
        return Net(tuple(weights), net.biases)
