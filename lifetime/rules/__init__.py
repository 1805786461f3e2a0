"""Learning rules: how a born network adapts in its lifetime. One file each; `RULES` maps name -> class.

- ``sgd``: backprop (`lifetime.rules.sgd`);
- ``fa``: feedback alignment, Lillicrap et al. 2016 (`lifetime.rules.fa`);
- ``hebbian``: the ABCD rule of Najarro and Risi 2020 (`lifetime.rules.hebbian`);
- ``eqprop``: equilibrium propagation, Scellier and Bengio 2017 (`lifetime.rules.eqprop`).
"""

from __future__ import annotations

from typing import Any

from lifetime.rules.base import Net, Rule, loss
from lifetime.rules.eqprop import EqProp
from lifetime.rules.fa import FeedbackAlignment
from lifetime.rules.hebbian import Hebbian
from lifetime.rules.sgd import SGD

RULES: dict[str, type[Rule]] = {cls.name: cls for cls in (SGD, FeedbackAlignment, Hebbian, EqProp)}


def make_rule(name: str, **settings: Any) -> Rule:
    """A rule by registry name, e.g. make_rule("eqprop", lr=0.1, beta=0.05)."""
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; valid rules: {', '.join(RULES)}")
    return RULES[name](**settings)


__all__ = [
    "RULES",
    "SGD",
    "EqProp",
    "FeedbackAlignment",
    "Hebbian",
    "Net",
    "Rule",
    "loss",
    "make_rule",
]
