"""The faster separable Gaussians sample and update exactly as EvoTorch's do; the
noise drawn ahead is taken only when it is what the step would draw; a population
scored from its outputs all at once scores as chunk by chunk."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
import torch
from conftest import TINY, changed, run_metrics
from evotorch.distributions import ExpSeparableGaussian

from evo import build, config
from evo.driver import new_run
from evo.problem import EVAL_CHUNK
from evo.search import sampling
from evo.search.sampling import FASTER, NoiseAhead
from genome.native import noise as native_noise

SEED = 1234


@pytest.fixture(autouse=True)
def _a_core_to_spare(monkeypatch):
    """Draw ahead whatever the machine's cores (`spare_core` has its own test)."""
    monkeypatch.setattr(sampling, "spare_core", lambda: True)


def _resolved(raw: dict[str, Any]) -> dict[str, Any]:
    return config.resolve(config.validate(raw, "test"), "test")


def _distribution(cls: type, length: int, generator: torch.Generator) -> Any:
    params = {
        "mu": torch.randn(length, generator=generator),
        "sigma": torch.rand(length, generator=generator) + 0.1,
    }
    if "divide_mu_grad_by" in cls.OPTIONAL_PARAMETERS:
        params.update(divide_mu_grad_by="num_directions", divide_sigma_grad_by="num_directions")
    return cls(params)


class _Problem:
    """What a distribution's sampling reads of the problem: its generator and generation."""

    def __init__(self, ahead: NoiseAhead | None):
        self.generator = torch.Generator()
        self.generation = 0
        self.noise_ahead = ahead


@pytest.mark.parametrize("evotorch_cls", list(FASTER), ids=lambda c: c.__name__)
@pytest.mark.parametrize("shape", [(8, 37), (64, 1003), (6, 5)])
def test_noise_drawn_ahead_samples_as_evotorch(evotorch_cls, shape):
    faster = FASTER[evotorch_cls]
    g = torch.Generator().manual_seed(0)
    dist = _distribution(evotorch_cls, shape[1], g)
    fast = faster(dict(dist.parameters))
    ahead = NoiseAhead(lambda generation: SEED + generation)
    problem = _Problem(ahead)
    reference = _Problem(None)
    hits = 0
    for generation in range(3):
        for p in (problem, reference):
            p.generator.manual_seed(SEED + generation)
            p.generation = generation
        expected = torch.empty(shape)
        dist._fill(expected, generator=reference)
        expected_after = torch.randn(5, generator=reference.generator)
        got = torch.empty(shape)
        if ahead._pending is not None:  # as if a core were free: the draw is done
            ahead._pending.done.result()
            hits += 1
        fast._fill(got, generator=problem)
        # The same numbers, and the generator left where EvoTorch's draw leaves it.
        assert torch.equal(got, expected)
        assert torch.equal(torch.randn(5, generator=problem.generator), expected_after)
    assert hits == 2  # every generation after the first took the noise drawn ahead
    ahead.close()


def test_noise_is_not_taken_where_it_is_not_what_the_step_would_draw():
    ahead = NoiseAhead(lambda generation: SEED + generation)
    out = torch.empty(8, 16)
    generator = torch.Generator()

    def drawn(**changes: Any) -> torch.Tensor | None:
        ahead.draw(1, torch.empty(8, 16), symmetric=False)
        ahead._pending.done.result()
        generator.manual_seed(changes.get("seed", SEED + 1))
        if changes.get("draw_first"):
            torch.rand(1, generator=generator)
        state = generator.get_state()
        got = ahead.take(changes.get("out", out), generator, changes.get("symmetric", False))
        if got is None:  # the generator is left untouched
            assert torch.equal(generator.get_state(), state)
        return got

    assert drawn() is not None
    assert drawn(seed=SEED + 2) is None  # another generation's seed
    assert drawn(draw_first=True) is None  # something drew before the sample
    assert drawn(out=torch.empty(4, 16)) is None
    assert drawn(out=torch.empty(16, 8).T) is None  # not contiguous
    assert drawn(symmetric=True) is None
    assert ahead.take(out, generator, False) is None  # nothing drawn ahead
    ahead.close()


def test_a_draw_that_no_core_started_is_cancelled_and_drawn_in_the_step():
    ahead = NoiseAhead(lambda generation: SEED + generation)
    ahead.draw(1, torch.empty(8, 16), symmetric=False)  # starts the thread
    ahead._pending.done.result()
    busy = threading.Event()
    try:
        ahead._pool.submit(busy.wait)  # the thread is held: the next draw waits in the queue
        ahead.draw(1, torch.empty(8, 16), symmetric=False)
        generator = torch.Generator().manual_seed(SEED + 1)
        assert ahead.take(torch.empty(8, 16), generator, False) is None
        assert ahead._pending is None
        fresh = torch.Generator().manual_seed(SEED + 1)
        assert torch.equal(generator.get_state(), fresh.get_state())
    finally:
        busy.set()
        ahead.close()


