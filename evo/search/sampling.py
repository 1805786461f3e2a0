"""EvoTorch's separable Gaussians, sampled and updated bit for bit as EvoTorch does, faster.

SNES (Schaul, Glasmachers and Schmidhuber, GECCO 2011), CEM and PGPE sample
a population by filling it with standard normal noise from the problem's
generator, then scaling and shifting it by the distribution's std and mean.
The noise depends only on the generator, not on the distribution, so the
noise of generation g + 1 is drawn on a background thread (`NoiseAhead`)
while generation g is scored: drawing it is a third of a direct-encoding
generation on the CPU (1.3 million numbers for 64 genomes of 20,000 genes).
It is drawn ahead only where torch's threads leave the process a core
(`spare_core`), where it costs the step only the wait for a draw not yet
finished; a draw that has not started by the step is cancelled and the step
draws as EvoTorch does.

The noise is drawn from a generator seeded exactly as the step will seed the
problem's; the step takes it only if the problem's generator is then in the
very state the drawing started from, and leaves that generator where the
draw would have left it, so every later draw, and the run, is unchanged.
Otherwise (the first generation, a resume, anything else drawn first) the
step draws as EvoTorch does.

SNES's gradient is EvoTorch's arithmetic in two population-sized buffers
instead of six (`_snes_gradients`). Tests hold each part, and whole runs, to
EvoTorch's own results, bit for bit.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from evotorch.distributions import (
    ExpSeparableGaussian,
    SeparableGaussian,
    SymmetricSeparableGaussian,
)

from genome.native import noise as native_noise

# Noise for populations larger than this is drawn in the step, as EvoTorch does:
# drawing ahead keeps a second buffer of the population's size.
MAX_AHEAD_BYTES = 256 * 2**20


@dataclass
class _Pending:
    start: torch.Tensor  # the generator's state the draw starts from
    generator: torch.Generator  # where the draw leaves it, once done
    buffer: torch.Tensor
    symmetric: bool
    done: Future


class NoiseAhead:
    """Standard normal noise for a generation's sample, drawn ahead on one background thread.

    `seed_of(g)` is the seed the step of generation g gives the problem's
    generator. `draw(g, like, symmetric)` starts drawing generation g's noise
    for a population shaped like `like`; `take(out, generator, symmetric)`
    gives it, or None where it would not be exactly what `generator` draws.
    """

    def __init__(self, seed_of: Callable[[int], int]):
        self.seed_of = seed_of
        self._pool: ThreadPoolExecutor | None = None
        self._pending: _Pending | None = None
        self._buffer: torch.Tensor | None = None

    def draw(self, generation: int, like: torch.Tensor, symmetric: bool) -> None:
        """Start drawing generation `generation`'s noise (CPU populations, a core to spare)."""
        self.discard()
        if like.device.type != "cpu" or like.numel() * like.element_size() > MAX_AHEAD_BYTES:
            return
        if not spare_core():
            return
        if (
            self._buffer is None
            or self._buffer.shape != like.shape
            or self._buffer.dtype != like.dtype
        ):
            self._buffer = torch.empty_like(like, memory_format=torch.contiguous_format)
        generator = torch.Generator().manual_seed(self.seed_of(generation))
        start = generator.get_state()
        # Exactly the tensor EvoTorch fills: the population, or its even rows.
        target = self._buffer[0::2] if symmetric else self._buffer
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="innate-noise")
            _LIVE.add(self)
        # The kernel is built and checked here, on the caller's thread, if at all.
        native = not symmetric and native_noise.available(like.dtype)
        done = self._pool.submit(_standard_normal, target, generator, native)
        self._pending = _Pending(start, generator, self._buffer, symmetric, done)

    def take(
        self, out: torch.Tensor, generator: torch.Generator, symmetric: bool
    ) -> torch.Tensor | None:
        """The noise drawn ahead, if it is what `generator` would draw into `out` now.

        It is where `out.normal_(generator=generator)` (or the even rows' own,
        `symmetric`) would put it, and `generator` is left in the state that
        draw leaves it in; None (and `generator` untouched) otherwise.
        """
        pending, self._pending = self._pending, None
        if pending is None or pending.done.cancel():
            return None  # nothing drawn ahead, or no core was free to start it: draw now
        if pending.done.exception() is not None:
            return None  # the step's own draw meets (and raises) whatever went wrong
        fits = (
            pending.symmetric == symmetric
            and out.is_contiguous()
            and out.shape == pending.buffer.shape
            and out.dtype == pending.buffer.dtype
            and out.device == pending.buffer.device
            and generator.device == pending.buffer.device
            and torch.equal(generator.get_state(), pending.start)
        )
        if not fits:
            return None
        generator.set_state(pending.generator.get_state())
        return pending.buffer

    def discard(self) -> None:
        """Drop the draw ahead: cancelled if not started, else waited for (the buffer is reused)."""
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done.cancel():
            pending.done.exception()

    def close(self) -> None:
        self.discard()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def spare_core() -> bool:
    """Whether torch's threads leave this process a core it may run on.

    Where they take every core, torch's OpenMP threads spin between parallel
    regions, so a thread drawing ahead would take a core from them or wait for
    one (either made generations slower, a Ray actor beside the process too).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return torch.get_num_threads() < cores


# Every NoiseAhead with a thread: a forked child inherits them without their
# threads, so it forgets the thread and any draw under way and starts its own.
_LIVE: weakref.WeakSet[NoiseAhead] = weakref.WeakSet()


def _forget_threads() -> None:
    for ahead in list(_LIVE):
        ahead._pool = ahead._pending = None
    _LIVE.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads)


def _standard_normal(out: torch.Tensor, generator: torch.Generator, native: bool) -> None:
    """`out.normal_(generator=generator)`, with the native kernel on this one thread if `native`."""
    if not (native and native_noise.normal_(out, generator, threads=1)):
        out.normal_(generator=generator)


class _DrawsAhead:
    """The sampling of a separable Gaussian: the noise drawn ahead (`NoiseAhead`) or natively."""

    SYMMETRIC = False

    def _fill(self, out: torch.Tensor, *, generator: Any = None) -> None:
        ahead = getattr(generator, "noise_ahead", None)
        taken = None if ahead is None else ahead.take(out, generator.generator, self.SYMMETRIC)
        if taken is not None:
            self._finish(out, taken)
        elif not self._native(out, getattr(generator, "generator", generator)):
            super()._fill(out, generator=generator)
        if ahead is not None:
            ahead.draw(generator.generation + 1, out, self.SYMMETRIC)

    def _native(self, out: torch.Tensor, generator: Any) -> bool:
        """make_gaussian's draw, scaling and shift in the native kernel, if it applies.

        `generator` is what EvoTorch draws from: a torch generator (a problem's own).
        """
        if self.SYMMETRIC or not isinstance(generator, torch.Generator):
            return False  # torch draws the antithetic half-population's rows another way
        stdev = torch.as_tensor(self.sigma, dtype=out.dtype, device=out.device)
        center = torch.as_tensor(self.mu, dtype=out.dtype, device=out.device)
        return native_noise.normal_(out, generator, scale=stdev, shift=center)

    def _finish(self, out: torch.Tensor, noise: torch.Tensor) -> None:
        # evotorch.tools.make_gaussian after its `normal_`: the same operations in the same order.
        stdev = torch.as_tensor(self.sigma, dtype=out.dtype, device=out.device)
        center = torch.as_tensor(self.mu, dtype=out.dtype, device=out.device)
        if self.SYMMETRIC:
            out[0::2] = noise[0::2]
            out[1::2] = out[0::2]
            out[1::2] *= -1
            out *= stdev
        else:
            torch.mul(noise, stdev, out=out)  # the rounding of `out *= stdev`
        out += center


class FastSeparableGaussian(_DrawsAhead, SeparableGaussian):
    """CEM's distribution (and PGPE's, unsymmetric)."""


class FastSymmetricSeparableGaussian(_DrawsAhead, SymmetricSeparableGaussian):
    """PGPE's distribution: antithetic pairs, the even rows drawn."""

    SYMMETRIC = True


