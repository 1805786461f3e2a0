"""The packed evaluations of a population, read by name.

EvoTorch keeps one tensor per population, evals [N, n_objectives + C]: first
the fitness it ranks on (one column in weighted mode, one per objective in
Pareto mode; minimised, a non-finite value scored `WORST`), then the problem's
eval data: each objective's raw value and its reported metrics, and last a
flag that is 1 where a value was not finite. `EvalColumns` names those parts,
so no reader counts positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EvalColumns:
    """Where things are in a problem's packed evals [N, n_objectives + len(names) + 1]."""

    n_objectives: int
    # The reported columns: each objective's raw value, then its metrics ("digits_acc").
    names: tuple[str, ...]
    # The objectives' names, in order, and the weights of their sum.
    objectives: tuple[str, ...]
    weights: tuple[float, ...]

    @property
    def width(self) -> int:
        return self.n_objectives + len(self.names) + 1

    def empty(self) -> torch.Tensor:
        return torch.empty(0, self.width)

    def pack(self, fitness: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        """Fitness [N, n_objectives] and eval data [N, C] as one evals tensor."""
        return torch.cat([fitness, data], dim=1)

    def fitness(self, evals: torch.Tensor) -> torch.Tensor:
        """The fitness columns [N, n_objectives] a searcher ranks on."""
        return evals[:, : self.n_objectives]

    def nonfinite(self, evals: torch.Tensor) -> torch.Tensor:
        """The non-finite flag [N] (a view: 1.0 where some value was not finite)."""
        return evals[:, -1]

    def finite(self, evals: torch.Tensor) -> torch.Tensor:
        """Which rows [N] (bool) had every value finite."""
        return self.nonfinite(evals) == 0

    def column(self, evals: torch.Tensor, name: str) -> torch.Tensor:
        """The reported column `name` [N] ("digits", "digits_acc", ...)."""
        return evals[:, self.n_objectives + self.names.index(name)]

    def score(self, evals: torch.Tensor) -> torch.Tensor:
        """One score per row, lower is better: the fitness, or in Pareto mode its weighted sum."""
        if self.n_objectives == 1:
            return evals[:, 0].double()
        w = torch.tensor(self.weights, dtype=torch.float64)
        return (self.fitness(evals).double() * w).sum(dim=1)

    def record(self, row: torch.Tensor) -> dict[str, float]:
        """One row [width] as {"fitness": score, column: value, ...} (a genome file's fitness)."""
        out = {"fitness": float(self.score(row[None])[0])}
        out.update({c: float(self.column(row[None], c)[0]) for c in self.names})
        return out