def test_a_draw_that_failed_leaves_the_step_its_own(monkeypatch):
    ahead = NoiseAhead(lambda generation: SEED + generation)
    monkeypatch.setattr(sampling, "_standard_normal", lambda *args: 1 / 0)
    ahead.draw(1, torch.empty(8, 16), symmetric=False)
    ahead._pending.done.exception()
    monkeypatch.undo()
    generator = torch.Generator().manual_seed(SEED + 1)
    assert ahead.take(torch.empty(8, 16), generator, False) is None
    ahead.close()


@pytest.mark.parametrize("ranking", ["nes", "centered"])
@pytest.mark.parametrize("shape", [(64, 2007), (5, 3), (8, 40000)])
def test_snes_gradients_equal_evotorchs(shape, ranking):
    g = torch.Generator().manual_seed(shape[1])
    dist = _distribution(ExpSeparableGaussian, shape[1], g)
    fast = FASTER[ExpSeparableGaussian](dict(dist.parameters))
    samples = dist.mu + dist.sigma * torch.randn(shape, generator=g) * 3
    weights = torch.randn(shape[0], generator=g)
    want = dist._compute_gradients(samples, weights, ranking)
    got = fast._compute_gradients(samples, weights, ranking)
    assert set(got) == {"mu", "sigma"}
    for k in got:
        assert torch.equal(got[k], want[k]), k


def test_snes_gradient_buffers_pass_from_update_to_update_and_follow_the_size():
    g = torch.Generator().manual_seed(0)
    dist = _distribution(ExpSeparableGaussian, 50, g)
    fast = FASTER[ExpSeparableGaussian](dict(dist.parameters))
    buffers = None
    for popsize in (8, 8, 12, 8):
        samples = dist.mu + dist.sigma * torch.randn(popsize, 50, generator=g)
        weights = torch.randn(popsize, generator=g)
        want = dist._compute_gradients(samples, weights, "nes")
        got = fast._compute_gradients(samples, weights, "nes")
        assert all(torch.equal(got[k], want[k]) for k in ("mu", "sigma"))
        assert buffers is None or fast._gradient_buffers is buffers
        buffers = fast._gradient_buffers
        assert [key[0] for key in buffers] == [(popsize, 50)]  # one size at a time
        step = torch.full_like(dist.mu, 0.01)
        dist, fast = dist.modified_copy(mu=dist.mu + step), fast.modified_copy(mu=fast.mu + step)
        assert type(fast) is FASTER[ExpSeparableGaussian]


def _evotorchs_own_path(monkeypatch) -> None:
    """EvoTorch's distributions, and every objective scored chunk by chunk."""
    from evo.objectives.base import Objective
    from evo.search import distribution

    monkeypatch.setattr(distribution, "use_faster_distribution", lambda searcher: None)
    for cls in Objective.__subclasses__():
        if cls.outputs is not Objective.outputs:
            forward, score = cls.outputs, cls.score_outputs
            monkeypatch.setattr(
                cls, "evaluate", lambda s, ph, b, f=forward, g=score: g(s, f(s, ph, b), b)
            )
            monkeypatch.setattr(cls, "outputs", Objective.outputs)


@pytest.mark.parametrize("ahead", [True, False], ids=["drawn-ahead", "drawn-in-the-step"])
@pytest.mark.parametrize("name", ["snes", "cem", "pgpe"])
def test_a_run_is_the_run_evotorchs_own_path_gives(tmp_path, monkeypatch, name, ahead):
    # Population 24: two chunks, the second padded, so outputs are gathered.
    raw = changed(TINY, generations=4, algorithm__name=name, algorithm__population_size=24)
    cfg = _resolved(raw)
    taken, native = [], []
    take, draw, native_normal = NoiseAhead.take, NoiseAhead.draw, native_noise.normal_

    def counted(self, *args):
        got = take(self, *args)
        taken.append(got is not None)
        return got

    def finished(self, *args):  # as if a core were free: every draw is done by the step
        draw(self, *args)
        if self._pending is not None:
            self._pending.done.result()

    def native_counted(out, generator, threads=None, **kwargs):
        drawn = native_normal(out, generator, threads, **kwargs)
        native.append((threads, drawn))
        return drawn

    with monkeypatch.context() as m:
        m.setattr(NoiseAhead, "take", counted)
        m.setattr(NoiseAhead, "draw", finished)
        m.setattr(native_noise, "normal_", native_counted)
        m.setattr(sampling, "spare_core", lambda: ahead)
        faster = new_run(cfg, tmp_path / "faster", progress=False)
    # Every sample but the first is drawn ahead (one thread) where a core is free;
    # the rest are drawn by the native kernel in the step, except PGPE's
    # antithetic half-population (its even rows: no contiguous block for the kernel).
    assert taken == ([False, True, True, True] if ahead else [False] * 4)
    in_step = [drawn for threads, drawn in native if threads is None]
    assert in_step == ([] if name == "pgpe" else [True] * (1 if ahead else 4))
    background = [drawn for threads, drawn in native if threads == 1]
    # (PGPE's draws ahead go to torch without asking the kernel.)
    assert background == ([True] * 4 if ahead and name != "pgpe" else [])
    _evotorchs_own_path(monkeypatch)
    own = new_run(cfg, tmp_path / "own", progress=False)
    assert run_metrics(faster.run_dir) == run_metrics(own.run_dir)
    assert torch.equal(faster.best_genome, own.best_genome)