class FastExpSeparableGaussian(_DrawsAhead, ExpSeparableGaussian):
    """SNES's distribution; its gradient in two buffers kept from generation to generation."""

    def _compute_gradients(
        self, samples: torch.Tensor, weights: torch.Tensor, ranking_used: str | None
    ) -> dict:
        if samples.dim() != 2 or weights.dim() != 1:
            return super()._compute_gradients(samples, weights, ranking_used)
        if ranking_used != "nes":
            weights = weights / torch.sum(torch.abs(weights))
        return _snes_gradients(samples, weights, self.mu, self.sigma, self._buffers())

    def _buffers(self) -> dict:
        if "_gradient_buffers" not in self.__dict__:
            self._gradient_buffers = {}
        return self._gradient_buffers

    def modified_copy(self, **kwargs: Any) -> ExpSeparableGaussian:
        # Every update makes a new distribution: it inherits the buffers (never saved:
        # a checkpoint holds the distribution's parameters only).
        new = super().modified_copy(**kwargs)
        new._gradient_buffers = self._buffers()
        return new


def _snes_gradients(
    samples: torch.Tensor,
    weights: torch.Tensor,
    mu: torch.Tensor,
    sigma: torch.Tensor,
    buffers: dict | None = None,
) -> dict[str, torch.Tensor]:
    """EvoTorch's `ExpSeparableGaussian._compute_gradients`, its every rounding kept.

    EvoTorch computes sum_i w_i * (x_i - mu) and sum_i w_i * (((x_i - mu) / sigma)^2 - 1),
    each product row by row and then summed over rows; here in two buffers of
    the population's size, taken from `buffers` (and kept there) where given:
    fresh ones would cost a population's worth of page faults every generation.
    """
    if buffers is None or mu.shape != samples.shape[1:]:
        noise = torch.sub(samples, mu)
        weighted = torch.mul(noise, weights[:, None])
    else:
        # (Not torch.broadcast_shapes: its first call imports sympy, 35 MB.)
        noise_type = torch.promote_types(samples.dtype, mu.dtype)
        dtypes = (noise_type, torch.promote_types(noise_type, weights.dtype))
        key = (samples.shape, dtypes, samples.device)
        if key not in buffers:
            buffers.clear()  # one population size at a time
            buffers[key] = tuple(
                torch.empty(samples.shape, dtype=t, device=samples.device) for t in dtypes
            )
        noise, weighted = buffers[key]
        torch.sub(samples, mu, out=noise)
        torch.mul(noise, weights[:, None], out=weighted)
    mu_grad = torch.sum(weighted, 0)
    noise.div_(sigma)
    noise.mul_(noise)  # the rounding of `** 2`
    noise.sub_(1)
    torch.mul(noise, weights[:, None], out=weighted)
    return {"mu": mu_grad, "sigma": torch.sum(weighted, 0)}


# EvoTorch's distribution classes and the faster ones that replace them.
FASTER = {
    SeparableGaussian: FastSeparableGaussian,
    SymmetricSeparableGaussian: FastSymmetricSeparableGaussian,
    ExpSeparableGaussian: FastExpSeparableGaussian,
}


def use_faster_distribution(searcher: Any) -> None:
    """Swap the searcher's distribution for its faster equal, if it has one.

    Its updates keep the class (EvoTorch's `modified_copy` builds `type(self)`).
    """
    dist = getattr(searcher, "_distribution", None)
    faster = FASTER.get(type(dist))
    if faster is not None:
        searcher._distribution = faster(dist.parameters, dtype=dist.dtype, device=dist.device)
