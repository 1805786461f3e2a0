"""A Pareto archive: the non-dominated genomes of a whole run, scored on fixed data.

NSGA-II keeps its front in the population and ranks it on each generation's
minibatch. Under that noise a front loses genomes it should keep: a newcomer
that is lucky on one batch dominates them, or, with parents re-scored every
generation, they drift away one unlucky batch at a time. The archive is the
run's memory against that. After generations 0, `every`, 2 `every`, ... (and,
for the run's front only, its last) the population's first front is offered; each genome it has not seen before is scored once on a
fixed batch of `batch_size` training examples (drawn once, from a stream of the
run's seed of its own, never one of the generations' batches), so that all
members are compared on the same data. A genome enters if no member dominates
it there, and the members it dominates leave. Beyond `size` members the most
crowded leave, one at a time (NSGA-II's crowding distance, Deb et al. 2002;
the ends of each objective always stay).

With `feed` = 0 (the default) the archive only records: a run with it searches
exactly as one without. With `feed` = k, after each offer up to k members that
are not in the population go back into it, in place of its lowest-ranked
genomes (the most isolated members first, so both ends of the front return),
and are scored with the parents on the next generation's batch: the search goes
on from the front it found, not only from what the last batches left of it (an
elitist archive; SPEA2, Zitzler et al. 2001, goes further and breeds from its
archive alone). Its state (members, their scores
and the generation each entered, and the genomes it has seen) is part of the
checkpoint, so a resumed run keeps the same archive as one never interrupted.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import torch

from evo.problem import STREAM_ARCHIVE, GenomeProblem
from evo.search.pareto import crowding_distance, first_of_each, pareto_front
from tasks.seeds import seeded


def _key(genome: torch.Tensor) -> str:
    data = genome.detach().cpu().contiguous().numpy().tobytes()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class ParetoArchive:
    """The non-dominated genomes of a run on fixed data; see the module docstring."""

    def __init__(
        self, problem: GenomeProblem, *, batch_size: int, size: int, every: int = 1, feed: int = 0
    ):
        if batch_size < 1 or size < 2 or every < 1 or feed < 0:
            raise ValueError(
                f"archive needs batch_size >= 1, size >= 2, every >= 1 and feed >= 0, got "
                f"batch_size={batch_size}, size={size}, every={every}, feed={feed}"
            )
        if problem.mode != "pareto":
            raise ValueError(
                f"an archive keeps a Pareto front; the problem's mode is {problem.mode!r}"
            )
        self.problem = problem
        self.batch_size, self.size, self.every = int(batch_size), int(size), int(every)
        self.feed = int(feed)
        self.genomes = torch.empty(0, problem.solution_length)
        self.evals = problem.eval_columns.empty()
        self.generations = torch.empty(0, dtype=torch.long)
        self.seen: set[str] = set()
        self._data: list[Any] | None = None

    def __len__(self) -> int:
        return self.genomes.shape[0]

    def data(self) -> list[Any]:
        """The fixed batch of every objective the members are scored on (drawn on first use)."""
        if self._data is None:
            p = self.problem
            self._data = [
                obj.batch(
                    seeded(p.run_seed, STREAM_ARCHIVE, k, device=p.device),
                    batch_size=self.batch_size,
                )
                for k, obj in enumerate(p.objectives)
            ]
        return self._data

    def due(self, generation: int) -> bool:
        """Whether the population after `generation` is offered: generations 0, every, 2 every..."""
        return generation % self.every == 0

    def with_offer(
        self, values: torch.Tensor, evals: torch.Tensor, generation: int
    ) -> ParetoArchive:
        """A copy that has also been offered this population; the archive itself is unchanged.

        A run's front is its archive with the final population offered too, while
        its checkpoint keeps the archive of the regular offers only: so a run
        resumed to go on longer keeps the archive of a run that never stopped.
        """
        other = copy.copy(self)
        other.seen = set(self.seen)
        other.offer(values, evals, generation)
        return other

    @torch.no_grad()
    def offer(self, values: torch.Tensor, evals: torch.Tensor, generation: int) -> int:
        """Offer a population's first front (genomes [N, D], evals on its minibatches).

        Returns how many of its genomes entered the archive.
        """
        cols = self.problem.eval_columns
        ok = torch.nonzero(cols.finite(evals)).flatten()
        if ok.numel() == 0:
            return 0
        front = ok[pareto_front(cols.fitness(evals[ok]))]
        new, keys = [], []
        for i in front.tolist():
            key = _key(values[i])
            if key not in self.seen and key not in keys:
                new.append(i)
                keys.append(key)
        if not new:
            return 0
        self.seen.update(keys)
        genomes = values[new].float()
        fit, data = self.problem.fitness(self.problem.score(genomes, generation, data=self.data()))
        scored = cols.pack(fit, data).cpu()
        keep = cols.finite(scored)  # a non-finite score never enters
        if not keep.any():
            return 0
        self.add(genomes[keep], scored[keep], generation)
        return int((self.generations == generation).sum())

    def add(self, genomes: torch.Tensor, evals: torch.Tensor, generation: int) -> None:
        """Merge genomes [N, D] already scored on the archive's data (packed evals [N, width])."""
        fitness = self.problem.eval_columns.fitness
        g = torch.cat([self.genomes, genomes])
        e = torch.cat([self.evals, evals])
        born = torch.cat(
            [self.generations, torch.full((genomes.shape[0],), generation, dtype=torch.long)]
        )
        front = pareto_front(fitness(e))
        # Of members with the same objective values, the oldest (first) stays.
        front = front[first_of_each(fitness(e[front]))]
        g, e, born = g[front], e[front], born[front]
        while g.shape[0] > self.size:
            worst = int(torch.argmin(crowding_distance(fitness(e))))
            drop = torch.arange(g.shape[0]) != worst
            g, e, born = g[drop], e[drop], born[drop]
        self.genomes, self.evals, self.generations = g, e, born

    def returns(self, population: torch.Tensor) -> torch.Tensor:
        """The members [<= feed, D] that go back into a population [P, D]: those not in it,
        the most isolated first (the ends of the front before its crowded middle)."""
        if not self.feed or not len(self):
            return self.genomes[:0].clone()
        present = {_key(g) for g in population.float()}
        out = torch.tensor([_key(g) not in present for g in self.genomes], dtype=torch.bool)
        crowd = crowding_distance(self.problem.eval_columns.fitness(self.evals))
        order = torch.argsort(-crowd, stable=True)
        order = order[out[order]][: self.feed]
        return self.genomes[order].clone()

    def members(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Genomes [M, D], their evals on the archive's data and the generation each entered."""
        return self.genomes.clone(), self.evals.clone(), self.generations.clone()

    def state(self) -> dict[str, Any]:
        return {
            "genomes": self.genomes.clone(),
            "evals": self.evals.clone(),
            "generations": self.generations.clone(),
            "seen": sorted(self.seen),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.genomes = state["genomes"].clone()
        self.evals = state["evals"].clone()
        self.generations = state["generations"].clone()
        self.seen = set(state["seen"])
