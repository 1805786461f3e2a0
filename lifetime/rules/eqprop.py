"""Equilibrium propagation (Scellier and Bengio, Front Comput Neurosci 2017) on the layered net.

The hidden state s = (s_1 .. s_{L-1}) settles on the energy

    F(s) = 1/2 sum_k |s_k|^2 - sum_{k<L-1} s_{k+1} . (W_k s_k + b_k) + beta * loss(W_{L-1} s_{L-1} + b_{L-1}, y),

s_0 = x, s_k >= 0, by the fixed-point iteration s_k <- relu(W_{k-1} s_{k-1} + b_{k-1} +
W_k^T s_{k+1}), the top hidden layer feeling -beta W_{L-1}^T dloss/dlogits instead
of feedback from above: the discrete-time form of Ernoult et al. (NeurIPS 2019)
with the output read out of the last hidden layer, as Laborieux et al. (Front
Neurosci 2021) do for the cross-entropy loss. The logits are not a state: fed
back through W^T they make a loop of gain |W_{L-1}|^2, above 1 for a standard
init, and the free state then runs far from the network's own output. Without
feedback the free fixed point is the feedforward pass, so the network settles
to the born network's own activations; with one hidden layer it is exactly it.

The update of the dynamic layers is the contrast of dF/dW between the nudged and
the free state: grad W_k = -(s_{k+1}^b s_k^b^T - s_{k+1}^0 s_k^0^T) / beta, and of
the read-out, dloss/dW_{L-1} at the nudged state(s), as in Laborieux et al.'s code.
Both tend to the gradient of the loss at the free fixed point as beta -> 0 (the
paper's theorem; tested against autograd in float64). Nudging: ``positive``
(beta > 0, the free phase as reference), ``random`` (beta's sign drawn afresh for
each network and step, from the rule's `seed`, which cancels the first-order bias
on average), ``symmetric`` (phases at +beta and -beta, the contrast divided by
2 beta, Laborieux et al. 2021). Hidden states are bounded by `cap` times the
largest feedforward activation of their layer (Laborieux et al. bound them with
a hard sigmoid): the bound never binds on the feedforward pass, and it keeps the
energy bounded below when the feedback between hidden layers grows strong.

`adapt` takes networks with at most one hidden layer, where the free fixed point
is the feedforward pass, so the network that learns is the one that is scored
and exported. With two or more, the fixed point moves away from the feedforward
pass as soon as the hidden layers feed back (and with Kaiming-scale weights the
states run to their bounds: 64 -> 64 -> 64 -> 10 on scikit-learn's digits
trained to chance), so those are refused; `gradient` itself handles any depth.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from lifetime.rules.base import Net, Rule
from tasks.seeds import seeded

NUDGING = ("symmetric", "random", "positive")
STREAM_NUDGE = 12


def relax(
    net: Net,
    x: Tensor,
    states: list[Tensor],
    target: Tensor,
    beta: Tensor,
    steps: int,
    caps: list[Tensor],
) -> list[Tensor]:
    """`steps` sweeps from `states` (the hidden layers); beta [G] nudges the top one.

    A sweep sets each hidden layer in turn, bottom up, to the minimum of the
    energy given its neighbours (the layers do not talk within themselves), so
    every sweep lowers the energy; hidden states live in [0, caps[k]] ([G, 1, 1]),
    where the energy is bounded below, so the relaxation cannot run away.
    """
    states = list(states)
    top = net.n_layers - 2
    if top == 0 and not bool(beta.any()):
        steps = min(steps, 1)  # one hidden layer and no nudge: the first sweep is the fixed point
    for _ in range(steps):
        below = x
        for k in range(top + 1):
            u = torch.baddbmm(net.biases[k][:, None, :], below, net.weights[k].transpose(1, 2))
            if k < top:
                u = torch.baddbmm(u, states[k + 1], net.weights[k + 1])
            else:
                error = readout(net, states[k]).softmax(dim=-1) - target
                u = u - beta[:, None, None] * (error @ net.weights[k + 1])
            states[k] = torch.minimum(u.relu(), caps[k])
            below = states[k]
    return states


def readout(net: Net, top: Tensor) -> Tensor:
    """The logits [G, B, way] read out of the top hidden state."""
    return torch.baddbmm(net.biases[-1][:, None, :], top, net.weights[-1].transpose(1, 2))


def free_state(net: Net, x: Tensor, cap: float) -> tuple[list[Tensor], list[Tensor]]:
    """The feedforward hidden activations (the start of the free phase) and each one's
    bound: `cap` times its largest feedforward activation, per network."""
    acts = net.activations(x)[:-1]
    caps = [cap * a.detach().amax(dim=(1, 2), keepdim=True).clamp_min(1e-6) for a in acts]
    return acts, caps


class EqProp(Rule):
    name = "eqprop"
    # Chosen on validation-script glyph episodes (bench/results/fewshot.py tune), linear head.
    default_lr = 0.03
    default_steps = 30
    defaults: ClassVar[dict[str, Any]] = {
        "beta": 0.1,
        "free_steps": 20,
        "nudged_steps": 8,
        "nudging": "symmetric",
        "cap": 2.0,
        "seed": 0,
    }

    def _validate(self, settings: dict[str, Any]) -> dict[str, Any]:
        beta = settings["beta"]
        if isinstance(beta, bool) or not isinstance(beta, int | float) or not 0 < beta < 1e3:
            raise ValueError(f"rule 'eqprop': beta must be a number > 0, got {beta!r}")
        for key in ("free_steps", "nudged_steps"):
            v = settings[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"rule 'eqprop': {key} must be an integer >= 1, got {v!r}")
        if settings["nudging"] not in NUDGING:
            raise ValueError(
                f"rule 'eqprop': nudging must be one of {', '.join(NUDGING)}, "
                f"got {settings['nudging']!r}"
            )
        if isinstance(settings["seed"], bool) or not isinstance(settings["seed"], int):
            raise ValueError(f"rule 'eqprop': seed must be an integer, got {settings['seed']!r}")
        cap = settings["cap"]
        if isinstance(cap, bool) or not isinstance(cap, int | float) or not 1 <= cap < 1e6:
            raise ValueError(f"rule 'eqprop': cap must be a number >= 1, got {cap!r}")
        return {**settings, "beta": float(beta), "cap": float(cap)}

    def gradient(self, net: Net, x: Tensor, y: Tensor, way: int, step: int = 0):
        """The EP estimate of d(mean loss)/d(W_k, b_k) for every net: (dW list, db list)."""
        g, s = y.shape
        target = torch.nn.functional.one_hot(y, way).to(x.dtype)
        beta0 = self.settings["beta"]
        zero = torch.zeros(g, dtype=x.dtype, device=x.device)
        start, caps = free_state(net, x, self.settings["cap"])
        free = relax(net, x, start, target, zero, self.settings["free_steps"], caps)
        nudged_steps = self.settings["nudged_steps"]
        mode = self.settings["nudging"]
        if mode == "symmetric":
            beta = torch.full_like(zero, beta0)
            plus = relax(net, x, free, target, beta, nudged_steps, caps)
            minus = relax(net, x, free, target, -beta, nudged_steps, caps)
        else:
            beta = torch.full_like(zero, beta0)
            if mode == "random":
                gen = seeded(self.settings["seed"], STREAM_NUDGE, step)
                sign = torch.randint(0, 2, (g,), generator=gen) * 2 - 1
                beta = beta * sign.to(beta)
            plus = relax(net, x, free, target, beta, nudged_steps, caps)
            minus = free
            beta = beta / 2  # the contrast below divides by 2 * beta
        scale = -1.0 / (2 * beta[:, None, None] * s)
        dw, db = [], []
        below_p, below_m = x, x
        for k in range(net.n_layers - 1):
            dw.append(
                scale * (plus[k].transpose(1, 2) @ below_p - minus[k].transpose(1, 2) @ below_m)
            )
            db.append(scale[:, :, 0] * (plus[k] - minus[k]).sum(dim=1))
            below_p, below_m = plus[k], minus[k]
        # The read-out's own gradient, at the nudged state(s): both, averaged, when symmetric.
        tops = [below_p, below_m] if mode == "symmetric" else [below_p]
        w_out, b_out = 0, 0
        for top in tops:
            error = (readout(net, top).softmax(dim=-1) - target) / (s * len(tops))
            w_out = w_out + error.transpose(1, 2) @ top
            b_out = b_out + error.sum(dim=1)
        return [*dw, w_out], [*db, b_out]

    def check_layers(self, n_layers: int) -> None:
        if n_layers > 2:
            raise ValueError(
                f"rule 'eqprop' adapts networks with at most one hidden layer, got "
                f"{n_layers - 1}: deeper, its free fixed point is not the feedforward "
                "network that is scored and exported; use the linear or prototype head, "
                "or another rule (sgd, fa, hebbian)"
            )

    def _update(self, net: Net, x: Tensor, y: Tensor, way: int, step: int, state: Any) -> Net:
        dw, db = self.gradient(net, x, y, way, step)
        return net.stepped(dw, db, self.lr)
