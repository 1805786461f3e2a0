"""The native noise kernel draws exactly what torch's CPU normal_ draws, or is not used."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from genome import native
from genome.native import build as native_build
from genome.native import noise

BITS = {torch.float32: torch.int32, torch.float64: torch.int64}


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and torch.equal(a.view(BITS[a.dtype]), b.view(BITS[b.dtype]))


def _pair(seed: int, warm: int) -> tuple[torch.Generator, torch.Generator]:
    """Two generators in one state: seeded, then `warm` numbers into the twister's block."""
    theirs = torch.Generator().manual_seed(seed)
    if warm:
        torch.empty(warm).uniform_(generator=theirs)
    ours = torch.Generator()
    ours.set_state(theirs.get_state())
    return theirs, ours


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(16,), (17,), (623,), (64, 2007), (5, 40003)])
@pytest.mark.parametrize("threads", [1, 2])
def test_noise_equals_torchs_normal_and_leaves_the_generator_where_torch_does(
    dtype, shape, threads
):
    for seed, warm in ((0, 0), (7, 301), (2**40 + 3, 623)):
        theirs, ours = _pair(seed, warm)
        expected = torch.empty(shape, dtype=dtype).normal_(generator=theirs)
        got = torch.full(shape, float("nan"), dtype=dtype)
        assert noise.normal_(got, ours, threads)
        assert _same(got, expected), (seed, warm)
        assert torch.equal(ours.get_state(), theirs.get_state())
        # And the next draw, from where both left their generators.
        assert noise.normal_(got, ours, threads)
        assert _same(got, torch.empty(shape, dtype=dtype).normal_(generator=theirs))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 16), (3, 9), (64, 2007), (4, 70001)])
@pytest.mark.parametrize("threads", [1, 2])
def test_scaled_noise_equals_torchs_draw_then_scale_then_shift(dtype, shape, threads):
    # EvoTorch's make_gaussian: out.normal_(); out *= stdev; out += center.
    values = torch.Generator().manual_seed(shape[1])
    scale = torch.rand(shape[1], generator=values, dtype=dtype) * 3 + 1e-3
    shift = torch.randn(shape[1], generator=values, dtype=dtype) * 5
    theirs, ours = _pair(11, 5)
    expected = torch.empty(shape, dtype=dtype).normal_(generator=theirs)
    expected *= scale
    expected += shift
    got = torch.empty(shape, dtype=dtype)
    assert noise.normal_(got, ours, threads, scale=scale, shift=shift)
    assert _same(got, expected)
    assert torch.equal(ours.get_state(), theirs.get_state())


def test_the_thread_count_does_not_change_a_number():
    draws = []
    for threads in (1, 2, 3, 8):
        g = torch.Generator().manual_seed(5)
        out = torch.empty(9, 50_001)
        assert noise.normal_(out, g, threads)
        draws.append(out)
    assert all(_same(d, draws[0]) for d in draws[1:])


def _declined(out: torch.Tensor, **kwargs) -> bool:
    g = torch.Generator().manual_seed(3)
    state, before = g.get_state(), out.clone()
    declined = not noise.normal_(out, g, **kwargs)
    untouched = torch.equal(g.get_state(), state) and (
        out.device.type == "meta" or torch.equal(out.detach(), before.detach())
    )
    return declined and untouched


def test_what_torch_draws_another_way_is_declined_and_left_untouched(monkeypatch):
    row = torch.ones(40)
    assert _declined(torch.zeros(15))  # below 16: torch draws one number at a time
    assert _declined(torch.zeros(8, 40)[:, ::2])  # not contiguous
    assert _declined(torch.zeros(64, dtype=torch.float16))
    assert _declined(torch.zeros(64, device="meta"))
    assert _declined(torch.zeros(64, requires_grad=True))
    assert _declined(torch.zeros(8, 40), scale=row, shift=None)
    assert _declined(torch.zeros(8, 40), scale=torch.ones(39), shift=torch.ones(39))
    assert _declined(torch.zeros(8, 40), scale=row.double(), shift=row.double())
    assert _declined(torch.zeros(8, 40), scale=torch.ones(80)[::2], shift=row)
    assert _declined(torch.zeros(8, 40), scale=torch.tensor(2.0), shift=torch.tensor(1.0))
    with native.use("torch"):
        assert _declined(torch.zeros(64))
    assert not _declined(torch.zeros(64))


def _perturbed(lib):
    """A library whose float draws of over 1,000 numbers are one bit off in number 999."""

    class Wrong:
        openmp = lib.openmp
        innate_normal_double = lib.innate_normal_double

        @staticmethod
        def innate_normal_float(threads, data, n, *rest):
            code = lib.innate_normal_float(threads, data, n, *rest)
            if n > 1000:
                ctypes.cast(ctypes.c_void_p(data), ctypes.POINTER(ctypes.c_int32))[999] += 1
            return code

    return Wrong()