def test_the_searchers_sample_with_the_faster_distributions():
    for name, cls in (("snes", "FastExpSeparableGaussian"), ("pgpe", "FastSymmetric")):
        cfg = _resolved(changed(TINY, algorithm__name=name))
        engine = build.make_engine(build.build_problem(cfg), cfg)
        assert type(engine.searcher._distribution).__name__.startswith(cls)
        assert isinstance(engine.problem.noise_ahead, NoiseAhead)
        engine.problem.close()


def test_the_kernel_is_chosen_on_the_thread_that_draws_ahead_not_on_the_background(monkeypatch):
    # Choosing it checks its OpenMP runtime by changing torch's thread count for a moment.
    native_noise.reset()
    chosen_on = []
    library = native_noise._library

    def recorded(dtype):
        misses = library.cache_info().misses
        got = library(dtype)
        if library.cache_info().misses > misses:
            chosen_on.append(threading.current_thread())
        return got

    with monkeypatch.context() as m:
        m.setattr(native_noise, "_library", recorded)
        ahead = NoiseAhead(lambda generation: generation)
        ahead.draw(1, torch.empty(4, 100), symmetric=False)
        assert ahead._pending.done.result() is None
        ahead.close()
    native_noise.reset()
    assert chosen_on == [threading.main_thread()]


def test_populations_too_large_to_double_are_drawn_in_the_step(monkeypatch):
    monkeypatch.setattr(sampling, "MAX_AHEAD_BYTES", 1000)
    ahead = NoiseAhead(lambda generation: generation)
    ahead.draw(1, torch.empty(16, 16), symmetric=False)  # 1,024 bytes
    assert ahead._pending is None
    ahead.draw(1, torch.empty(15, 16), symmetric=False)
    assert ahead._pending is not None
    ahead.close()


@pytest.mark.parametrize("objective", ["faces", "digits"])
@pytest.mark.parametrize("hidden", [[16], []])  # two layers; one (its outputs a strided view)
def test_scoring_outputs_at_once_equals_scoring_chunk_by_chunk(objective, hidden):
    # An odd batch, and 37 x 999 numbers a loss: past torch's 32,768 for going parallel.
    raw = changed(TINY, task__objectives=[objective], layout__hidden=hidden, batch_size=999)
    problem = build.build_problem(_resolved(raw))
    (obj,) = problem.objectives
    (batch,) = problem.data(3)
    g = torch.Generator().manual_seed(3)
    population = problem.decoder.init(2 * EVAL_CHUNK + 5, g, torch.float32)
    pieces = []
    for start in range(0, len(population), EVAL_CHUNK):
        part = population[start : start + EVAL_CHUNK]
        chunk = torch.cat([part, part[:1].expand(EVAL_CHUNK - len(part), -1)])
        values = obj.evaluate(problem.decoder.decode(chunk), batch)
        pieces.append({k: v[: len(part)] for k, v in values.items()})
    by_chunk = {k: torch.cat([q[k] for q in pieces]) for k in pieces[0]}
    columns = [objective, *(f"{objective}_{m}" for m in obj.metrics)]
    # The whole population, and pieces of it as a Ray actor or a champion gets them.
    for first, size in ((0, len(population)), (0, 1), (16, 7), (5, 20)):
        got = problem.score(population[first : first + size], 3)
        assert list(got) == columns
        for column, name in zip(columns, [objective, *obj.metrics], strict=True):
            want = by_chunk[name][first : first + size]
            assert torch.equal(got[column], want), (first, size, column)


def test_noise_is_drawn_ahead_only_with_a_core_to_spare(monkeypatch):
    ahead = NoiseAhead(lambda generation: generation)
    monkeypatch.setattr(sampling, "spare_core", lambda: False)
    ahead.draw(1, torch.empty(4, 16), symmetric=False)
    assert ahead._pending is None
    ahead.close()
    monkeypatch.undo()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert sampling.spare_core() == (len(os.sched_getaffinity(0)) > 1)
        torch.set_num_threads(len(os.sched_getaffinity(0)))
        assert not sampling.spare_core()
    finally:
        torch.set_num_threads(threads)


def test_a_forked_child_forgets_the_thread_and_its_draw():
    ahead = NoiseAhead(lambda generation: generation)
    ahead.draw(1, torch.empty(4, 16), symmetric=False)
    ahead._pending.done.result()
    pool = ahead._pool
    sampling._forget_threads()  # what os.register_at_fork runs in the child
    assert ahead._pool is None and ahead._pending is None
    ahead.draw(2, torch.empty(4, 16), symmetric=False)  # a thread of its own
    assert ahead._pool is not pool
    ahead.close()
    pool.shutdown()
