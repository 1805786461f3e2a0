"""The Ray actors of a problem: started before the first step, replaced when lost.

`RayActors` is mixed into `GenomeProblem` (evo/problem.py) ahead of EvoTorch's
`Problem`, which owns the actors (`num_actors`, `_parallelize`, `kill_actors`;
Toklu et al., "EvoTorch: Scalable Evolutionary Computation in Python", 2023).
It adds what a long run on a cluster needs: actors created outside any step,
so that their seeds never shift a step's random stream; a generation whose
actor was lost evaluated again on fresh actors; and, for a thread-invariant
run (evo/numerics.py), each actor's numerics confirmed before it scores.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from evotorch import Problem

from evo.numerics import ThreadInvarianceError, mkl_mode

# Times a generation's evaluation is retried on fresh actors after Ray loses one.
ACTOR_RETRIES = 3


class ActorsLost(RuntimeError):
    """Ray actors kept dying: the evaluation was retried ACTOR_RETRIES times on fresh ones."""


class RayActors:
    """Actor lifecycle for a `Problem` subclass with `objectives`, `generation` and
    `thread_invariant` attributes."""

    def start_actors(self) -> None:
        """Create the Ray actors now (EvoTorch would on the first evaluation).

        Creating them draws actor seeds from the problem's generator; done inside
        a step, that draw would shift the step's random stream, so a run on Ray
        would differ from the serial one. A thread-invariant run then checks
        every actor's numerics, starting them all again if any is lost meanwhile.
        """
        if not self._num_actors or self.actors is not None:
            return
        for obj in self.objectives:
            obj.prepare()
        for attempt in range(ACTOR_RETRIES + 1):
            with torch.random.fork_rng(devices=[]):
                self._parallelize()
            if not self.thread_invariant:
                return
            from ray.exceptions import ActorUnavailableError, RayActorError

            try:
                return self._check_actor_numerics()
            except (RayActorError, ActorUnavailableError) as e:  # lost as they started
                self.close()
                if attempt == ACTOR_RETRIES:
                    raise ActorsLost(
                        f"Ray actors were lost {ACTOR_RETRIES + 1} times as they started "
                        f"(last: {type(e).__name__}); the run stops here and its last "
                        "checkpoint stands: resume it with --resume when the cluster is healthy"
                    ) from None

    def numerics_mode(self) -> str | None:
        """MKL's reproducibility mode in the process this runs in (called on each actor)."""
        return mkl_mode()

    def _check_actor_numerics(self) -> None:
        import ray

        modes = ray.get([a.call.remote("numerics_mode", [], {}) for a in self.actors])
        bad = [(i, m) for i, m in enumerate(modes) if m is None or not m.upper().endswith("STRICT")]
        if bad:
            self.close()
            i, m = bad[0]
            raise ThreadInvarianceError(
                f"thread_invariant = true: Ray actor {i} of {len(modes)} runs MKL in mode "
                f"{m or 'unknown (no MKL in its torch)'}, not strict; its node needs a torch with "
                "Intel MKL, or set thread_invariant = false"
            )

    def _sync_before(self) -> bool:
        if not self.actors:
            return super()._sync_before()
        return self._on_actors(lambda: Problem._sync_before(self))

    def _on_actors(self, work: Any) -> Any:
        """`work()`, which uses the actors; when Ray loses one (a worker killed, a node
        gone), all are replaced by fresh ones, told the generation, and `work` runs
        again from the start. A generation's evaluation is a pure function of the
        genomes and the generation, so the run's result is the same as if nothing
        had been lost. After ACTOR_RETRIES replacements it raises `ActorsLost`."""
        from ray.exceptions import ActorUnavailableError, RayActorError

        for attempt in range(ACTOR_RETRIES + 1):
            try:
                if attempt:  # fresh actors: tell them the generation first
                    Problem._sync_before(self)
                return work()
            except (RayActorError, ActorUnavailableError) as e:
                if attempt == ACTOR_RETRIES:
                    raise ActorsLost(
                        f"Ray actors were lost {ACTOR_RETRIES + 1} times in generation "
                        f"{self.generation} (last: {type(e).__name__}); the run stops here "
                        "and its last checkpoint stands: resume it with --resume when the "
                        "cluster is healthy"
                    ) from None
                logging.getLogger("innate").warning(
                    "generation %d: a Ray actor was lost (%s); evaluating again on fresh actors",
                    self.generation,
                    type(e).__name__,
                )
                self.close()
                self.start_actors()
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Kill this problem's Ray actors (the cluster itself is left running)."""
        if self.actors:
            self.kill_actors()
            self._actors = None
