"""Search algorithms by name, and the engine that steps one reproducibly.

`ALGORITHMS` maps a config name to an EvoTorch searcher: the distribution-based
SNES (Schaul et al. 2011), XNES (Glasmachers et al. 2010), PGPE (Sehnke et al.
2010, with ClipUp by Toklu et al. 2020), CEM (Rubinstein 1999) and CMA-ES
(Hansen 2016), which take a weighted sum of the objectives, and the genetic
algorithm with NSGA-II ranking (Deb et al. 2002), which keeps a Pareto front.
``gradient`` (evo/gradient.py) is the backprop reference at equal genome size.

Hyperparameters are the searcher's own keyword arguments (read from its
signature, so the valid keys are exactly what EvoTorch accepts), plus
`population_size`. `stdev_init` and the GA's `mutation_stdev` are in units of
the decoder's per-gene initial std (`decoder.spec().std()`): per gene for
SNES, XNES, PGPE and CEM, its mean for CMA-ES and the GA, which take a scalar.

The GA is EvoTorch's GeneticAlgorithm with NSGA-II's survival made exact
(`NSGA2`): EvoTorch 0.6.1 orders the genomes within each front by a permutation
that is not their crowding distance (`_compute_pareto_ranks` stores the
argsort of the distances as if it were each genome's rank), so the truncated
front kept arbitrary genomes and could lose its ends. Here each front is
ordered by crowding distance, largest first, ends always first (Deb et al.
2002).

The GA's `re_evaluate` (default true) re-scores the parents on every
generation's fresh minibatch, so a lucky score does not keep a genome alive;
false keeps each genome's first score and evaluates only the children (half
the evaluations per generation), which keeps NSGA-II's front and its crowding
distances stable under a noisy objective, at the price of keeping lucky scores.

`EvoEngine.step(generation)` makes a step a pure function of the searcher's
state, the seed and the generation: the problem's own generator (which EvoTorch
samples from) and torch's global generator (forked, so the caller's stream is
untouched) are both seeded from (seed, generation) right before the step.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from evotorch import algorithms as ea
from evotorch import operators as eo

from evo.outputs import crowding_distance
from evo.problem import STREAM_SEARCH, GenomeProblem
from tasks.seeds import derive_seed

# Constructor arguments the run sets itself (or that change the kind of run).
_RESERVED = {
    "self",
    "problem",
    "popsize",
    "center_init",
    "radius_init",
    "num_interactions",
    "popsize_max",
    "obj_index",
    "distributed",
    "popsize_weighted_grad_avg",
    "ensure_even_popsize",
    "operators",
    "_allow_empty_operator_list",
    "re_evaluate",
    "re_evaluate_parents_first",
}


def best_first(batch: Any) -> list[int]:
    """The rows of an evaluated multi-objective SolutionBatch, best first: by Pareto
    rank, and within a front by crowding distance, largest first (NSGA-II)."""
    ranks, _ = batch.compute_pareto_ranks(crowdsort=False)
    ranks = ranks.cpu()
    n = len(batch.senses)
    f = batch.evals.as_subclass(torch.Tensor)[:, :n].detach().cpu()
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


@dataclass(frozen=True)
class Algorithm:
    """A searcher's config name, defaults and the hyperparameters it accepts."""

    name: str
    cls: type | None
    defaults: dict[str, Any]
    pareto: bool = False
    extra: tuple[str, ...] = ()

    def valid_keys(self) -> list[str]:
        keys = {"population_size", *self.defaults, *self.extra}
        if self.cls is not None:
            params = inspect.signature(self.cls.__init__).parameters
            keys |= {k for k in params if k not in _RESERVED}
        return sorted(keys)

    def param_kind(self, key: str) -> str:
        """ "bool", "number", "str" or "any": what a hyperparameter's value must be."""
        default = self.param_default(key)
        if isinstance(default, bool):
            return "bool"
        if isinstance(default, int | float):
            return "number"
        if isinstance(default, str):
            return "str"
        p = None if self.cls is None else inspect.signature(self.cls.__init__).parameters.get(key)
        hint = "" if p is None else str(p.annotation)
        if "bool" in hint:
            return "bool"
        if ("float" in hint or "Real" in hint or "int" in hint) and "Iterable" not in hint:
            return "number"
        return "any"

    def param_default(self, key: str) -> Any:
        """The default a hyperparameter takes when not given (None: EvoTorch's own)."""
        if key in self.defaults:
            return self.defaults[key]
        if self.cls is None:
            return None
        p = inspect.signature(self.cls.__init__).parameters.get(key)
        return None if p is None or p.default is inspect.Parameter.empty else p.default


