"""What every searcher provides: its registry entry (`Algorithm`) and its stepping `Engine`.

An `Algorithm` is one entry of `evo.search.ALGORITHMS`: the config name, the
EvoTorch class, its defaults, and everything that differs between searchers
(the checks on its settings, how its searcher or engine is built, whether it
keeps a Pareto front, has a distribution mean, or starts from several genomes).
The config, the builders and the run driver ask the entry, never the name, so
a new searcher is its own file and one line in the registry.

Settings are the searcher's own keyword arguments (read from its signature, so
the valid keys are exactly what EvoTorch accepts), plus `population_size`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from evo.problem import GenomeProblem

# Constructor arguments the run sets itself (or that change the kind of run).
RESERVED = {
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


def search_stdev(problem: GenomeProblem) -> torch.Tensor:
    """The per-gene std [D] a search starts from: the decoder's initial std of each gene,
    where a gene that starts at exactly 0 (std 0, like the direct decoder's biases)
    takes the mean std of the others, since a zero stdev never moves and SNES and
    PGPE divide by it."""
    std = problem.decoder.blocks().std().to(problem.device)
    positive = std > 0
    if not bool(positive.any()):
        raise ValueError(f"decoder {problem.decoder.name!r}: every gene has an initial std of 0")
    return torch.where(positive, std, std[positive].mean())


class Engine(Protocol):
    """Steps a search so that each step is a pure function of (state, seed, generation)."""

    def step(self, generation: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One generation: the genomes [N, D] evaluated in it and their packed evals.

        They may share memory with the searcher's population: read (or copy)
        them before the next step, which may sample over them.
        """

    def population(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The current population (genomes [P, D], packed evals) after the last step."""

    def center(self) -> torch.Tensor | None:
        """The search's current genome [D] (a distribution's mean), if it has one."""

    def replace_worst(self, genomes: torch.Tensor) -> None:
        """Put genomes [K, D] into the population in place of its K worst."""


@dataclass(frozen=True)
class Algorithm:
    """A searcher's config name, defaults, the settings it accepts, and how it is built."""

    name: str
    cls: type | None
    defaults: dict[str, Any]
    # Keeps a Pareto front (can run task.mode = "pareto").
    pareto: bool = False
    # Has a search distribution whose mean the run writes as center.genome.
    has_center: bool = True
    # `init` may list several genomes, which seed the population in turn.
    init_population: bool = False
    # Evaluates in the main process (no Ray actors, whatever `workers` says).
    in_process: bool = False
    # Follows the objectives' gradient, so every objective must be differentiable.
    needs_gradient: bool = False
    extra: tuple[str, ...] = ()
    # The searcher's attributes that change as it steps, besides its population,
    # distribution and optimiser (evo/search/state.py): what a checkpoint keeps.
    state_attrs: tuple[str, ...] = ("_steps_count",)

    def valid_keys(self) -> list[str]:
        keys = {"population_size", *self.defaults, *self.extra}
        if self.cls is not None:
            params = inspect.signature(self.cls.__init__).parameters
            keys |= {k for k in params if k not in RESERVED}
        return sorted(keys)

    def setting_kind(self, key: str) -> str:
        """ "bool", "number", "str" or "any": what a setting's value must be."""
        default = self.setting_default(key)
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

    def setting_default(self, key: str) -> Any:
        """The default a setting takes when not given (None: EvoTorch's own)."""
        if key in self.defaults:
            return self.defaults[key]
        if self.cls is None:
            return None
        p = inspect.signature(self.cls.__init__).parameters.get(key)
        return None if p is None or p.default is inspect.Parameter.empty else p.default

    def check(self, settings: dict[str, Any]) -> None:
        """Raise ValueError("algorithm.KEY: ...") for a setting out of its valid range."""

    def check_genome(self, length: int, settings: dict[str, Any]) -> None:
        """Raise ValueError where this searcher cannot search a genome of `length` genes."""

    def build_searcher(self, problem: GenomeProblem, settings: dict[str, Any]) -> Any:
        """The EvoTorch searcher on `problem` (`settings`: defaults already merged)."""
        raise NotImplementedError(f"{self.name!r} has no EvoTorch searcher")

    def make_engine(
        self, problem: GenomeProblem, settings: dict[str, Any], generations: int
    ) -> Engine:
        """The engine that steps this searcher on `problem` for a run of `generations`."""
        from evo.search.engine import EvoEngine

        return EvoEngine(problem, self.name, settings)

    def engine_state(self, engine: Any) -> dict[str, Any]:
        """What a resume needs of `engine`, as tensors and plain values only."""
        from evo.search.state import searcher_state

        return searcher_state(engine.searcher, self.state_attrs)

    def restore_engine(self, engine: Any, state: dict[str, Any]) -> None:
        """Put `state` (from `engine_state`) into `engine`, freshly built from the run's config."""
        from evo.search.state import restore_searcher

        restore_searcher(engine.searcher, self.state_attrs, state)
