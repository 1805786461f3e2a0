"""The few-shot protocol: query accuracy after adapting on each episode's support set.

`accuracy` scores a whole population on a batch of episodes, [P, E], in
memory-bounded chunks of episodes (one `heads.adapt` call per chunk; no loop
over individuals or episodes inside it). The summary is the one of Vinyals et
al. (2016) and Snell et al. (2017): the mean over episodes with a 95% interval,
1.96 standard deviations (ddof = 1) over the square root of the number of
episodes. Methods are compared on the same episodes, so their difference is
taken per episode (`paired`), which cancels the variation between episodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from genome.phenotype import Phenotype
from lifetime.heads import adapt
from lifetime.rules.base import Rule
from tasks.episodes import Episodes

# Bytes of working memory one chunk of episodes may use.
CHUNK_MEMORY = 256 * 2**20
DEFAULT_EPISODES = 600


@dataclass(frozen=True)
class Interval:
    """A mean with the half-width of its 95% interval, over n values."""

    mean: float
    half_width: float
    n: int

    def __str__(self) -> str:
        return f"{100 * self.mean:.2f} ± {100 * self.half_width:.2f}"

    def to_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "ci95": self.half_width, "n": self.n}


def interval(values: Tensor) -> Interval:
    """Mean and 1.96 * std (ddof 1) / sqrt(n) of values [n]; 0 width for a single value."""
    v = values.detach().double().flatten()
    n = v.numel()
    if n == 0:
        raise ValueError("an interval needs at least one value")
    half = 1.96 * float(v.std(unbiased=True)) / math.sqrt(n) if n > 1 else 0.0
    return Interval(float(v.mean()), half, n)


def paired(a: Tensor, b: Tensor) -> Interval:
    """The difference a - b, episode by episode, with its 95% interval (a, b: [E])."""
    if a.shape != b.shape:
        raise ValueError(f"paired values must match episode for episode: {a.shape} vs {b.shape}")
    return interval(a.double() - b.double())


def chunk_size(phenotype: Phenotype, episodes: Episodes, head: str) -> int:
    """Episodes per chunk so that the adapted copies and activations stay within CHUNK_MEMORY."""
    p = phenotype.population_size
    width = max(phenotype.layout.sizes)
    images = episodes.support_x.shape[1] + episodes.query_x.shape[1]
    per = images * width * 4  # activations, a few layers alive at once
    if head == "all":
        per += 4 * sum(o * i + o for o, i in phenotype.layout.layer_shapes())
    per = per * phenotype.weights[0].element_size() * p
    return max(1, min(len(episodes), CHUNK_MEMORY // max(per, 1)))


def scores(
    phenotype: Phenotype,
    episodes: Episodes,
    rule: Rule | None,
    head: str,
    *,
    progress: Callable[[int], None] | None = None,
) -> tuple[Tensor, Tensor]:
    """Query accuracy and mean query cross-entropy, each [P, E], of every individual after
    adapting on every episode."""
    hits, losses = [], []
    step = chunk_size(phenotype, episodes, head)
    for start in range(0, len(episodes), step):
        chunk = episodes.select(slice(start, start + step)).to(phenotype.device)
        with torch.no_grad():  # rules that need autograd turn it on for themselves
            adapted = adapt(phenotype, chunk.support_x, chunk.support_y, rule, head, episodes.way)
            logits = adapted.logits(chunk.query_x)  # [P, E, B, way]
        y = chunk.query_y.to(logits.device).expand(logits.shape[:-1])
        hits.append((logits.argmax(dim=-1) == y).double().mean(dim=-1).cpu())
        ce = F.cross_entropy(logits.flatten(0, 2), y.flatten(), reduction="none")
        losses.append(ce.view(y.shape).double().mean(dim=-1).cpu())
        if progress is not None:
            progress(len(chunk))
    return torch.cat(hits, dim=1), torch.cat(losses, dim=1)


def accuracy(
    phenotype: Phenotype,
    episodes: Episodes,
    rule: Rule | None,
    head: str,
    *,
    progress: Callable[[int], None] | None = None,
) -> Tensor:
    """Query accuracy [P, E] of every individual after adapting on every episode."""
    return scores(phenotype, episodes, rule, head, progress=progress)[0]
