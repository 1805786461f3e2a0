"""The EvoTorch problem: a whole population decoded, run and scored in one call.

`GenomeProblem` subclasses EvoTorch's `Problem` (Toklu et al., "EvoTorch: Scalable
Evolutionary Computation in Python", 2023) and implements the vectorised hook
`_evaluate_batch`: decode the population [P, D] into one `Phenotype`, run it on
the generation's minibatch, and score every objective, all batched over P.

Fitness is a pure function of (genome, generation, seed). The minibatch of
generation g is drawn from a generator seeded by (seed, g, objective); the
main process sends g to every Ray actor before each evaluation through
EvoTorch's sync hooks (`_make_sync_data_for_actors`), so an actor that scores
any piece of the population sees the same data as the serial run, and the
population is scored in fixed chunks of aligned memory (`score`), so the
piece a genome lands in cannot change its fitness in the last bits either.

Modes: ``weighted`` gives one objective (the weighted sum, minimised) for the
distribution-based searchers; ``pareto`` gives one column per objective for
NSGA-II ranking in EvoTorch's GeneticAlgorithm. Either way the raw objective
values, the reported metrics and a non-finite flag travel as eval data, so
they come back from the actors with the fitness. A non-finite objective value
scores `WORST` and is counted, never raised.

Ray settings live here: `workers` actors (0: evaluate in-process) on the local
machine or on the cluster at `address` (`connect_ray`, evo/cluster.py), started
and replaced as evo/actors.py says. The
packed evals a population gets are read by name through `eval_columns`
(evo/evals.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from evotorch import Problem, SolutionBatch

from evo.actors import ACTOR_RETRIES, ActorsLost, RayActors
from evo.cluster import connect_ray, keep_ray_local
from evo.evals import EvalColumns
from evo.numerics import actor_env
from evo.objectives import Objective
from evo.workspaces import Workspaces, chunk
from genome.decoders.base import Decoder
from tasks.seeds import seeded

if TYPE_CHECKING:
    from evo.search.sampling import NoiseAhead

# EvoTorch logs every Problem construction at INFO; keep runs quiet.
logging.getLogger("evotorch").setLevel(logging.WARNING)

# The score of a non-finite objective value: finite, so rankings and means stay defined.
WORST = 1e30
MODES = ("weighted", "pareto")
# Genomes scored at once. A multiple of 16, so that with float32 every chunk of
# a Ray piece starts at the same 64-byte alignment as in the serial run.
EVAL_CHUNK = 16


# Streams of randomness derived from the run's seed, so that none overlaps another.
STREAM_INIT, STREAM_DATA, STREAM_SEARCH, STREAM_ARCHIVE = 1, 2, 3, 4


class GenomeProblem(RayActors, Problem):
    """Genomes of `decoder` scored on `objectives`; see the module docstring."""

    # The next sample's noise, drawn ahead (set by the engine; evo/search/sampling.py).
    noise_ahead: NoiseAhead | None = None

    def __init__(
        self,
        decoder: Decoder,
        objectives: Sequence[Objective],
        *,
        weights: Sequence[float] | None = None,
        mode: str = "weighted",
        seed: int = 0,
        device: str = "cpu",
        workers: int | str = 0,
        init: torch.Tensor | None = None,
        batch_schedule: tuple[int, int, int] | None = None,
        thread_invariant: bool = False,
    ):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
        if not objectives:
            raise ValueError("a problem needs at least one objective")
        self.decoder = decoder
        self.objectives = list(objectives)
        self.weights = (
            [1.0] * len(self.objectives) if weights is None else list(map(float, weights))
        )
        if len(self.weights) != len(self.objectives):
            raise ValueError(
                f"{len(self.weights)} weights for {len(self.objectives)} objectives; give one each"
            )
        self.mode = mode
        self.thread_invariant = bool(thread_invariant)
        self.run_seed = int(seed)
        self.generation = 0
        self.columns = self._columns()
        self.eval_columns = EvalColumns(
            n_objectives=self.n_objectives,
            names=tuple(self.columns[:-1]),
            objectives=tuple(o.name for o in self.objectives),
            weights=tuple(self.weights),
        )
        # Main-process record of every batch evaluated since the last `drain()`.
        self._evaluated: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._data_cache: tuple[int, list[Any]] | None = None
        self._workspaces = Workspaces(decoder)
        senses = "min" if mode == "weighted" else ["min"] * len(self.objectives)
        super().__init__(
            senses,
            solution_length=decoder.genome_length(),
            dtype=torch.float32,
            device=device,
            eval_data_length=len(self.columns),
            num_actors=workers if workers else None,
            # Strict numerics on every actor, wherever Ray starts it (evo/numerics.py).
            actor_config={"runtime_env": {"env_vars": actor_env()}} if thread_invariant else None,
            store_solution_stats=False,
        )
        self._init_generator = seeded(self.run_seed, STREAM_INIT)
        if init is not None:
            init = init.detach()[None] if init.dim() == 1 else init.detach()
            if init.dim() != 2 or init.shape[0] < 1 or init.shape[1] != self.solution_length:
                raise ValueError(
                    f"init must be genomes [K, {self.solution_length}] (or one genome "
                    f"[{self.solution_length}]), got {list(init.shape)}"
                )
        # The genomes [K, D] the initial solutions copy in turn (None: each gene
        # block's own distribution).
        self.init = None if init is None else init.to(self.device, torch.float32)
        if batch_schedule is not None:
            first, final, ramp = map(int, batch_schedule)
            if first < 1 or final < 1 or ramp < 1:
                raise ValueError(
                    f"batch_schedule (first, final, ramp) must be integers >= 1, got "
                    f"{tuple(batch_schedule)}"
                )
            batch_schedule = (first, final, ramp)
        self.batch_schedule = batch_schedule

    # --- columns --------------------------------------------------------------
    def _columns(self) -> list[str]:
        """Names of the eval-data columns: objective values, their metrics, the non-finite flag."""
        cols = []
        for obj in self.objectives:
            cols.append(obj.name)
            cols += [f"{obj.name}_{m}" for m in obj.metrics]
        return [*cols, "nonfinite"]

    @property
    def n_objectives(self) -> int:
        return 1 if self.mode == "weighted" else len(self.objectives)

    # --- generation sync -------------------------------------------------------
    def set_generation(self, generation: int) -> None:
        self.generation = int(generation)

    def _make_sync_data_for_actors(self) -> Any:
        return {"generation": self.generation}

    def _use_sync_data_from_main(self, received: Any) -> None:
        self.generation = int(received["generation"])

    def seed(self, seed: int | None = None) -> None:  # type: ignore[override]
        # EvoTorch 0.6.1 actors call `problem.seed()`, which Problem lacks; actors never sample.
        self.manual_seed(seed)

    @property
    def _nonserialized_attribs(self) -> list[str]:
        return ["_evaluated", "_data_cache", "_workspaces", "noise_ahead"]

    def _use_pickle_data_from_main(self, state: dict) -> None:
        self._evaluated, self._data_cache = [], None
        self._workspaces = Workspaces(self.decoder)

    # --- data and scoring -------------------------------------------------------
    def batch_size_at(self, generation: int) -> int | None:
        """The training batch size of `generation` (None: each objective's own).

        With `batch_schedule` (first, final, ramp), generation g draws
        round(first + (final - first) * min(1, g / ramp)) examples: late in a
        search, when the candidates differ little, a larger batch ranks them
        with less noise. A function of the generation alone.
        """
        if self.batch_schedule is None:
            return None
        first, final, ramp = self.batch_schedule
        return round(first + (final - first) * min(1.0, max(generation, 0) / ramp))

    def data(self, generation: int) -> list[Any]:
        """The training batch of every objective for `generation` (cached for one generation)."""
        if self._data_cache is None or self._data_cache[0] != generation:
            size = self.batch_size_at(generation)
            sized = {} if size is None else {"batch_size": size}
            batches = [
                obj.batch(
                    seeded(self.run_seed, STREAM_DATA, generation, k, device=self.device), **sized
                )
                for k, obj in enumerate(self.objectives)
            ]
            self._data_cache = (generation, batches)
        return self._data_cache[1]

    def score(
        self,
        population: torch.Tensor,
        generation: int,
        *,
        exact: bool = True,
        data: list[Any] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Raw objective values and metrics {column: [P]} of a population; differentiable.

        It is scored on generation `generation`'s batch, or on `data` (a batch
        per objective) where given.

        With `exact`, the population is scored in chunks of exactly `EVAL_CHUNK`
        genomes (the last one padded with copies), each in contiguous memory
        aligned to 64 bytes (a chunk that is not already is copied to fresh
        memory, which is) and decoded into one reused workspace (evo/workspaces.py):
        CPU kernels pick their code path by shape and by alignment, so without
        this a genome's fitness could change in the last bits with the size of
        the piece of the population it is scored in (serial versus a Ray actor).
        A population whose phenotypes fit in `workspaces.AHEAD_MEMORY` has all its chunks
        decoded in one pass, chunk by chunk in the same bits
        (`Workspaces.decode_ahead`), before their forward passes.
        """
        data = self.data(generation) if data is None else data
        population = population.to(self.device)
        p = population.shape[0]
        step = EVAL_CHUNK if exact else p
        ahead = self._workspaces.decode_ahead(population, step) if exact and p > step else None
        # Per objective: its values chunk by chunk or, over several chunks where it
        # scores outputs (contiguous ones: the layout scored stays that of a chunk),
        # every chunk's outputs gathered into one buffer and scored at once. One
        # buffer, as small tensors kept from chunk to chunk would pin the heap
        # between the chunks' large temporaries (4,096 faces networks: +240 MB).
        scored: list[list[dict[str, torch.Tensor]]] = [[] for _ in self.objectives]
        gathered: list[torch.Tensor | None] = [None] * len(self.objectives)
        for start in range(0, p, step):
            n = min(step, p - start)
            if ahead is not None:
                phenotype = ahead.select(slice(start, start + step))
            else:
                part = chunk(population, start, step) if exact else population
                phenotype = self._workspaces.decode(part)
            for k, (obj, batch) in enumerate(zip(self.objectives, data, strict=True)):
                out = obj.outputs(phenotype, batch)
                if start == 0 and p > step and out is not None and out.is_contiguous():
                    gathered[k] = out.new_empty((p, *out.shape[1:]))
                if gathered[k] is not None:
                    gathered[k][start : start + n] = out[:n]
                    continue
                values = (
                    obj.evaluate(phenotype, batch) if out is None else obj.score_outputs(out, batch)
                )
                scored[k].append({m: v[:n] for m, v in values.items()})
        result: dict[str, torch.Tensor] = {}
        for obj, batch, pieces, outs in zip(self.objectives, data, scored, gathered, strict=True):
            if outs is not None:
                values = obj.score_outputs(outs, batch)
            elif len(pieces) == 1:
                values = pieces[0]
            else:
                values = {m: torch.cat([q[m] for q in pieces]) for m in pieces[0]}
            result[obj.name] = values.pop(obj.name)
            result.update({f"{obj.name}_{m}": v for m, v in values.items()})
        return result

    def loss(self, scores: dict[str, torch.Tensor]) -> torch.Tensor:
        """The weighted sum [P] of the objective values (minimised)."""
        total = 0.0
        for obj, w in zip(self.objectives, self.weights, strict=True):
            sign = 1.0 if obj.sense == "min" else -1.0
            total = total + (sign * w) * scores[obj.name]
        return total

    def fitness(self, scores: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Fitness [P, n_objectives] with non-finite values set to WORST, and eval data [P, C]."""
        p = next(iter(scores.values())).shape[0]
        bad = torch.zeros(p, dtype=torch.bool, device=self.device)
        values = []
        for obj in self.objectives:
            v = scores[obj.name].detach().to(self.device, torch.float32)
            bad |= ~torch.isfinite(v)
            sign = 1.0 if obj.sense == "min" else -1.0
            values.append(sign * v)
        if self.mode == "weighted":
            fit = self.loss({o.name: s for o, s in zip(self.objectives, values, strict=True)})
            fit = fit[:, None]
        else:
            fit = torch.stack(values, dim=1)
        bad |= ~torch.isfinite(fit).all(dim=1)
        fit = torch.where(bad[:, None], torch.full_like(fit, WORST), fit)
        data = [scores[c].detach().to(self.device, torch.float32) for c in self.eval_columns.names]
        data.append(bad.to(torch.float32))
        return fit, torch.stack(data, dim=1)

    def close(self) -> None:
        """Kill this problem's Ray actors and stop drawing noise ahead."""
        try:
            super().close()
        finally:
            if self.noise_ahead is not None:
                self.noise_ahead.close()

    # --- EvoTorch hooks ---------------------------------------------------------------
    def _fill(self, values: torch.Tensor) -> None:
        # Initial genomes: copies of the `init` genomes in turn, else from each
        # gene block's own distribution (not a uniform box). A searcher's first
        # center is one of them.
        if self.init is not None:
            k = torch.arange(values.shape[0], device=self.init.device) % self.init.shape[0]
            values[:] = self.init[k].to(values.device, values.dtype)
            return
        init = self.decoder.init(values.shape[0], self._init_generator, values.dtype)
        values[:] = init.to(values.device)

    @torch.no_grad()
    def _evaluate_batch(self, batch: SolutionBatch) -> None:
        # A plain view: the read-only wrapper slows every torch op on it.
        population = batch.values.as_subclass(torch.Tensor)
        fit, data = self.fitness(self.score(population, self.generation))
        batch.set_evals(fit, data)

    def _evaluate_all(self, batch: SolutionBatch) -> None:
        if self.actors:
            # Pieces of whole chunks, one or more per actor (see `score`).
            per_actor = math.ceil(len(batch) / (EVAL_CHUNK * len(self.actors)))
            self._subbatch_size, self._num_subbatches = EVAL_CHUNK * per_actor, None
            self._on_actors(lambda: Problem._evaluate_all(self, batch))
        else:
            super()._evaluate_all(batch)
        if self.is_main:
            # Views, not copies (a population of 64 direct genomes is 5 MB a generation):
            # a searcher samples its next population after the caller has read this one.
            values = batch.values.as_subclass(torch.Tensor)
            self._evaluated.append((values, batch.evals.as_subclass(torch.Tensor)))

    def drain(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Genomes [N, D] and evals [N, n_objectives + C] evaluated since the last drain.

        They may share memory with the searcher's population: read them before
        its next step (`EvoEngine.step` drains, the loop reads, then steps), or
        copy them.
        """
        done, self._evaluated = self._evaluated, []
        if not done:
            return torch.empty(0, self.solution_length), self.eval_columns.empty()
        if len(done) == 1:  # one evaluation a step, as a rule: no second copy
            return done[0][0].cpu(), done[0][1].cpu()
        return torch.cat([v for v, _ in done]).cpu(), torch.cat([e for _, e in done]).cpu()


__all__ = [
    "ACTOR_RETRIES",
    "EVAL_CHUNK",
    "MODES",
    "STREAM_ARCHIVE",
    "STREAM_DATA",
    "STREAM_INIT",
    "STREAM_SEARCH",
    "WORST",
    "ActorsLost",
    "GenomeProblem",
    "connect_ray",
    "keep_ray_local",
]
