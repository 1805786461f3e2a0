"""The gradient reference: the same genome trained by backprop through the decoder.

Every decoder is differentiable, so the genome of one individual can be fitted
directly with Adam (Kingma and Ba, 2015) on the same objectives, minibatches
and weighted sum as evolution. This is the comparison the genomic-bottleneck
paper draws (Shuvaev et al., PNAS 2024, trained its g-networks by gradient
descent): at equal genome size, how far is evolution from what gradients reach?

`GradientEngine` has the interface of `evo.algorithms.EvoEngine`, so the run
driver writes the same run directory, metrics, checkpoints and genome files.
A step whose loss or gradient is not finite leaves the genome unchanged and is
counted like a non-finite fitness. The learning rate is constant, or follows a
cosine from `learning_rate` to 0 over the run's generations (Loshchilov and
Hutter, SGDR, 2017); it is a function of the generation alone, so a resumed
run steps exactly as an uninterrupted one.
"""

from __future__ import annotations

import math

import torch

from evo.problem import GenomeProblem

LR_SCHEDULES = ("constant", "cosine")


class GradientEngine:
    """Adam on the flat genome [1, D] of one individual, decoded with P = 1."""

    name = "gradient"

    def __init__(self, problem: GenomeProblem, hyper: dict, generations: int = 1):
        if problem.mode != "weighted":
            raise ValueError("the gradient optimiser needs task.mode = 'weighted'")
        self.problem = problem
        # The initial genome is drawn exactly as evolution draws its first center.
        start = problem.generate_values(1).as_subclass(torch.Tensor).detach().clone()
        self.genome = start.requires_grad_(True)
        self.learning_rate = float(hyper.get("learning_rate", 0.01))
        self.schedule = hyper.get("lr_schedule", "constant")
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
            fit, data = p.fitness(scores)
            before = self.genome.detach().clone()
            if bool(torch.isfinite(loss)):
                loss.backward()
                if bool(torch.isfinite(self.genome.grad).all()):
                    self.optimizer.step()
                else:
                    data[:, -1] = 1.0
        return before.cpu(), torch.cat([fit, data], dim=1).cpu()

    def population(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The current genome [1, D] (evaluated at the last generation's batch)."""
        g = self.genome.detach().clone()
        with torch.no_grad():
            fit, data = self.problem.fitness(
                self.problem.score(g, self.problem.generation, exact=False)
            )
        return g.cpu(), torch.cat([fit, data], dim=1).cpu()

    def center(self) -> torch.Tensor:
        return self.genome.detach()[0].cpu().clone()
