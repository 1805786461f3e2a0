"""Heads: what of a born network learns in an episode, and what reads out the classes.

Every head replaces the born output layer with a new one of `way` units on
the last hidden layer (the input sheet, for a body without hidden layers):

- ``prototype``: no learning; each class is the mean of its support features
  and a query goes to the nearest mean (Prototypical Networks, Snell et al.,
  NeurIPS 2017), written as the linear head w_c = 2 mu_c, b_c = -|mu_c|^2;
- ``linear``: a new zero-initialised head learned by the rule, the body frozen
  (a linear probe);
- ``all``: the rule adapts every weight of the body and a new zero head.

`adapt` runs a whole population [P] on a whole batch of episodes [E] at once:
the adapted networks are G = P * E, network p * E + e being individual p after
episode e. With a frozen body the features are computed once per (individual,
episode) with one GEMM per layer, and only the heads are copied.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from genome.layout import Layout, Sheet
from genome.phenotype import Phenotype
from lifetime.rules.base import Net, Rule

HEADS = ("prototype", "linear", "all")


def features(phenotype: Phenotype, x: Tensor) -> Tensor:
    """Last hidden layer [P, E, B, F] of every individual on images x [E, B, H, W]."""
    e, b = x.shape[:2]
    flat = x.reshape(e * b, -1).to(phenotype.dtype)
    hidden = phenotype.hidden(flat)
    out = hidden[-1] if hidden else flat.expand(phenotype.population_size, *flat.shape)
    return out.reshape(phenotype.population_size, e, b, -1)


def _groups(t: Tensor, p: int) -> Tensor:
    """Per-episode tensor [E, ...] repeated for P individuals: [P * E, ...]."""
    return t.expand(p, *t.shape).reshape(p * t.shape[0], *t.shape[1:])


@dataclass(frozen=True)
class Adapted:
    """A population after a batch of episodes: the born bodies and the adapted layers.

    `net` holds G = P * E networks: the heads alone (``prototype``, ``linear``;
    the body stays `body`'s), or every layer (``all``).
    """

    body: Phenotype
    net: Net
    head: str
    episodes: int
    way: int

    def logits(self, x: Tensor) -> Tensor:
        """Logits [P, E, B, way] of every adapted network on its episode's images x [E, B, H, W]."""
        p, e = self.body.population_size, self.episodes
        if x.shape[0] != e:
            raise ValueError(f"images must be [{e}, B, H, W] (one set per episode), got {x.shape}")
        if self.head == "all":
            inputs = _groups(x.reshape(e, x.shape[1], -1).to(self.body.dtype), p)
        else:
            inputs = features(self.body, x).reshape(p * e, x.shape[1], -1)
        return self.net(inputs).reshape(p, e, x.shape[1], self.way)

    def phenotype(self) -> Phenotype:
        """The P * E adapted networks as one Phenotype (individual p * E + e), `way` outputs."""
        p, e = self.body.population_size, self.episodes
        if self.head == "all":
            weights, biases = list(self.net.weights), list(self.net.biases)
        else:
            weights = [_repeat(w, e) for w in self.body.weights[:-1]] + [self.net.weights[0]]
            biases = [_repeat(b, e) for b in self.body.biases[:-1]] + [self.net.biases[0]]
        assert weights[0].shape[0] == p * e
        sheets = self.body.layout.sheets
        layout = Layout((*sheets[:-1], Sheet(1, self.way, sheets[-1].z)))
        return Phenotype(weights, biases, layout)


def _repeat(t: Tensor, e: int) -> Tensor:
    """Individual tensor [P, ...] repeated for E episodes: [P * E, ...], p-major."""
    return t[:, None].expand(t.shape[0], e, *t.shape[1:]).reshape(-1, *t.shape[1:])


def prototypes(feats: Tensor, y: Tensor, way: int) -> tuple[Tensor, Tensor]:
    """The nearest-class-mean head (w [G, way, F], b [G, way]) for features [G, S, F], labels [G, S]."""
    onehot = torch.nn.functional.one_hot(y, way).to(feats.dtype)  # [G, S, way]
    counts = onehot.sum(dim=1).clamp_min(1)  # [G, way]
    means = onehot.transpose(1, 2) @ feats / counts[:, :, None]
    # argmax of 2 mu.h - |mu|^2 is the argmin of |h - mu|^2.
    return 2 * means, -(means * means).sum(dim=-1)


def adapt(
    phenotype: Phenotype,
    support_x: Tensor,
    support_y: Tensor,
    rule: Rule | None,
    head: str,
    way: int,
) -> Adapted:
    """Every individual of `phenotype` adapted on every episode's support set.

    support_x [E, S, H, W], support_y [E, S] in [0, way). `rule` may be None
    for the ``prototype`` head, which learns nothing.
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; valid heads: {', '.join(HEADS)}")
    if head != "prototype" and rule is None:
        raise ValueError(f"head {head!r} needs a learning rule")
    p, (e, s) = phenotype.population_size, support_y.shape
    y = _groups(support_y.to(phenotype.device), p)
    dtype, device = phenotype.dtype, phenotype.device
    if head == "all":
        x = _groups(support_x.reshape(e, s, -1).to(device, dtype), p)
        f = phenotype.weights[-1].shape[2]
        weights = [_repeat(w, e) for w in phenotype.weights[:-1]]
        biases = [_repeat(b, e) for b in phenotype.biases[:-1]]
        net = Net(
            (*weights, torch.zeros(p * e, way, f, dtype=dtype, device=device)),
            (*biases, torch.zeros(p * e, way, dtype=dtype, device=device)),
        )
        return Adapted(phenotype, rule.adapt(net, x, y, way), head, e, way)
    x = features(phenotype, support_x.to(device)).reshape(p * e, s, -1)
    if head == "prototype":
        w, b = prototypes(x, y, way)
        return Adapted(phenotype, Net((w,), (b,)), head, e, way)
    f = x.shape[-1]
    net = Net(
        (torch.zeros(p * e, way, f, dtype=dtype, device=device),),
        (torch.zeros(p * e, way, dtype=dtype, device=device),),
    )
    return Adapted(phenotype, rule.adapt(net, x, y, way), head, e, way)
