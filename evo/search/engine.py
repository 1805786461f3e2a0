"""The engine that steps an EvoTorch searcher reproducibly.

`EvoEngine.step(generation)` makes a step a pure function of the searcher's
state, the seed and the generation: the problem's own generator (which EvoTorch
samples from) and torch's global generator (forked, so the caller's stream is
untouched) are both seeded from (seed, generation) right before the step. The
searcher itself comes from its registry entry (evo/search/__init__.py); the
separable Gaussians draw the next step's noise ahead from the same seeds
(evo/search/sampling.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from evo.problem import STREAM_SEARCH, GenomeProblem
from evo.search.nsga2 import best_first
from evo.search.sampling import NoiseAhead
from tasks.seeds import derive_seed


def _seed_global(seed: int) -> None:
    """`torch.manual_seed(seed)` for the generators in use, without its cost.

    `torch.manual_seed` also queues a seeding of every accelerator not yet
    started (CUDA, XPU, MTIA), formatting a stack trace for each: about half a
    millisecond a generation. Here the CPU generator is seeded, and CUDA's
    where it is running (where it is not, nothing draws from it).
    """
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)


class EvoEngine:
    """Steps an EvoTorch searcher so that each step is a pure function of (state, seed, generation)."""

    def __init__(self, problem: GenomeProblem, name: str, settings: dict[str, Any]):
        from evo.search import algorithm

        entry = algorithm(name)
        self.problem = problem
        self.name = name
        if problem.noise_ahead is not None:  # an earlier engine's
            problem.noise_ahead.close()
        problem.noise_ahead = NoiseAhead(self._sample_seed)
        # Initial sampling (center, first population) is seeded like a step at generation -1.
        with self._seeded(-1):
            self.searcher = entry.build_searcher(problem, {**entry.defaults, **settings})

    def _sample_seed(self, generation: int) -> int:
        """The seed of the problem's generator, which EvoTorch samples from, in `generation`'s step."""
        return derive_seed(self.problem.run_seed, STREAM_SEARCH, generation, 0)

    @contextmanager
    def _seeded(self, generation: int) -> Iterator[None]:
        seed = self.problem.run_seed
        self.problem.manual_seed(self._sample_seed(generation))
        self.problem.set_generation(max(generation, 0))
        with torch.random.fork_rng(devices=[]):
            _seed_global(derive_seed(seed, STREAM_SEARCH, generation, 1))
            yield

    def step(self, generation: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One generation; the genomes [N, D] and evals evaluated in it (read them
        before the next step: they may share memory with the searcher's population)."""
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