def test_a_kernel_that_draws_other_numbers_is_never_used(monkeypatch):
    variants = native_build.noise_variants()
    chosen = noise._library(torch.float32)
    assert chosen is not None and noise.agrees(chosen, torch.float64)
    assert not noise.agrees(_perturbed(chosen), torch.float32)
    # Every variant wrong: the draw falls back to torch, with one warning.
    noise.reset()
    monkeypatch.setattr(noise, "build_noise_library", lambda v: _perturbed(chosen))
    try:
        out = torch.empty(4, 1000)
        with pytest.warns(RuntimeWarning, match="draws other numbers than torch's normal_"):
            assert not noise.normal_(out, torch.Generator())
        assert not noise.normal_(out, torch.Generator())  # warned once
        # A wrong first variant is passed over for a right one.
        right = {variants[-1]: chosen}
        noise.reset()
        monkeypatch.setattr(
            noise, "build_noise_library", lambda v: right.get(v) or _perturbed(chosen)
        )
        assert noise._library(torch.float32) is chosen
    finally:
        noise.reset()


def test_the_variants_differ_where_torch_runs_its_avx2_kernel():
    # The check is not vacuous: on such a CPU the C library's scalar functions
    # round otherwise than torch's 8-lane ones, and the kernel picks the one that agrees.
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("torch runs its scalar normal_ here: one variant")
    scalar = native_build.build_noise_library("scalar")
    avx2 = native_build.build_noise_library("avx2")
    assert not isinstance(scalar, str) and not isinstance(avx2, str)
    assert not noise.agrees(scalar, torch.float32)
    assert noise.agrees(scalar, torch.float64)  # doubles go through the C library in torch too
    assert noise._library(torch.float32).innate_noise_avx2() == 1


def test_at_torchs_baseline_instruction_set_the_scalar_variant_is_chosen(tmp_path):
    script = textwrap.dedent(
        """
        import torch
        from genome.native import noise
        lib = noise._library(torch.float32)
        assert lib is not None and lib.innate_noise_avx2() == 0, lib
        for dtype in (torch.float32, torch.float64):
            a, b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
            out = torch.empty(3, 10007, dtype=dtype)
            assert noise.normal_(out, a)
            assert torch.equal(out, torch.empty(3, 10007, dtype=dtype).normal_(generator=b))
        print("scalar ok")
        """
    )
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "scalar ok" in out.stdout


def test_a_thread_that_stalls_while_the_others_claim_every_chunk_does_not_hang(tmp_path):
    # The drawing thread, held up just before it claims a chunk (as the OS may
    # deschedule it) while the other thread claims the rest, must still draw
    # every chunk: the other thread waits for each one it claimed.
    script = textwrap.dedent(
        """
        import torch
        from genome.native import build, noise
        variant = build.noise_variants()[0]
        lib = build.build_noise_library(variant, ("-DINNATE_NOISE_STALL_US=20000",))
        assert not isinstance(lib, str), lib
        if not lib.openmp:
            print("no shared OpenMP")
            raise SystemExit(0)
        for n in (16 * 4096, 16 * 4096 + 5, 24 * 4096 + 9):  # 2 threads: 32,768 a thread
            a, b = torch.Generator().manual_seed(n), torch.Generator().manual_seed(n)
            out = torch.empty(n)
            assert noise._draw(lib, out, a, 2)
            assert torch.equal(out, torch.empty(n).normal_(generator=b))
            assert torch.equal(a.get_state(), b.get_state())
        print("drawn")
        """
    )
    env = {**os.environ, "INNATE_CACHE_DIR": str(tmp_path), "OMP_NUM_THREADS": "2"}
    try:
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the draw hung")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "drawn" in out.stdout or "no shared OpenMP" in out.stdout


def test_states_torch_cannot_reach_are_declined():
    # next + left is N + 1 after a twist; a state set by hand otherwise would
    # read past the twister's words (torch's own draw does).
    g = torch.Generator().manual_seed(0)
    torch.empty(100).uniform_(generator=g)
    state = g.get_state()
    state[8:12] = torch.tensor([600], dtype=torch.int32).view(torch.uint8)  # left
    state[16:24] = torch.tensor([600], dtype=torch.int64).view(torch.uint8)  # next
    g.set_state(state)
    out = torch.zeros(64)
    assert not noise.normal_(out, g)
    assert torch.equal(g.get_state(), state) and not out.any()


def test_a_missing_compiler_falls_back_or_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "no-such-compiler")
    monkeypatch.setenv("INNATE_CACHE_DIR", str(tmp_path))
    noise.reset()
    try:
        out = torch.empty(4, 100)
        with native.use("native"), pytest.raises(native.NativeUnavailable, match="no C\\+\\+"):
            noise.normal_(out, torch.Generator())
        with native.use("auto"), pytest.warns(RuntimeWarning, match="sampling with torch"):
            assert not noise.normal_(out, torch.Generator())
        assert not list(tmp_path.rglob("*.so"))
    finally:
        noise.reset()


def test_the_library_is_built_once_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("INNATE_CACHE_DIR", str(tmp_path))
    noise.reset()
    try:
        assert noise.normal_(torch.empty(100), torch.Generator())
        built = sorted(p.name for p in tmp_path.rglob("*.so"))
        assert built and all(name.startswith("noise-") for name in built)
        noise.reset()
        assert noise.normal_(torch.empty(100), torch.Generator())  # from disk
        assert sorted(p.name for p in tmp_path.rglob("*.so")) == built
    finally:
        noise.reset()
