"""Native decode kernels: agreement with the torch path and with their own documented order,
bad inputs, NaN genes and autograd (building them: tests/test_native_build.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genome import Layout, native
from genome.decoders import CPPN, Connectome, GNet
from genome.decoders.pairs import pairs_mlp


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


def _standardized_in_order(row: np.ndarray, mult: float) -> np.ndarray:
    """The kernels' standardisation of one row, one rounding at a time in NumPy scalars.

    Sums run over 32 bytes of partial sums (8 floats, 4 doubles) in order,
    combined in order; then (w - mean) * inv * mult, as pairs.cpp documents.
    """
    t = row.dtype.type
    tiny, rel_eps = t(np.finfo(row.dtype).tiny), t(native.REL_EPS)
    n, parts = len(row), 32 // row.itemsize
    if n == 1:
        v = row[0]
        return np.array([v * (t(1) / np.sqrt(v * v + tiny)) * t(mult)], dtype=row.dtype)
    whole = n // parts * parts
    part = [t(0)] * parts
    for i in range(n):
        part[i % parts if i < whole else i - whole] += row[i]
    s = t(0)
    for x in part:
        s += x
    mean = s / t(n)
    sq = [t(0)] * parts
    for i in range(n):
        d = row[i] - mean
        sq[i % parts if i < whole else i - whole] += d * d
    ss = t(0)
    for x in sq:
        ss += x
    inv = t(1) / np.sqrt(ss / t(n) + (rel_eps * mean * mean + tiny))
    return np.array([(w - mean) * inv * t(mult) for w in row], dtype=row.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 3, 8, 37, 145])
def test_rows_standardised_together_keep_each_rows_own_bits(dtype, n):
    # Rows are standardised in groups of four, their sums side by side; a row's
    # bits must be those of the documented order, alone or in any group.
    g = torch.Generator().manual_seed(n)
    w = (torch.randn(2, 7, n, generator=g, dtype=dtype) * 3 + 1).contiguous()
    w[1, 6] = 5.0  # a constant row
    mult = torch.tensor([0.7, -1.3], dtype=dtype)
    together = torch.empty_like(w)
    native.standardize(w, mult, together)
    for i in range(2):
        for o in range(7):
            alone = torch.empty(1, 1, n, dtype=dtype)
            native.standardize(w[i, o][None, None].contiguous(), mult[i : i + 1], alone)
            assert torch.equal(together[i, o], alone[0, 0]), (i, o)
            expected = _standardized_in_order(w[i, o].numpy(), float(mult[i]))
            assert np.array_equal(together[i, o].numpy(), expected), (i, o)


def _gnet_genes(p, widths, d_pre, d_post, dtype, seed=0):
    """Genomes [p, D] holding one layer's genes at known offsets, among other genes."""
    h0, g = widths[0], torch.Generator().manual_seed(seed)
    n_params = sum(widths[i] * widths[i - 1] + widths[i] for i in range(1, len(widths)))
    sizes = [h0 * d_pre, h0 * d_post, h0, n_params + widths[-1]]
    offsets, at = [], 3  # three other genes first
    for size in sizes:
        offsets.append(at)
        at += size + 2  # and two between blocks
    return torch.randn(p, at, generator=g, dtype=dtype), offsets, sizes


