"""The gradient reference: the same genome trained by backprop through the decoder.

Every decoder is differentiable, so the genome of one individual can be fitted
directly with Adam (Kingma and Ba, 2015) on the same objectives, minibatches
and weighted sum as evolution. This is the comparison the genomic-bottleneck
paper draws (Shuvaev et al., PNAS 2024, trained its g-networks by gradient
descent): at equal genome size, how far is evolution from what gradients reach?

`GradientEngine` is an `Engine` (evo/search/base.py) like `EvoEngine`, so the run
driver writes the same run directory, metrics, checkpoints and genome files.
A step whose loss or gradient is not finite leaves the genome unchanged and is
counted like a non-finite fitness. The learning rate is constant, or follows a
cosine from `learning_rate` to 0 over the run's generations (Loshchilov and
Hutter, SGDR, 2017); it is a function of the generation alone, so a resumed
run steps exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from evo.problem import GenomeProblem
from evo.search.base import Algorithm, Engine
from evo.search.state import plain

LR_SCHEDULES = ("constant", "cosine")


class GradientEngine:
    """Adam on the flat genome [1, D] of one individual, decoded with P = 1."""

    name = "gradient"

    def __init__(self, problem: GenomeProblem, settings: dict, generations: int = 1):
        if problem.mode != "weighted":
            raise ValueError("the gradient optimiser needs task.mode = 'weighted'")
        self.problem = problem
        # The initial genome is drawn exactly as evolution draws its first center.
        start = problem.generate_values(1).as_subclass(torch.Tensor).detach().clone()
        self.genome = start.requires_grad_(True)
        self.learning_rate = float(settings.get("learning_rate", 0.01))
        self.schedule = settings.get("lr_schedule", "constant")
        if self.schedule not in LR_SCHEDULES:
            raise ValueError(
                f"unknown lr_schedule {self.schedule!r}; valid: {', '.join(LR_SCHEDULES)}"
            )
        self.generations = max(1, int(generations))
        self.optimizer = torch.optim.Adam([self.genome], lr=self.learning_rate)

    def lr(self, generation: int) -> float:
        if self.schedule == "constant":
            return self.learning_rate
        progress = min(1.0, generation / self.generations)
        return 0.5 * self.learning_rate * (1.0 + math.cos(math.pi * progress))

    def step(self, generation: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One Adam step on the generation's minibatch; the genome before it and its evals."""
        p = self.problem
        p.set_generation(generation)
        self.optimizer.zero_grad(set_to_none=True)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr(generation)
        with torch.enable_grad():
            scores = p.score(self.genome, generation, exact=False)
            loss = p.loss(scores)[0]
            evals = p.eval_columns.pack(*p.fitness(scores))
            before = self.genome.detach().clone()
            if bool(torch.isfinite(loss)):
                loss.backward()
                if bool(torch.isfinite(self.genome.grad).all()):
                    self.optimizer.step()
                else:
                    p.eval_columns.nonfinite(evals).fill_(1.0)
        return before.cpu(), evals.cpu()

    def population(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The current genome [1, D] (evaluated at the last generation's batch)."""
        g = self.genome.detach().clone()
        with torch.no_grad():
            fit, data = self.problem.fitness(
                self.problem.score(g, self.problem.generation, exact=False)
            )
        return g.cpu(), self.problem.eval_columns.pack(fit, data).cpu()

    def center(self) -> torch.Tensor:
        return self.genome.detach()[0].cpu().clone()

    def replace_worst(self, genomes: torch.Tensor) -> None:
        raise ValueError("the gradient optimiser has one genome; nothing can replace it")


@dataclass(frozen=True)
class Gradient(Algorithm):
    """The gradient optimiser's entry: one genome, in-process, no search distribution."""

    def check(self, settings: dict[str, Any]) -> None:
        if settings["population_size"] != 1:
            raise ValueError("algorithm.population_size: must be 1 for the gradient optimiser")
        lr = settings["learning_rate"]
        if not lr > 0:
            raise ValueError(f"algorithm.learning_rate: must be a number > 0, got {lr!r}")
        schedule = settings["lr_schedule"]
        if schedule not in LR_SCHEDULES:
            raise ValueError(
                f"algorithm.lr_schedule: {schedule!r} is not valid; valid values: "
                f"{', '.join(LR_SCHEDULES)}"
            )

    def make_engine(
        self, problem: GenomeProblem, settings: dict[str, Any], generations: int
    ) -> Engine:
        return GradientEngine(problem, settings, generations=generations)

    def engine_state(self, engine: GradientEngine) -> dict[str, Any]:
        return {
            "genome": engine.genome.detach().cpu().clone(),
            "optimizer": plain(engine.optimizer.state_dict(), "optimizer"),
        }

    def restore_engine(self, engine: GradientEngine, state: dict[str, Any]) -> None:
        with torch.no_grad():
            engine.genome.copy_(state["genome"])
        engine.optimizer.load_state_dict(state["optimizer"])


GRADIENT = Gradient(
    "gradient",
    None,
    {"population_size": 1, "learning_rate": 0.01, "lr_schedule": "constant"},
    has_center=False,
    in_process=True,
    needs_gradient=True,
)
