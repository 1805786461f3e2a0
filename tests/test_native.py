"""Native decode kernels: agreement with the torch path, modes, and a missing compiler."""

from __future__ import annotations

import pytest
import torch

from genome import Layout, native
from genome.decoders import CPPN, Connectome, GNet
from genome.decoders.pairs import pairs_mlp
from genome.native import build as native_build


def random_mlp(p, n_pre, n_post, widths, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    a, b = r(p, n_pre, widths[0]), r(p, n_post, widths[0])
    layers, params = [], []
    for j in range(1, len(widths)):
        w, bias = r(p, widths[j], widths[j - 1]), r(p, widths[j])
        layers.append((w.transpose(1, 2), bias[:, None]))
        params += [w.flatten(1), bias]
    out = r(p, widths[-1])
    return a, b, layers, out, torch.cat([*params, out], dim=1)


# Widths of one to three layers; n_pre on, below and above a multiple of the vector lanes.
@pytest.mark.parametrize("widths", [(4,), (5, 5), (8, 8), (3, 7, 2), (23, 23)])
@pytest.mark.parametrize("n_pre", [1, 7, 8, 37])
def test_fused_pair_mlp_equals_torch_path(widths, n_pre):
    a, b, layers, out, params = random_mlp(3, n_pre, 5, widths, torch.float64)
    expected = pairs_mlp(a, b, layers, out[:, :, None])
    got = torch.empty_like(expected)
    a, b = native.to_kernel_layout(a), native.to_kernel_layout(b)
    native.pairs_mlp(a, b, params, widths, got)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_standardisation_equals_torch_scaling(dtype):
    a, b, layers, out, params = random_mlp(4, 37, 6, (6, 5), dtype)
    raw = pairs_mlp(a, b, layers, out[:, :, None])
    mult = torch.rand(4, dtype=dtype) + 0.5
    mean = raw.mean(dim=2, keepdim=True)
    var = raw.var(dim=2, unbiased=False, keepdim=True) + native.REL_EPS * mean.square()
    expected = (raw - mean) / var.sqrt() * mult[:, None, None]
    fused, separate = torch.empty_like(raw), torch.empty_like(raw)
    a, b = native.to_kernel_layout(a), native.to_kernel_layout(b)
    native.pairs_mlp(a, b, params, (6, 5), fused, mult)
    native.standardize(raw, mult, separate)
    tol = 1e-11 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(fused, expected, rtol=tol, atol=tol)
    torch.testing.assert_close(separate, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "make",
    [
        lambda layout: GNet(layout, hidden=[8, 8]),
        lambda layout: GNet(layout, hidden=[5, 3, 4], code="coords"),
        lambda layout: GNet(layout, hidden=[6], standardize=False),
        lambda layout: CPPN(layout),
        lambda layout: Connectome(layout),
    ],
)
def test_native_decode_equals_torch_decode(make):
    # A 13 x 11 input sheet: rows of 143 inputs, not a multiple of the vector lanes.
    layout = Layout.build((13, 11), [9], 3)
    dec = make(layout)
    pop = dec.init(5, torch.Generator().manual_seed(3), dtype=torch.float64)
    with native.use("torch"):
        expected = dec.decode(pop)
    with native.use("native"):
        got = dec.decode(pop)
    for x, y in zip(got.weights + got.biases, expected.weights + expected.biases, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("code", ["binary", "onehot", "coords"])
def test_native_projection_equals_torch_projection(code):
    from genome.decoders.pairs import project

    g = torch.Generator().manual_seed(1)
    codes = Layout.build((13, 11), [4], 1).codes(code, torch.float64)[0]
    weights = torch.randn(3, 6, codes.shape[1], generator=g, dtype=torch.float64)
    bias = torch.randn(3, 6, generator=g, dtype=torch.float64)
    got = native.project(native.codes_layout(codes), weights, bias)
    n = codes.shape[0]
    assert got.shape == (3, 6, native.padded(n, torch.float64))
    expected = project(codes, weights) + bias[:, None]
    torch.testing.assert_close(got[:, :, :n].transpose(1, 2), expected, rtol=1e-13, atol=1e-13)


def test_bad_kernel_inputs_name_the_fault():
    a, b, _, _, params = random_mlp(2, 9, 3, (3, 2), torch.float32)
    a, b = native.to_kernel_layout(a), native.to_kernel_layout(b)
    with pytest.raises(ValueError, match=r"params must be a contiguous CPU torch.float32 tensor"):
        native.pairs_mlp(a, b, params[:, :-1], (3, 2), torch.empty(2, 3, 9))
    with pytest.raises(ValueError, match=r"out must be .* of shape \[2, 3, 9\]"):
        native.pairs_mlp(a, b, params, (3, 2), torch.empty(2, 9, 3).transpose(1, 2))
    with pytest.raises(ValueError, match=r"mult must be .* of shape \[2\]"):
        native.pairs_mlp(a, b, params, (3, 2), torch.empty(2, 3, 9), torch.ones(1))
    codes = torch.randn(9, 4)
    with pytest.raises(ValueError, match="padded to whole vector lanes"):
        native.project(codes.T.contiguous(), torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"bias must be .* of shape \[2, 3\]"):
        native.project(native.codes_layout(codes), torch.randn(2, 3, 4), torch.randn(3))


def test_nan_genes_give_nan_weights_as_in_torch():
    # A broken genome must stay visibly broken (the problem scores it worst), not be
    # silently repaired by a ReLU that maps NaN to 0.
    layout = Layout.build((5, 5), [4], 2)
    dec = GNet(layout, hidden=[4, 4])
    pop = dec.init(2, torch.Generator().manual_seed(0))
    pop[1, 0] = float("nan")
    for kernel_mode in ("native", "torch"):
        with native.use(kernel_mode):
            w = dec.decode(pop).weights[0]
        assert torch.isfinite(w[0]).all()
        assert torch.isnan(w[1]).any(), kernel_mode


def test_autograd_uses_the_torch_path():
    layout = Layout.build((5, 5), [4], 2)
    dec = GNet(layout, hidden=[4, 4])
    pop = dec.init(2, torch.Generator().manual_seed(0)).requires_grad_(True)
    assert not native.applies(pop)
    assert dec.decode(pop).weights[0].grad_fn is not None
    with torch.no_grad():
        assert native.applies(pop)


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
