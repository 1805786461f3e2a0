"""Backprop: plain gradient descent on the support set's cross-entropy (Rumelhart et al., 1986).

The gradients of every network come from one autograd call on the sum of the
networks' mean losses: no network shares a parameter with another, so each
gets exactly its own gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lifetime.rules.base import Net, Rule, loss


class SGD(Rule):
    name = "sgd"
    # Chosen on validation-script glyph episodes (bench/results/fewshot.py tune), linear head.
    default_lr = 0.03
    default_steps = 30

    def _update(self, net: Net, x: Tensor, y: Tensor, way: int, step: int, state: Any) -> Net:
        with torch.enable_grad():
            params = [p.detach().requires_grad_() for p in (*net.weights, *net.biases)]
            n = net.n_layers
            live = Net(tuple(params[:n]), tuple(params[n:]))
            grads = torch.autograd.grad(loss(live(x), y).sum(), params)
        return net.stepped(list(grads[:n]), list(grads[n:]), self.lr)
