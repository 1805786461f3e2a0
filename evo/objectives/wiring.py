"""Wiring length: the cost sum |w| * d of the grown network.

The distance-only wiring cost of seRNN (Achterberg et al., Nat Mach Intell
2023), selected on in its scale-free form; it needs no data.
"""

from __future__ import annotations

from typing import Any

import torch

from evo.objectives.base import Objective
from genome.phenotype import Phenotype


class Wiring(Objective):
    """Scale-free wiring cost (selected on), and the plain sum |w| * d (reported as `raw`).

    Selecting on the plain cost rewards shrinking the layer gains, which leaves
    the wiring as it was; the scale-free cost rewards few and short wires.
    """

    name = "wiring"
    metrics = ("raw",)
    has_data = False

    def evaluate(self, phenotype: Phenotype, batch: Any) -> dict[str, torch.Tensor]:
        from genome.wiring import wiring_cost

        return {
            self.name: wiring_cost(phenotype, scale_free=True),
            "raw": wiring_cost(phenotype),
        }
