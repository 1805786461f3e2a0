"""Objectives by config name: what a population of phenotypes is scored on.

One objective per file, in the registry `OBJECTIVES` (name -> class), as
genome/decoders/ is: ``faces`` (face detection, faces.py), ``digits`` (digit
recognition, digits.py), ``fewshot`` (few-shot skill after the lifetime loop,
fewshot.py) and ``wiring`` (wiring length, wiring.py). A new
objective is its own file, subclassing `Objective` (base.py), and one line here.
"""

from __future__ import annotations

from typing import Any

from evo.objectives.base import Objective, roc_auc
from evo.objectives.digits import Digits
from evo.objectives.faces import Faces
from evo.objectives.fewshot import FewShot
from evo.objectives.wiring import Wiring
from tasks import AUGMENTS, DATASETS

OBJECTIVES: dict[str, type[Objective]] = {cls.name: cls for cls in (Faces, Digits, FewShot, Wiring)}


def make_objective(name: str, **settings: Any) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; valid objectives: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name](**settings)


__all__ = [
    "AUGMENTS",
    "DATASETS",
    "OBJECTIVES",
    "Digits",
    "Faces",
    "FewShot",
    "Objective",
    "Wiring",
    "make_objective",
    "roc_auc",
]