@pytest.mark.parametrize("widths", [(4,), (8, 8), (3, 7, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p", [1, 5])
def test_a_gnet_layer_in_one_call_equals_projections_then_pairs(widths, dtype, p, monkeypatch):
    layout = Layout.build((13, 11), [9], 3)
    codes_pre, codes_post = (native.codes_layout(c.to(dtype)) for c in layout.codes("binary")[:2])
    (d_pre, _), (d_post, _) = codes_pre.shape, codes_post.shape
    genomes, offsets, sizes = _gnet_genes(p, widths, d_pre, d_post, dtype)
    h0, n_post, n_pre = widths[0], 9, 143

    def block(i):
        return genomes[:, offsets[i] : offsets[i] + sizes[i]]

    a = native.project(codes_pre, block(0).reshape(p, h0, d_pre))
    b = native.project(codes_post, block(1).reshape(p, h0, d_post), block(2))
    mult = torch.rand(p, dtype=dtype) + 0.5
    threads = torch.get_num_threads()
    # However little the work, two threads take part when asked for two.
    monkeypatch.setattr(native, "_MIN_WORK_PER_THREAD", 1)
    try:
        for m in (None, mult):
            expected = torch.empty(p, n_post, n_pre, dtype=dtype)
            native.pairs_mlp(a, b, block(3).contiguous(), widths, expected, m)
            # One thread and two; two on Python threads, as a library without OpenMP runs.
            for n, openmp in ((1, True), (2, True), (2, False)):
                torch.set_num_threads(n)
                monkeypatch.setattr(native._required(dtype, widths), "openmp", openmp)
                got = torch.full_like(expected, float("nan"))
                native.gnet_layer(genomes, offsets, codes_pre, codes_post, widths, got, m)
                assert torch.equal(got, expected), (m is None, n, openmp)
    finally:
        torch.set_num_threads(threads)


def test_a_gnet_layer_names_bad_inputs():
    layout = Layout.build((13, 11), [9], 3)
    codes_pre, codes_post = (native.codes_layout(c) for c in layout.codes("binary")[:2])
    genomes, offsets, _ = _gnet_genes(
        2, (4, 4), codes_pre.shape[0], codes_post.shape[0], torch.float32
    )
    out = torch.empty(2, 9, 143)
    with pytest.raises(ValueError, match=r"offsets \[3, .*\] must place blocks of"):
        native.gnet_layer(genomes[:, :-5].contiguous(), offsets, codes_pre, codes_post, (4, 4), out)
    with pytest.raises(ValueError, match="genomes must be a contiguous CPU"):
        native.gnet_layer(genomes.T.contiguous().T, offsets, codes_pre, codes_post, (4, 4), out)
    with pytest.raises(
        ValueError, match=r"codes_pre must be .* of shape \[4, 144\]; got .* \[4, 16\]"
    ):
        native.gnet_layer(genomes, offsets, codes_post, codes_pre, (4, 4), out)
    with pytest.raises(ValueError, match=r"mult must be .* of shape \[2\]"):
        native.gnet_layer(genomes, offsets, codes_pre, codes_post, (4, 4), out, torch.ones(3))


@pytest.mark.parametrize(
    "settings",
    [
        {"hidden": [8, 8]},
        {"hidden": [5, 3, 4], "code": "coords"},
        {"hidden": [6], "standardize": False},
    ],
)
@pytest.mark.parametrize("p", [1, 16, 21])
def test_a_native_gnet_decode_equals_its_layers_decoded_step_by_step(settings, p):
    # Reading each layer's genes straight from the genomes gives the bits of the
    # projections, the pair kernel and the biases computed from the genome's blocks.
    layout = Layout.build((13, 11), [9], 3)
    dec = GNet(layout, **settings)
    pop = dec.init(p, torch.Generator().manual_seed(p))
    wide = torch.cat([pop, torch.ones(p, 3)], dim=1)[:, : pop.shape[1]]  # rows not contiguous
    h = dec.settings["hidden"]
    genes = dec.blocks().split(pop)
    codes = [native.codes_layout(c) for c in layout.codes(dec.settings["code"])]
    expected = []
    for k, (n_post, n_pre) in enumerate(layout.layer_shapes()):
        a = native.project(codes[k], genes[f"l{k}.pre"])
        b = native.project(codes[k + 1], genes[f"l{k}.post"], genes[f"l{k}.b1"])
        names = [genes[f"l{k}.{x}{j + 1}"].flatten(1) for j in range(1, len(h)) for x in "wb"]
        params = torch.cat([*names, genes[f"l{k}.out"]], dim=1)
        mult = dec.multiplier(n_pre, genes[f"l{k}.gain"]) if dec.standardize else None
        w = torch.empty(p, n_post, n_pre)
        native.pairs_mlp(a, b, params, h, w, mult)
        expected.append(w if dec.standardize else w * math.sqrt(2.0 / n_pre))
    biases = dec._biases(genes, layout)
    with native.use("native"):
        for population in (pop, wide):
            got = dec.decode(population)
            for x, y in zip(got.weights + got.biases, expected + biases, strict=True):
                assert torch.equal(x, y)


@pytest.mark.parametrize(
    "settings",
    [
        {"hidden": [8, 8]},
        {"hidden": [5, 3, 4], "code": "coords"},
        {"hidden": [6], "standardize": False},
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_native_gnet_decode_in_chunks_equals_each_chunk_alone(monkeypatch, settings, dtype):
    # The layers run over as many whole chunks as the decode's memory holds; the layer
    # gains and the biases stay per chunk (torch may pick a code path by size): each
    # chunk keeps the bits of its decode alone. (With this torch they would match even
    # computed for every row at once.)
    layout = Layout.build((13, 11), [9], 3)
    dec = GNet(layout, **settings)
    g = torch.Generator().manual_seed(3)
    pop = dec.init(37, g, dtype=dtype) + 0.5 * torch.randn(37, dec.genome_length(), generator=g)
    calls = []
    layer = native.gnet_layer

    def counting(genomes, *args):
        calls.append(genomes.shape[0])
        return layer(genomes, *args)

    monkeypatch.setattr(native, "gnet_layer", counting)
    with native.use("native"):
        for memory, chunk_size, rows in (
            (None, 16, [37]),
            (None, 5, [37]),
            (12, 5, [10] * 3 + [7]),
        ):
            if memory is not None:
                monkeypatch.setattr(dec, "chunk_size", lambda layout=None, m=memory: m)
            calls.clear()
            got = dec.decode(pop, chunk_size=chunk_size)
            assert calls == [r for r in rows for _ in range(layout.n_layers)]
            alone = [dec.decode(c) for c in pop.split(chunk_size)]
            for k, (w, b) in enumerate(zip(got.weights, got.biases, strict=True)):
                assert torch.equal(w, torch.cat([a.weights[k] for a in alone]))
                assert torch.equal(b, torch.cat([a.biases[k] for a in alone]))


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
