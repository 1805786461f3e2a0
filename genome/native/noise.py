"""Standard normal noise, bit for bit what torch's CPU `normal_` draws, faster.

Evolution strategies fill a population with standard normal noise every
generation: for 64 genomes of 20,000 genes, 1.3 million numbers, a third of a
direct-encoding generation with torch's `normal_`, which makes one virtual
call to its Mersenne Twister per number and transforms on one thread.
`normal_(out, generator)` draws the same numbers with the kernel of
`noise.cpp` (the twister on its whole state at once, the Box-Muller transform
on torch's threads) and leaves `generator` in the state torch's draw leaves
it in, so a run that samples with it is the run that samples with torch.
For float32, 3 to 6 times faster (bench/noise.py); for float64, whose
transform is the C library's scalar functions in torch too, as fast on one
thread and twice as fast on two.

torch's transform rounds as its build does (8-lane AVX2 math where torch
dispatches at AVX2 or AVX-512, the C library's scalar functions otherwise).
The variant built for the machine (`build.noise_variants`) is used only once
it has drawn exactly what torch draws, numbers and generator state, for two
seeds and sizes with and without a tail of 16; if none does, or none can be
built, `normal_` declines and the caller draws with torch (with one warning).
It applies to contiguous CPU float32 and float64 tensors of 16 or more
elements, where torch takes its block path; `INNATE_KERNELS=torch` turns it
off and `INNATE_KERNELS=native` makes a failed build an error.
"""

from __future__ import annotations

import ctypes
import functools

import torch

import genome.native as native
from genome.native import build
from genome.native.build import build_noise_library, noise_variants

_FUNCTIONS = {torch.float32: "innate_normal_float", torch.float64: "innate_normal_double"}
# Shapes of the draws checked against torch, in turn from one generator, each
# drawn alone and then scaled and shifted by row: with and without a tail of 16,
# within one twist of the state and across several, one chunk of the kernel and
# several, rows that do and do not divide a chunk.
CHECK_SHAPES = ((1, 16), (1, 17), (7, 89), (8, 125), (13, 5041), (64, 2048))
CHECK_SEEDS = (0, 2**40 + 3)
# Elements below which a draw's transform stays on one thread.
_MIN_PER_THREAD = 32_768


def normal_(
    out: torch.Tensor,
    generator: torch.Generator,
    threads: int | None = None,
    *,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
) -> bool:
    """Fill `out` as `out.normal_(generator=generator)` would, and advance `generator` as it would.

    With `scale` and `shift` (vectors of out's last dimension), `out` is then
    `out *= scale; out += shift`, rounded as torch rounds those, in the same
    pass. False where this path does not apply (`out` and `generator` are
    then untouched): another device or dtype, a non-contiguous tensor or one
    of fewer than 16 elements, a scale or shift that is not such a vector, a
    kernel that does not match torch here, or INNATE_KERNELS=torch. It runs on
    up to `threads` threads (default: torch's thread count); the numbers do
    not depend on it.
    """
    if (
        out.dtype not in _FUNCTIONS
        or out.device.type != "cpu"
        or generator.device.type != "cpu"
        or out.numel() < 16
        or not out.is_contiguous()
        or (out.requires_grad and torch.is_grad_enabled())
        or not _fits(out, scale, shift)
        or native.mode() == "torch"
    ):
        return False
    lib = _library(out.dtype)
    return lib is not None and _draw(lib, out, generator, threads, scale, shift)


def available(dtype: torch.dtype) -> bool:
    """Whether the kernel draws CPU tensors of `dtype` here (built and checked on first call).

    Call it on the main thread before drawing on another: the first call
    checks the library against torch, and the check of its OpenMP runtime
    changes torch's thread count for a moment.
    """
    return dtype in _FUNCTIONS and native.mode() != "torch" and _library(dtype) is not None


def _fits(out: torch.Tensor, scale: torch.Tensor | None, shift: torch.Tensor | None) -> bool:
    if scale is None and shift is None:
        return True
    return all(
        isinstance(v, torch.Tensor)
        and v.dim() == 1
        and v.numel() == out.shape[-1]
        and v.is_contiguous()
        and v.dtype == out.dtype
        and v.device == out.device
        for v in (scale, shift)
    )


def _draw(
    lib: ctypes.CDLL,
    out: torch.Tensor,
    generator: torch.Generator,
    threads: int | None = None,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
) -> bool:
    state = generator.get_state()  # a copy, written in place by the kernel
    n = out.numel()
    most = torch.get_num_threads() if threads is None else threads
    threads = max(1, min(most, n // _MIN_PER_THREAD)) if lib.openmp else 1
    fill = getattr(lib, _FUNCTIONS[out.dtype])
    affine = (
        (None, None, 0) if scale is None else (scale.data_ptr(), shift.data_ptr(), scale.numel())
    )
    if fill(threads, out.data_ptr(), n, state.data_ptr(), state.numel(), *affine) != 0:
        return False  # a state torch would not draw from: torch's own draw says why
    generator.set_state(state)
    return True


@functools.cache
def _library(dtype: torch.dtype) -> ctypes.CDLL | None:
    """The first variant of the kernel that draws exactly as torch does here, or None."""
    errors, built = [], False
    for variant in noise_variants():
        lib = build_noise_library(variant)
        if isinstance(lib, str):
            errors.append(f"{variant}: {lib}")
            continue
        built = True
        if agrees(lib, dtype):
            return lib
        errors.append(f"{variant}: draws other numbers than torch's normal_")
    reason = "; ".join(errors)
    if not built and native.mode() == "native":
        raise native.NativeUnavailable(f"cannot build the native noise kernel: {reason}")
    native.warn_once(
        "noise",
        f"innate: native noise kernel unavailable, sampling with torch's normal_ ({reason})",
    )
    return None


def agrees(lib: ctypes.CDLL, dtype: torch.dtype) -> bool:
    """Whether the library draws what torch does (numbers and generator state), scaled or not."""
    bits = torch.int32 if dtype == torch.float32 else torch.int64
    for seed in CHECK_SEEDS:
        theirs = torch.Generator().manual_seed(seed)
        ours = torch.Generator().manual_seed(seed)
        values = torch.Generator().manual_seed(seed + 1)
        for shape in CHECK_SHAPES:
            for scaled in (False, True):
                scale = torch.rand(shape[1], generator=values, dtype=dtype) * 4
                shift = torch.randn(shape[1], generator=values, dtype=dtype)
                expected = torch.empty(shape, dtype=dtype).normal_(generator=theirs)
                got = torch.empty(shape, dtype=dtype)
                if scaled:
                    expected *= scale
                    expected += shift
                    drawn = _draw(lib, got, ours, None, scale, shift)
                else:
                    drawn = _draw(lib, got, ours)
                if not drawn or not torch.equal(got.view(bits), expected.view(bits)):
                    return False
                if not torch.equal(ours.get_state(), theirs.get_state()):
                    return False
    return True


def reset() -> None:
    """Forget the libraries chosen, and the warning given (tests that change the build or cache)."""
    _library.cache_clear()
    build.build_noise_library.cache_clear()
    native._warned.discard("noise")