_GAUSSIAN = {"population_size": 32, "stdev_init": 0.5}

ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("snes", ea.SNES, dict(_GAUSSIAN)),
        Algorithm("xnes", ea.XNES, dict(_GAUSSIAN)),
        Algorithm(
            "pgpe",
            ea.PGPE,
            {**_GAUSSIAN, "center_learning_rate": 0.05, "stdev_learning_rate": 0.1},
        ),
        Algorithm("cem", ea.CEM, {**_GAUSSIAN, "parenthood_ratio": 0.5}),
        Algorithm("cmaes", ea.CMAES, dict(_GAUSSIAN)),
        Algorithm(
            "ga",
            NSGA2,
            {
                "population_size": 32,
                "tournament_size": 4,
                "eta": 8.0,
                "mutation_stdev": 0.1,
                "mutation_probability": 0.1,
                "re_evaluate": True,
            },
            pareto=True,
        ),
        Algorithm(
            "gradient",
            None,
            {"population_size": 1, "learning_rate": 0.01, "lr_schedule": "constant"},
        ),
    )
}


def algorithm(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; valid algorithms: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


def check_ga(hyper: dict[str, Any]) -> None:
    """Raise ValueError naming the GA setting that is out of range, and its valid values."""

    def bad(key: str, valid: str) -> None:
        raise ValueError(f"algorithm.{key}: must be {valid}, got {hyper[key]!r}")

    def number(key: str) -> float:
        v = hyper[key]
        if isinstance(v, bool) or not isinstance(v, int | float):
            bad(key, "a number")
        return float(v)

    if not 0.0 <= number("mutation_probability") <= 1.0:
        bad("mutation_probability", "a number in [0, 1]")
    if not number("mutation_stdev") > 0.0:
        bad("mutation_stdev", "a number > 0")
    if not number("eta") > 0.0:
        bad("eta", "a number > 0")
    if number("tournament_size") < 1 or number("tournament_size") != int(hyper["tournament_size"]):
        bad("tournament_size", "an integer >= 1")
    for key in ("re_evaluate", "elitist"):
        if key in hyper and not isinstance(hyper[key], bool):
            bad(key, "true or false")


def make_searcher(problem: GenomeProblem, name: str, hyper: dict[str, Any]) -> Any:
    """The EvoTorch searcher `name` on `problem`, initialised from the problem's seed."""
    algo = algorithm(name)
    hp = {**algo.defaults, **hyper}
    popsize = int(hp.pop("population_size"))
    std = problem.decoder.spec().std().to(problem.device)
    if name == "ga":
        check_ga(hp)
        ops = [
            eo.SimulatedBinaryCrossOver(
                problem, tournament_size=int(hp.pop("tournament_size")), eta=float(hp.pop("eta"))
            ),
            eo.GaussianMutation(
                problem,
                stdev=float(hp.pop("mutation_stdev")) * float(std.mean()),
                mutation_probability=hp.pop("mutation_probability"),
            ),
        ]
        return algo.cls(problem, operators=ops, popsize=popsize, **hp)
    scale = float(hp.pop("stdev_init"))
    stdev = scale * float(std.mean()) if name == "cmaes" else scale * std
    return algo.cls(problem, popsize=popsize, stdev_init=stdev, **hp)


class EvoEngine:
    """Steps an EvoTorch searcher so that each step is a pure function of (state, seed, generation)."""

    def __init__(self, problem: GenomeProblem, name: str, hyper: dict[str, Any]):
        self.problem = problem
        self.name = name
        # Initial sampling (center, first population) is seeded like a step at generation -1.
        with self._seeded(-1):
            self.searcher = make_searcher(problem, name, hyper)

    @contextmanager
    def _seeded(self, generation: int) -> Iterator[None]:
        seed = self.problem.run_seed
        self.problem.manual_seed(derive_seed(seed, STREAM_SEARCH, generation, 0))
        self.problem.set_generation(max(generation, 0))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, STREAM_SEARCH, generation, 1))
            yield

    def step(self, generation: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One generation; the genomes [N, D] and evals evaluated in it."""
        self.problem.drain()
        with self._seeded(generation):
            self.searcher.step()
        return self.problem.drain()

    def population(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The searcher's current population (genomes [P, D], evals) after the last step."""
        pop = self.searcher.population
        values = pop.values.as_subclass(torch.Tensor).detach().cpu().clone()
        return values, pop.evals.as_subclass(torch.Tensor).detach().cpu().clone()

    def replace_worst(self, genomes: torch.Tensor) -> None:
        """Put genomes [K, D] into the GA's population in place of its K lowest-ranked
        (NSGA-II rank, then crowding); they are scored with the parents next step."""
        k = genomes.shape[0]
        if not k:
            return
        pop = self.searcher.population
        if k >= len(pop):
            raise ValueError(f"cannot replace {k} genomes of a population of {len(pop)}")
        pop.set_values(genomes.to(pop.device, pop.dtype), solutions=best_first(pop)[-k:])

    def center(self) -> torch.Tensor | None:
        """The mean of the search distribution (None for the GA)."""
        try:
            c = self.searcher.status["center"]
        except (KeyError, AttributeError):
            return None
        return torch.as_tensor(c).as_subclass(torch.Tensor).detach().cpu().clone()
