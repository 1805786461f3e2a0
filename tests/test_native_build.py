"""Building the native decode kernels: the kernel mode, a missing compiler, the cache, and every
build giving the same bits."""

from __future__ import annotations

import pytest
import torch
from test_native import random_mlp

from genome import Layout, native
from genome.decoders import GNet
from genome.native import build as native_build


def test_mode_comes_from_the_environment_and_bad_values_are_named(monkeypatch):
    monkeypatch.setenv(native.ENV, "torch")
    assert native.mode() == "torch"
    assert not native.applies(torch.zeros(2))
    monkeypatch.setenv(native.ENV, "fast")
    with pytest.raises(
        ValueError, match=r"INNATE_KERNELS='fast'.*valid modes: auto, native, torch"
    ):
        native.mode()
    with pytest.raises(ValueError, match="unknown kernel mode 'gpu'"), native.use("gpu"):
        pass


def test_a_missing_compiler_falls_back_or_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "no-such-compiler")
    monkeypatch.setenv("INNATE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_warned", set())
    native_build.build_library.cache_clear()
    try:
        layout = Layout.build((5, 5), [4], 2)
        dec = GNet(layout, hidden=[4, 4])
        pop = dec.init(2, torch.Generator().manual_seed(0))
        with (
            native.use("native"),
            pytest.raises(native.NativeUnavailable, match="no C\\+\\+ compiler"),
        ):
            dec.decode(pop)
        with native.use("auto"), pytest.warns(RuntimeWarning, match="using the slower torch path"):
            fallback = dec.decode(pop)
        with native.use("torch"):
            expected = dec.decode(pop)
        torch.testing.assert_close(fallback.weights[0], expected.weights[0])
        assert not list(tmp_path.rglob("*.so"))
    finally:
        native_build.build_library.cache_clear()


