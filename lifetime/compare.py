"""A genome against the baselines, on the same episodes: what `innate fewshot` reports.

Every method meets the same episodes, so each is compared with the genome
episode by episode (`fewshot.paired`). Methods with random bodies (Kaiming
init, random genomes) average `bodies` of them per episode, so their number
is the expected accuracy of such a body, not the luck of one draw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from genome.decoders.base import Decoder
from genome.phenotype import Phenotype
from lifetime.baselines import kaiming_bodies, pixel_prototype, pretrained_body, random_genomes
from lifetime.fewshot import accuracy, interval, paired
from lifetime.rules.base import Rule
from tasks.episodes import ClassSource, Episodes
from tasks.seeds import seeded

BASELINES = ("pixel", "kaiming", "random", "pretrained")
LABELS = {
    "pixel": "pixel prototype",
    "kaiming": "Kaiming init",
    "random": "random genome",
    "pretrained": "trained on background",
}
STREAM_BODIES = 14


@dataclass
class Comparison:
    """Accuracy per episode [E] of each method; `reference` (the genome) first."""

    reference: str
    accuracy: dict[str, Tensor] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, Any]]:
        ref = self.accuracy[self.reference]
        out = {}
        for name, acc in self.accuracy.items():
            row: dict[str, Any] = interval(acc).to_dict()
            if name != self.reference:
                row["vs_reference"] = paired(acc, ref).to_dict()
            out[name] = row
        return out


def method_bodies(
    name: str,
    phenotype: Phenotype,
    decoder: Decoder,
    *,
    bodies: int,
    seed: int,
    background: ClassSource | None,
    pretrain_steps: int,
) -> Phenotype:
    """The bodies of a network baseline (`kaiming`, `random`, `pretrained`)."""
    gen = seeded(seed, STREAM_BODIES, BASELINES.index(name))
    if name == "kaiming":
        return kaiming_bodies(phenotype.layout, bodies, gen, phenotype.device, phenotype.dtype)
    if name == "random":
        return random_genomes(decoder, bodies, gen)
    if name == "pretrained":
        if background is None:
            raise ValueError("the pretrained baseline needs the background classes")
        return pretrained_body(
            phenotype.layout, background, steps=pretrain_steps, seed=seed, device=phenotype.device
        )
    raise ValueError(f"unknown baseline {name!r}; valid: {', '.join(BASELINES)}")


def compare(
    phenotype: Phenotype,
    decoder: Decoder,
    episodes: Episodes,
    rule: Rule | None,
    head: str,
    *,
    reference: str = "genome",
    baselines: tuple[str, ...] = BASELINES,
    bodies: int = 4,
    seed: int = 0,
    background: ClassSource | None = None,
    pretrain_steps: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> Comparison:
    """The genome (`phenotype`, one individual or several averaged) and each baseline."""
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; valid: {', '.join(BASELINES)}")
    out = Comparison(reference)
    out.accuracy[reference] = accuracy(phenotype, episodes, rule, head, progress=progress).mean(0)
    for name in baselines:
        if name == "pixel":
            out.accuracy[name] = pixel_prototype(episodes)
            if progress is not None:
                progress(len(episodes))
            continue
        body = method_bodies(
            name,
            phenotype,
            decoder,
            bodies=bodies,
            seed=seed,
            background=background,
            pretrain_steps=pretrain_steps,
        )
        out.accuracy[name] = accuracy(body, episodes, rule, head, progress=progress).mean(0)
    return out
