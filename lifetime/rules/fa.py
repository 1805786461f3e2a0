"""Feedback alignment (Lillicrap, Cownden, Tweed and Akerman, Nat Commun 2016).

Errors travel back through fixed random matrices B_k in place of the forward
weights' transposes: delta_k = (delta_{k+1} B_{k+1}) * relu'(a_k), and every
layer then takes the local update delta_{k+1}^T h_k, as backprop does. The
forward weights come to align with the feedback, and learning follows.

Feedback modes (biotorch's names, Sanfiz and Akrout 2021): ``fa`` draws each
B_k once from N(0, 1/out_k) with the rule's `seed` (the same matrices for
every network and every call); ``weights`` uses the current forward weights,
which is exactly backprop (tested against `sgd`). The backward pass is
written out in batched tensor code, not as an autograd.Function.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from lifetime.rules.base import Net, Rule
from tasks.seeds import seeded

STREAM_FEEDBACK = 11
FEEDBACK = ("fa", "weights")


class FeedbackAlignment(Rule):
    name = "fa"
    # Chosen on validation-script glyph episodes (bench/results/fewshot.py tune), linear head.
    default_lr = 0.03
    default_steps = 30
    defaults: ClassVar[dict[str, Any]] = {"feedback": "fa", "seed": 0}

    def _validate(self, settings: dict[str, Any]) -> dict[str, Any]:
        if settings["feedback"] not in FEEDBACK:
            raise ValueError(
                f"rule 'fa': feedback must be one of {', '.join(FEEDBACK)}, "
                f"got {settings['feedback']!r}"
            )
        if isinstance(settings["seed"], bool) or not isinstance(settings["seed"], int):
            raise ValueError(f"rule 'fa': seed must be an integer, got {settings['seed']!r}")
        return settings

    def _start(self, net: Net, x: Tensor, y: Tensor, way: int) -> Any:
        if self.settings["feedback"] == "weights":
            return None
        w0 = net.weights[0]
        out = []
        for k, w in enumerate(net.weights):
            o, i = w.shape[1:]
            gen = seeded(self.settings["seed"], STREAM_FEEDBACK, k, o, i)
            b = torch.randn(o, i, generator=gen, dtype=torch.float64) / o**0.5
            out.append(b.to(device=w0.device, dtype=w0.dtype))
        return out

    def _update(self, net: Net, x: Tensor, y: Tensor, way: int, step: int, state: Any) -> Net:
        acts = net.activations(x)
        s = x.shape[1]
        # d(mean cross-entropy)/d(logits)
        delta = (acts[-1].softmax(dim=-1) - torch.nn.functional.one_hot(y, way).to(x.dtype)) / s
        inputs = [x, *acts[:-1]]
        dw: list[Tensor] = [torch.empty(0)] * net.n_layers
        db: list[Tensor] = [torch.empty(0)] * net.n_layers
        for k in range(net.n_layers - 1, -1, -1):
            dw[k] = delta.transpose(1, 2) @ inputs[k]
            db[k] = delta.sum(dim=1)
            if k:
                back = delta @ net.weights[k] if state is None else delta @ state[k]
                delta = back * (acts[k - 1] > 0)
        return net.stepped(dw, db, self.lr)