def test_a_broken_cache_falls_back_and_a_corrupt_library_is_rebuilt(monkeypatch, tmp_path):
    layout = Layout.build((5, 5), [4], 2)
    dec = GNet(layout, hidden=[3, 5])
    pop = dec.init(2, torch.Generator().manual_seed(0))
    with native.use("torch"):
        expected = dec.decode(pop).weights[0]
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("INNATE_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(native, "_warned", set())
    native_build.build_library.cache_clear()
    try:
        with native.use("auto"), pytest.warns(RuntimeWarning, match="cannot build into"):
            torch.testing.assert_close(dec.decode(pop).weights[0], expected)
        # A truncated library in the cache (a killed copy, another machine's file) is
        # rebuilt. The good one is built in one cache and planted, broken, in another
        # (a library loaded in this process must not be overwritten).
        monkeypatch.setenv("INNATE_CACHE_DIR", str(tmp_path / "good"))
        native_build.build_library.cache_clear()
        with native.use("native"):
            dec.decode(pop)
        for lib in (tmp_path / "good").rglob("*.so"):
            broken = tmp_path / "broken" / lib.relative_to(tmp_path / "good")
            broken.parent.mkdir(parents=True, exist_ok=True)
            broken.write_bytes(b"garbage")
        monkeypatch.setenv("INNATE_CACHE_DIR", str(tmp_path / "broken"))
        native_build.build_library.cache_clear()
        with native.use("native"):
            torch.testing.assert_close(dec.decode(pop).weights[0], expected, rtol=1e-5, atol=1e-6)
        assert all(lib.stat().st_size > 1000 for lib in (tmp_path / "broken").rglob("*.so"))
    finally:
        native_build.build_library.cache_clear()


def test_the_library_is_built_once_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("INNATE_CACHE_DIR", str(tmp_path))
    native_build.build_library.cache_clear()
    try:
        a, b, _, _, params = random_mlp(2, 9, 3, (3, 2), torch.float32)
        out = torch.empty(2, 3, 9)
        a, b = native.to_kernel_layout(a), native.to_kernel_layout(b)
        native.pairs_mlp(a, b, params, (3, 2), out)
        built = sorted(p.name for p in tmp_path.rglob("*.so"))
        assert any(name.startswith("pairs-float-3x2-") for name in built)
        assert not list(tmp_path.rglob(".build-*"))  # no temporary file left behind
        native_build.build_library.cache_clear()
        native.pairs_mlp(a, b, params, (3, 2), out)  # loads from disk, builds nothing new
        assert sorted(p.name for p in tmp_path.rglob("*.so")) == built
    finally:
        native_build.build_library.cache_clear()


def _build_with(monkeypatch, tmp_path, name: str, flag_sets: list[list[str]]) -> None:
    """Make the next library builds use only `flag_sets`, into a cache of their own."""
    monkeypatch.setattr(native_build, "flag_sets", lambda: [list(f) for f in flag_sets])
    monkeypatch.setenv("INNATE_CACHE_DIR", str(tmp_path / name))
    native_build.build_library.cache_clear()


def test_every_build_of_the_kernels_gives_the_same_bits(monkeypatch, tmp_path):
    # The default build (vector FMA instructions, OpenMP threads where torch uses
    # them), one without OpenMP (Python threads) and one for the baseline
    # instruction set (std::fma lane by lane) must grow bit-identical weights:
    # Ray actors on other machines score a genome as the main process does.
    # Where the CPU runs AVX-512 the default build has 512-bit vectors (16 float
    # lanes), and the AVX2 build (8 lanes) must agree with it to the bit.
    layout = Layout.build((13, 11), [9], 3)
    decoders = [
        GNet(layout, hidden=[8, 8]),
        GNet(layout, hidden=[5, 3, 4], code="coords"),
        GNet(layout, hidden=[19, 12]),
    ]
    pops = [d.init(20, torch.Generator().manual_seed(1)) for d in decoders]
    base = list(native_build.FLAGS)
    default = native_build.flag_sets()
    variants = {
        "default": default,
        # The widest vectors without OpenMP (rows on Python threads).
        "no-openmp": [next(f for f in default if "-fopenmp" not in f)],
        "baseline": [base],
    }
    avx512 = torch.backends.cpu.get_cpu_capability() == "AVX512"
    if avx512:
        openmp = [f for f in default[0] if f == "-fopenmp"]
        variants["avx2"] = [[*base, *native_build.AVX2, *openmp]]
    threads = torch.get_num_threads()
    grown, openmp_of, lanes_of = {}, {}, {}
    try:
        torch.set_num_threads(2)
        for name, flag_sets in variants.items():
            _build_with(monkeypatch, tmp_path, name, flag_sets)
            for dtype in (torch.float32, torch.float64):
                with native.use("native"):
                    grown[name, dtype] = [
                        d.decode(p.to(dtype)).weights for d, p in zip(decoders, pops, strict=True)
                    ]
                lib = native._required(dtype, (8, 8))
                openmp_of[name], lanes_of[name, dtype] = lib.openmp, lib.innate_lanes()
    finally:
        torch.set_num_threads(threads)
        native_build.build_library.cache_clear()
    # Where torch runs on OpenMP, the default build shares its threads.
    openmp = "parallel backend: OpenMP" in torch.__config__.parallel_info()
    assert openmp_of["default"] == openmp and not openmp_of["no-openmp"]
    if avx512:
        assert lanes_of["default", torch.float32] == 16 and lanes_of["avx2", torch.float32] == 8
        assert lanes_of["no-openmp", torch.float32] == 16 and openmp_of["avx2"] == openmp
        assert lanes_of["default", torch.float64] == 8 and lanes_of["avx2", torch.float64] == 4
    assert lanes_of["baseline", torch.float32] == 8
    for (name, dtype), weights in grown.items():
        for got, expected in zip(weights, grown["default", dtype], strict=True):
            for w, e in zip(got, expected, strict=True):
                assert torch.equal(w, e), f"{name} build ({dtype}) differs from the default build"


def test_a_flag_set_that_fails_to_build_falls_back_to_the_next(monkeypatch, tmp_path):
    base = list(native_build.FLAGS)
    _build_with(monkeypatch, tmp_path, "cache", [[*base, "-fno-such-option"], base])
    try:
        lib = native._required(torch.float32)
        assert lib.openmp is False
        built = list((tmp_path / "cache").rglob("*.so"))
        assert len(built) == 1
    finally:
        native_build.build_library.cache_clear()
