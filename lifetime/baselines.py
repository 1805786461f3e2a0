"""Baselines for the few-shot protocol, on the same episodes as the genome they are set against.

- `pixel_prototype`: nearest class mean in pixel space, no network at all;
- `kaiming_bodies`: the same body plan with the standard random init of He et
  al. (ICCV 2015): weights N(0, 2 / fan_in), biases zero;
- `random_genomes`: random genomes of the same decoder, decoded (what the
  genomic bottleneck gives before any evolution);
- `pretrained_body`: the same body trained directly with backprop (Adam) to
  classify all the background classes, its output layer then set aside: the
  "pretrained classifier" baseline of Matching Networks (Vinyals et al. 2016).
"""

from __future__ import annotations

import torch
from torch import Tensor

from genome.decoders.base import Decoder
from genome.layout import Layout, Sheet
from genome.phenotype import Phenotype
from lifetime.heads import prototypes
from lifetime.rules.base import Net, loss
from tasks.episodes import ClassSource, Episodes

STREAM_PRETRAIN = 13


def pixel_prototype(episodes: Episodes) -> Tensor:
    """Query accuracy [E] of the nearest class mean of the support images' pixels."""
    e, s = episodes.support_y.shape
    x = episodes.support_x.reshape(e, s, -1).double()
    w, b = prototypes(x, episodes.support_y, episodes.way)
    q = episodes.query_x.reshape(e, episodes.query_x.shape[1], -1).double()
    logits = torch.baddbmm(b[:, None, :], q, w.transpose(1, 2))
    return (logits.argmax(dim=-1) == episodes.query_y).double().mean(dim=-1)


def kaiming_bodies(
    layout: Layout,
    n: int,
    generator: torch.Generator,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Phenotype:
    """`n` bodies of `layout`, weights N(0, 2 / fan_in), biases zero."""
    weights, biases = [], []
    for o, i in layout.layer_shapes():
        w = torch.randn(n, o, i, generator=generator, dtype=torch.float64) * (2.0 / i) ** 0.5
        weights.append(w.to(device, dtype))
        biases.append(torch.zeros(n, o, device=device, dtype=dtype))
    return Phenotype(weights, biases, layout)


def random_genomes(decoder: Decoder, n: int, generator: torch.Generator) -> Phenotype:
    """`n` random genomes of `decoder` (its own initial distribution), decoded."""
    return decoder.decode(decoder.init(n, generator))


def pretrained_body(
    layout: Layout,
    source: ClassSource,
    *,
    steps: int = 2000,
    classes_per_batch: int = 32,
    per_class: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> Phenotype:
    """A body of `layout` trained with Adam on every class of `source`; output: its classes.

    The body starts from `kaiming_bodies`; each step draws `classes_per_batch`
    classes and `per_class` images of each, from generators seeded by (seed, step).
    """
    from tasks.seeds import seeded

    n_classes = source.n_classes
    sheets = layout.sheets
    trained = Layout((*sheets[:-1], Sheet(1, n_classes, sheets[-1].z)))
    start = kaiming_bodies(trained, 1, seeded(seed, STREAM_PRETRAIN), device, torch.float32)
    params = [p.clone().requires_grad_() for p in (*start.weights, *start.biases)]
    n = len(start.weights)
    opt = torch.optim.Adam(params, lr=lr)
    batch = min(classes_per_batch, n_classes)
    for step in range(steps):
        gen = seeded(seed, STREAM_PRETRAIN, step + 1)
        classes = torch.randperm(n_classes, generator=gen)[:batch]
        x = source.sample(classes, per_class, gen).reshape(1, batch * per_class, -1).to(device)
        y = classes.to(device).repeat_interleave(per_class)[None]
        with torch.enable_grad():
            opt.zero_grad()
            loss(Net(tuple(params[:n]), tuple(params[n:]))(x), y).sum().backward()
            opt.step()
    return Phenotype([p.detach() for p in params[:n]], [p.detach() for p in params[n:]], trained)
