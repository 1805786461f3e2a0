"""The genetic algorithm with NSGA-II ranking: the searcher that keeps a Pareto front.

EvoTorch's GeneticAlgorithm (simulated binary crossover, Gaussian mutation)
with NSGA-II's survival (Deb, Pratap, Agarwal and Meyarivan, IEEE TEC 2002):
parents and children are ranked into fronts, and each front is ordered by
crowding distance, largest first, its ends always first (`best_first`).
EvoTorch 0.6.1's own ordering within a front is not the crowding distance
(`_compute_pareto_ranks` stores an argsort as if it were a rank), hence `NSGA2`.

`mutation_stdev` is in units of the mean of the decoder's per-gene initial std.
`re_evaluate` (default true) re-scores the parents on every generation's fresh
minibatch, so a lucky score does not keep a genome alive; false keeps each
genome's first score and evaluates only the children (half the evaluations per
generation), which keeps the front and its crowding distances stable under a
noisy objective, at the price of keeping lucky scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from evotorch import algorithms as ea
from evotorch import operators as eo

from evo.search.base import Algorithm, search_stdev
from evo.search.pareto import crowding_distance

if TYPE_CHECKING:
    from evo.problem import GenomeProblem


def best_first(batch: Any) -> list[int]:
    """The rows of an evaluated multi-objective SolutionBatch, best first: by Pareto
    rank, and within a front by crowding distance, largest first (NSGA-II)."""
    ranks, _ = batch.compute_pareto_ranks(crowdsort=False)
    ranks = ranks.cpu()
    # The objective columns lead the packed evals (one per sense).
    n_objectives = len(batch.senses)
    f = batch.evals.as_subclass(torch.Tensor)[:, :n_objectives].detach().cpu()
    crowd = torch.zeros(len(batch), dtype=torch.float64)
    for r in torch.unique(ranks).tolist():
        rows = torch.nonzero(ranks == r).flatten()
        crowd[rows] = crowding_distance(f[rows])
    order = torch.argsort(-crowd, stable=True)
    return order[torch.argsort(ranks[order], stable=True)].tolist()


class NSGA2(ea.GeneticAlgorithm):
    """EvoTorch's GeneticAlgorithm whose elitist survival on several objectives keeps
    the best `popsize` of parents and children by `best_first` (see the module docstring)."""

    def _step(self) -> None:
        if not (self._elitist and self.problem.is_multi_objective):
            super()._step()
            return
        extended = self._make_extended_population(split=False)
        self._population = extended[best_first(extended)[: self._popsize]]


GA_TOURNAMENT = 4


def check_ga(settings: dict[str, Any]) -> None:
    """Raise ValueError naming the GA setting that is out of range, and its valid values."""

    def bad(key: str, valid: str) -> None:
        raise ValueError(f"algorithm.{key}: must be {valid}, got {settings[key]!r}")

    def number(key: str) -> float:
        v = settings[key]
        if isinstance(v, bool) or not isinstance(v, int | float):
            bad(key, "a number")
        return float(v)

    if settings["population_size"] < 2:
        bad("population_size", "an integer >= 2 (crossover needs two parents)")
    if not 0.0 <= number("mutation_probability") <= 1.0:
        bad("mutation_probability", "a number in [0, 1]")
    if not number("mutation_stdev") > 0.0:
        bad("mutation_stdev", "a number > 0")
    if not number("eta") > 0.0:
        bad("eta", "a number > 0")
    if number("tournament_size") < 1 or number("tournament_size") != int(
        settings["tournament_size"]
    ):
        bad("tournament_size", "an integer >= 1")
    if settings["tournament_size"] > settings["population_size"]:
        # Drawn with replacement, a tournament larger than the population nearly always
        # picks the best genome: the GA would breed from one parent.
        bad(
            "tournament_size",
            f"an integer from 1 to algorithm.population_size ({settings['population_size']}) "
            f"(the default is {GA_TOURNAMENT}: give a smaller one for a population that small)",
        )
    for key in ("re_evaluate", "elitist"):
        if key in settings and not isinstance(settings[key], bool):
            bad(key, "true or false")


@dataclass(frozen=True)
class Genetic(Algorithm):
    """The GA's entry: crossover and mutation operators, a population without a mean."""

    def check(self, settings: dict[str, Any]) -> None:
        check_ga(settings)

    def build_searcher(self, problem: GenomeProblem, settings: dict[str, Any]) -> Any:
        settings = dict(settings)
        check_ga(settings)
        population_size = int(settings.pop("population_size"))
        std = search_stdev(problem)
        operators = [
            eo.SimulatedBinaryCrossOver(
                problem,
                tournament_size=int(settings.pop("tournament_size")),
                eta=float(settings.pop("eta")),
            ),
            eo.GaussianMutation(
                problem,
                stdev=float(settings.pop("mutation_stdev")) * float(std.mean()),
                mutation_probability=settings.pop("mutation_probability"),
            ),
        ]
        return self.cls(problem, operators=operators, popsize=population_size, **settings)


GA = Genetic(
    "ga",
    NSGA2,
    {
        "population_size": 32,
        "tournament_size": GA_TOURNAMENT,
        "eta": 8.0,
        "mutation_stdev": 0.1,
        "mutation_probability": 0.1,
        "re_evaluate": True,
    },
    pareto=True,
    has_center=False,
    init_population=True,
    state_attrs=("_steps_count", "_first_iter"),
)
