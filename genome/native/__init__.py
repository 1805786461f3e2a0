"""Native CPU kernels for decoding: a fused per-pair MLP and row standardisation.

The batched torch path of a per-pair MLP (`genome.decoders.pairs.pairs_mlp`)
writes every hidden layer of every neuron pair to memory, and runs each small
[n, h] x [h, h] product as its own GEMM: at the widths a compressed genome
uses (h = 5 to 30) that is memory- and overhead-bound. The kernel in
`pairs.cpp` computes a tile of pairs with all hidden activations in vector
registers, then standardises each finished row while it is still in cache and
writes it once. A g-network layer runs in one call (`gnet_layer`): the
projections of the neuron codes, with weights read straight from the genomes,
then the pairs.

It is compiled on first use and cached (genome/native/build.py). Rows are
split over `torch.get_num_threads()` threads: OpenMP's, where torch runs on
OpenMP (the kernels then share torch's thread pool instead of competing with
its idle, spinning threads for the cores), else a pool of Python threads.
Products and sums are fused multiply-adds, every sum runs in a fixed order
and contraction is otherwise off, so the bits are the same for any thread
count and any x86 or ARM instruction set (they differ from the torch path by
rounding).

`INNATE_KERNELS` chooses the path: ``auto`` (default: native where it applies,
the torch path with one warning if the compiler is missing), ``native``
(required: a missing compiler is an error) or ``torch`` (never native). The
native path applies to CPU tensors of float32 or float64 that autograd does
not track; gradients and GPUs use torch.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

from genome.native.build import ENV, build_library

MODES = ("auto", "native", "torch")
_TYPES = {torch.float32: "float", torch.float64: "double"}
# The widths of the library that serves the width-independent kernels
# (projections, standardisation), which every library holds.
_GENERIC = (8, 8)
# The relative variance floor of standardisation: a row constant up to rounding
# becomes ~zeros, while a genome of any scale standardises.
REL_EPS = 1e-10
_override: str | None = None
# The fallbacks already warned of, by kind ("decode", "noise").
_warned: set[str] = set()


class NativeUnavailable(RuntimeError):
    """The native kernels were required (INNATE_KERNELS=native) but cannot be built."""


def mode() -> str:
    """The kernel mode in force: `use` if set, else $INNATE_KERNELS, else auto."""
    if _override is not None:
        return _override
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{ENV}={value!r} is not a kernel mode; valid modes: {', '.join(MODES)}")
    return value


@contextlib.contextmanager
def use(kernel_mode: str) -> Iterator[None]:
    """Run a block with the given kernel mode (for tests and benchmarks)."""
    global _override
    if kernel_mode not in MODES:
        raise ValueError(f"unknown kernel mode {kernel_mode!r}; valid modes: {', '.join(MODES)}")
    previous, _override = _override, kernel_mode
    try:
        yield
    finally:
        _override = previous


def applies(*tensors: torch.Tensor, widths: tuple[int, ...] = _GENERIC) -> bool:
    """Whether the native path decodes these tensors (mode, device, dtype, autograd).

    `widths` are the per-pair MLP's, whose specialised library must build.
    """
    if mode() == "torch":
        return False
    t = tensors[0]
    if t.device.type != "cpu" or t.dtype not in _TYPES:
        return False
    if torch.is_grad_enabled() and any(x.requires_grad for x in tensors):
        return False
    return _library(_TYPES[t.dtype], tuple(widths)) is not None


def _library(real: str, widths: tuple[int, ...]) -> ctypes.CDLL | None:
    """The kernel library for a float type and MLP widths; None when it cannot be built."""
    lib = build_library(real, widths)
    if isinstance(lib, str):
        if mode() == "native":
            raise NativeUnavailable(f"cannot build the native decode kernels: {lib}")
        warn_once(
            "decode",
            f"innate: native decode kernels unavailable, using the slower torch path ({lib})",
        )
        return None
    return lib


def _required(dtype: torch.dtype, widths: tuple[int, ...] = _GENERIC) -> ctypes.CDLL:
    """The library for a call that has been routed to the native path."""
    lib = _library(_TYPES[dtype], widths)
    if lib is None:
        raise NativeUnavailable("the native decode kernels are unavailable")
    return lib


def warn_once(kind: str, message: str) -> None:
    """A RuntimeWarning, once a process for each kind of fall-back to torch."""
    if kind not in _warned:
        _warned.add(kind)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


@functools.cache
def _pool(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix="innate-native")


# A forked child inherits the pools but not their threads: it makes its own.
os.register_at_fork(after_in_child=_pool.cache_clear)


# Floating-point operations below which a thread is not worth handing work to.
_MIN_WORK_PER_THREAD = 500_000


def _parallel_rows(lib: ctypes.CDLL, rows: int, call, row_flops: int) -> None:
    """call(threads, row0, row1) over `rows` rows, on up to torch's thread count.

    A library built with OpenMP splits the rows itself on OpenMP's threads;
    otherwise each part runs in a Python thread (ctypes drops the GIL).
    """
    n = max(1, min(torch.get_num_threads(), rows * row_flops // _MIN_WORK_PER_THREAD))
    if n == 1 or lib.openmp:
        call(n, 0, rows)
        return
    bounds = [rows * i // n for i in range(n + 1)]
    pool = _pool(n - 1)
    futures = [pool.submit(call, 1, bounds[i], bounds[i + 1]) for i in range(1, n)]
    try:
        call(1, bounds[0], bounds[1])
    finally:
        # Even when interrupted: the threads write into tensors this frame keeps alive.
        for f in futures:
            f.exception()
    for f in futures:
        f.result()


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def padded(n: int, dtype: torch.dtype) -> int:
    """n rounded up to a whole number of 512-bit vectors (the kernel layout's row length): whole
    vectors for every build of the kernels, whose lanes are 256 or 512 bits wide."""
    lanes = 512 // torch.finfo(dtype).bits
    return -(-n // lanes) * lanes


def to_kernel_layout(x: torch.Tensor) -> torch.Tensor:
    """[p, n, h] -> [p, h, n_pad], zero-padded: the layout the pair kernel reads."""
    p, n, h = x.shape
    out = x.new_zeros(p, h, padded(n, x.dtype))
    out[:, :, :n] = x.transpose(1, 2)
    return out


def _check(where: str, name: str, t: torch.Tensor, shape: tuple[int, ...], dtype) -> None:
    """The kernels read raw pointers: every buffer must be exactly what they expect."""
    if (
        t.device.type != "cpu"
        or t.dtype != dtype
        or tuple(t.shape) != shape
        or not t.is_contiguous()
    ):
        raise ValueError(
            f"{where}: {name} must be a contiguous CPU {dtype} tensor of shape {list(shape)}; "
            f"got {t.device.type} {t.dtype} {list(t.shape)}"
            + ("" if t.is_contiguous() else " (not contiguous)")
        )


def _multiplier(where: str, mult: torch.Tensor, p: int, dtype) -> torch.Tensor:
    m = mult.to(dtype).contiguous()
    _check(where, "mult", m, (p,), dtype)
    return m


def codes_layout(codes: torch.Tensor) -> torch.Tensor:
    """Neuron codes [n, d] -> [d, n_pad], zero-padded: what `project` reads (a layout constant)."""
    return to_kernel_layout(codes[None])[0]


def project(
    codes_t: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Codes [d, n_pad] (`codes_layout`) through per-individual weights [p, h, d] (+ bias [p, h]).

    Returns [p, h, n_pad] in kernel layout; each value is one sum in order of
    d, then the bias, as `genome.decoders.pairs.project` computes it.
    """
    lib = _required(weights.dtype)
    d, n_pad = codes_t.shape
    p, h, _ = weights.shape
    dtype = weights.dtype
    if n_pad != padded(n_pad, dtype):
        raise ValueError(
            f"project: codes must be padded to whole vector lanes (codes_layout); got {n_pad} columns"
        )
    weights = weights.contiguous()
    _check("project", "codes", codes_t, (d, n_pad), dtype)
    _check("project", "weights", weights, (p, h, d), dtype)
    if bias is not None:
        bias = bias.contiguous()
        _check("project", "bias", bias, (p, h), dtype)
    out = weights.new_empty(p, h, n_pad)
    pointers = (_ptr(codes_t), _ptr(weights), _ptr(bias), _ptr(out))
    _parallel_rows(
        lib,
        p * h,
        lambda n, r0, r1: lib.innate_project(n, r0, r1, h, d, n_pad, *pointers),
        2 * d * n_pad,
    )
    return out


def pairs_mlp(
    a: torch.Tensor,
    b: torch.Tensor,
    params: torch.Tensor,
    widths: Sequence[int],
    out: torch.Tensor,
    mult: torch.Tensor | None = None,
) -> None:
    """Write the weights [p, n_post, n_pre] of a per-pair ReLU MLP into `out`.

    a: [p, h0, n_pad(n_pre)] presynaptic projections and b: [p, h0,
    n_pad(n_post)] postsynaptic projections plus the first bias, both in
    kernel layout (`project`, `to_kernel_layout`); params [p, n]: for each
    further layer its weight [h_l, h_{l-1}] and bias [h_l] flattened, then the
    output weights [h_last]. With mult [p], each row is standardised and
    multiplied by it.
    """
    widths = tuple(int(w) for w in widths)
    lib = _required(a.dtype, widths)
    p, n_post, n_pre = out.shape
    n_params = sum(widths[i] * widths[i - 1] + widths[i] for i in range(1, len(widths)))
    checks = {
        "a": (a, (p, widths[0], padded(n_pre, a.dtype))),
        "b": (b, (p, widths[0], padded(n_post, a.dtype))),
        "params": (params, (p, n_params + widths[-1])),
        "out": (out, (p, n_post, n_pre)),
    }
    for name, (t, shape) in checks.items():
        _check(f"pairs_mlp (widths {list(widths)})", name, t, shape, a.dtype)
    m = None if mult is None else _multiplier("pairs_mlp", mult, p, a.dtype)
    tiny = torch.finfo(a.dtype).tiny
    sizes = (n_post, n_pre, a.shape[2], b.shape[2])
    pointers = (_ptr(a), _ptr(b), _ptr(params), _ptr(out), _ptr(m))

    def call(n: int, r0: int, r1: int) -> None:
        lib.innate_pairs(n, r0, r1, *sizes, *pointers, REL_EPS, tiny)

    per_pair = 2 * widths[0] + 2 * n_params + 2 * widths[-1]
    _parallel_rows(lib, p * n_post, call, per_pair * n_pre + 8 * n_pre)


def gnet_layer(
    genomes: torch.Tensor,
    offsets: Sequence[int],
    codes_pre: torch.Tensor,
    codes_post: torch.Tensor,
    widths: Sequence[int],
    out: torch.Tensor,
    mult: torch.Tensor | None = None,
) -> None:
    """One layer of a g-network decode, read straight from the genomes [p, D], into `out`.

    offsets: where the layer's genes start in a genome: the presynaptic
    projection [h0, d_pre], the postsynaptic one [h0, d_post], the first bias
    [h0], and the per-pair MLP's `params` (as `pairs_mlp` reads them, here
    consecutive genes). codes_pre [d_pre, n_pad(n_pre)] and codes_post are in
    `codes_layout`. The weights are those of `project` then `pairs_mlp` on the
    same genes, bit for bit, in one call instead of three and a copy. A
    library without OpenMP runs its rows on Python threads, which cannot share
    the projections: there it is those calls.
    """
    widths = tuple(int(w) for w in widths)
    dtype = genomes.dtype
    lib = _required(dtype, widths)
    p, n_post, n_pre = out.shape
    h0 = widths[0]
    n_params = sum(widths[i] * widths[i - 1] + widths[i] for i in range(1, len(widths)))
    n_params += widths[-1]
    (d_pre, pad_pre), (d_post, pad_post) = codes_pre.shape, codes_post.shape
    where = f"gnet_layer (widths {list(widths)})"
    if genomes.ndim != 2:
        raise ValueError(f"{where}: genomes must be [p, genes], got {list(genomes.shape)}")
    genes = genomes.shape[1]
    sizes = (h0 * d_pre, h0 * d_post, h0, n_params)
    if len(offsets) != 4 or any(
        not 0 <= o <= genes - n for o, n in zip(offsets, sizes, strict=True)
    ):
        raise ValueError(
            f"{where}: offsets {list(offsets)} must place blocks of {list(sizes)} genes inside "
            f"genomes of {genes}"
        )
    _check(where, "genomes", genomes, (p, genes), dtype)
    _check(where, "codes_pre", codes_pre, (d_pre, padded(n_pre, dtype)), dtype)
    _check(where, "codes_post", codes_post, (d_post, padded(n_post, dtype)), dtype)
    _check(where, "out", out, (p, n_post, n_pre), dtype)
    m = None if mult is None else _multiplier(where, mult, p, dtype)
    # The thread count as `pairs_mlp` chooses it (the projections are a small part).
    rows, row_flops = p * n_post, (2 * h0 + 2 * n_params) * n_pre + 8 * n_pre
    threads = max(1, min(torch.get_num_threads(), rows * row_flops // _MIN_WORK_PER_THREAD))
    if threads > 1 and not lib.openmp:
        o_pre, o_post, o_b1, o_prm = offsets
        a = project(codes_pre, genomes[:, o_pre : o_pre + sizes[0]].reshape(p, h0, d_pre))
        b = project(
            codes_post,
            genomes[:, o_post : o_post + sizes[1]].reshape(p, h0, d_post),
            genomes[:, o_b1 : o_b1 + h0],
        )
        pairs_mlp(a, b, genomes[:, o_prm : o_prm + n_params].contiguous(), widths, out, m)
        return
    failed = lib.innate_gnet_layer(
        threads,
        p,
        _ptr(genomes),
        genes,
        *offsets,
        d_pre,
        d_post,
        n_post,
        n_pre,
        pad_pre,
        pad_post,
        _ptr(codes_pre),
        _ptr(codes_post),
        _ptr(out),
        _ptr(m),
        REL_EPS,
        torch.finfo(dtype).tiny,
    )
    if failed:
        raise MemoryError(f"{where}: no memory for the projections of {p} genomes")


def standardize(w: torch.Tensor, mult: torch.Tensor, out: torch.Tensor) -> None:
    """out[i, o] = standardise(w[i, o, :]) * mult[i], for w [p, n_out, n_in] (out may be w)."""
    lib = _required(w.dtype)
    p, n_out, n_in = w.shape
    w = w.contiguous()
    _check("standardize", "out", out, tuple(w.shape), w.dtype)
    m = _multiplier("standardize", mult, p, w.dtype)
    tiny = torch.finfo(w.dtype).tiny
    pointers = (_ptr(w), _ptr(out), _ptr(m))

    def call(n: int, r0: int, r1: int) -> None:
        lib.innate_standardize(n, r0, r1, n_in, n_out, *pointers, REL_EPS, tiny)

    _parallel_rows(lib, p * n_out, call, 8 * n_in)
