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

With ``all``, the first layer is the costly one (its fan-in is the image), and
an episode's S support images span at most S of its input directions. For
rules whose first-layer change is a combination of the inputs
(`Rule.updates_in_input_span`: backprop, feedback alignment, equilibrium
propagation), the networks adapt on the inputs' coordinates in an orthonormal
basis Q [in, S] of their span: W_0 Q in place of W_0, x Q in place of x. The
part of W_0 outside the span neither changes nor acts on a support image, so
this is the same adaptation, at S instead of `in` columns; the adapted layer is
W_0 + (W_0' - W_0 Q) Q^T, and queries use it as W_0 x + (W_0' - W_0 Q) Q^T x.
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
    # ``all`` in the inputs' span: the basis Q [E, in, r] and the change of W_0 Q [G, out, r].
    basis: Tensor | None = None
    delta: Tensor | None = None

    def logits(self, x: Tensor) -> Tensor:
        """Logits [P, E, B, way] of every adapted network on its episode's images x [E, B, H, W]."""
        p, e = self.body.population_size, self.episodes
        if x.shape[0] != e:
            raise ValueError(f"images must be [{e}, B, H, W] (one set per episode), got {x.shape}")
        if self.basis is not None:
            flat = x.reshape(e, x.shape[1], -1).to(self.body.dtype)
            born = _first_layer(self.body, flat)  # [G, B, out], without bias
            change = torch.bmm(_groups(flat @ self.basis, p), self.delta.transpose(1, 2))
            h = born + change + self.net.biases[0][:, None, :]
            rest = Net(self.net.weights[1:], self.net.biases[1:])
            return rest(h.relu()).reshape(p, e, x.shape[1], self.way)
        if self.head == "all":
            inputs = _groups(x.reshape(e, x.shape[1], -1).to(self.body.dtype), p)
        else:
            inputs = features(self.body, x).reshape(p * e, x.shape[1], -1)
        return self.net(inputs).reshape(p, e, x.shape[1], self.way)

    def phenotype(self) -> Phenotype:
        """The P * E adapted networks as one Phenotype (individual p * E + e), `way` outputs."""
        p, e = self.body.population_size, self.episodes
        if self.basis is not None:
            first = _repeat(self.body.weights[0], e) + self.delta @ _groups(
                self.basis.transpose(1, 2), p
            )
            weights = [first, *self.net.weights[1:]]
            biases = list(self.net.biases)
        elif self.head == "all":
            weights, biases = list(self.net.weights), list(self.net.biases)
        else:
            weights = [_repeat(w, e) for w in self.body.weights[:-1]] + [self.net.weights[0]]
            biases = [_repeat(b, e) for b in self.body.biases[:-1]] + [self.net.biases[0]]
        assert weights[0].shape[0] == p * e
        sheets = self.body.layout.sheets
        layout = Layout((*sheets[:-1], Sheet(1, self.way, sheets[-1].z)))
        return Phenotype(weights, biases, layout)


def _first_layer(body: Phenotype, x: Tensor) -> Tensor:
    """x W_0^T [P * E, B, out] for each individual on its episode's inputs x [E, B, in]:
    one GEMM for the whole population, no bias."""
    p, (e, b, n) = body.population_size, x.shape
    w = body.weights[0]
    out = x.reshape(e * b, n) @ w.reshape(p * w.shape[1], n).T  # [E*B, P*out]
    return out.view(e, b, p, -1).permute(2, 0, 1, 3).reshape(p * e, b, -1)


def _repeat(t: Tensor, e: int) -> Tensor:
    """Individual tensor [P, ...] repeated for E episodes: [P * E, ...], p-major.

    With one episode these are views of the phenotype's own tensors, which the
    problem keeps to score a genome again (evo/problem.py): rules update copies,
    never these in place.
    """
    return t[:, None].expand(t.shape[0], e, *t.shape[1:]).reshape(-1, *t.shape[1:])


def prototypes(feats: Tensor, y: Tensor, way: int) -> tuple[Tensor, Tensor]:
    """The nearest-class-mean head (w [G, way, F], b [G, way]) for features [G, S, F], labels [G, S]."""
    onehot = torch.nn.functional.one_hot(y, way).to(feats.dtype)  # [G, S, way]
    counts = onehot.sum(dim=1).clamp_min(1)  # [G, way]
    means = onehot.transpose(1, 2) @ feats / counts[:, :, None]
    # argmax of 2 mu.h - |mu|^2 is the argmin of |h - mu|^2.
    return 2 * means, -(means * means).sum(dim=-1)


def _adapt_all(phenotype: Phenotype, x: Tensor, y: Tensor, rule: Rule, way: int) -> Adapted:
    """Every weight adapted, plus a new zero head: x [E, S, in], y [P * E, S]."""
    p, (e, s, n) = phenotype.population_size, x.shape
    layers = phenotype.layout.n_layers
    f = phenotype.weights[-1].shape[2]
    kw = {"dtype": x.dtype, "device": x.device}
    head_w, head_b = torch.zeros(p * e, way, f, **kw), torch.zeros(p * e, way, **kw)
    rest_w = [_repeat(w, e) for w in phenotype.weights[1:-1]]
    biases = (*[_repeat(b, e) for b in phenotype.biases[:-1]], head_b)
    if layers < 2 or s >= n or not rule.updates_in_input_span(layers):
        weights = (*[_repeat(w, e) for w in phenotype.weights[:-1]], head_w)
        net = rule.adapt(Net(weights, biases), _groups(x, p), y, way)
        return Adapted(phenotype, net, "all", e, way)
    basis = torch.linalg.qr(x.transpose(1, 2)).Q  # [E, in, S]
    w0 = phenotype.weights[0]  # [P, out, in]
    born = (w0.reshape(-1, n) @ basis.transpose(0, 1).reshape(n, e * s)).view(p, -1, e, s)
    born = born.permute(0, 2, 1, 3).reshape(p * e, -1, s)  # W_0 Q for every (p, e)
    start = Net((born, *rest_w, head_w), biases)
    net = rule.adapt(start, _groups(x @ basis, p), y, way)
    return Adapted(phenotype, net, "all", e, way, basis=basis, delta=net.weights[0] - born)


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
        return _adapt_all(phenotype, support_x.reshape(e, s, -1).to(device, dtype), y, rule, way)
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
