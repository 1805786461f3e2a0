"""Decoders: determinism, batching, chunking, reference checks, compression, resolution."""

from __future__ import annotations

import math

import pytest
import torch

from genome import DECODERS, Layout, make_decoder, native
from genome.decoders import CPPN, Connectome, Direct, GNet
from genome.decoders.base import layer_gain

LAYOUT = Layout.build((6, 5), [4], 3)
NAMES = sorted(DECODERS)


@pytest.fixture(autouse=True, params=["native", "torch"])
def kernels(request):
    """Every test runs on both decode paths: the native CPU kernels and plain torch."""
    with native.use(request.param):
        yield request.param


def population(decoder, n=8, seed=0, dtype=torch.float64):
    return decoder.init(n, torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("name", NAMES)
def test_decode_is_deterministic(name):
    dec = make_decoder(name, LAYOUT)
    pop = population(dec)
    a, b = dec.decode(pop), dec.decode(pop.clone())
    for x, y in zip(a.weights + a.biases, b.weights + b.biases, strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("name", NAMES)
def test_batched_decode_equals_one_by_one(name):
    dec = make_decoder(name, LAYOUT)
    pop = population(dec)
    batched = dec.decode(pop)
    for i in range(pop.shape[0]):
        single = dec.decode(pop[i])
        for k in range(LAYOUT.n_layers):
            torch.testing.assert_close(single.weights[k][0], batched.weights[k][i])
            torch.testing.assert_close(single.biases[k][0], batched.biases[k][i])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("chunk", [1, 3, 100])
def test_chunking_changes_nothing(name, chunk):
    dec = make_decoder(name, LAYOUT)
    pop = population(dec)
    full, chunked = dec.decode(pop), dec.decode(pop, chunk_size=chunk)
    for x, y in zip(full.weights + full.biases, chunked.weights + chunked.biases, strict=True):
        torch.testing.assert_close(x, y)


def test_pair_blocking_changes_nothing(monkeypatch):
    import genome.decoders.pairs as pairs

    dec = GNet(LAYOUT, hidden=[5, 4, 3])
    pop = population(dec)
    reference = dec.decode(pop)
    monkeypatch.setattr(pairs, "PAIR_BLOCK", 7)  # one individual, one neuron at a time
    blocked = dec.decode(pop)
    for x, y in zip(reference.weights, blocked.weights, strict=True):
        torch.testing.assert_close(x, y)


def naive_gnet(dec: GNet, genome: torch.Tensor, layout: Layout) -> list[torch.Tensor]:
    """Raw weights from the textbook MLP on concatenated (pre, post) codes, pair by pair."""
    g = dec.blocks(layout).split(genome[None])
    codes = layout.codes(dec.settings["code"], torch.float64)
    out = []
    for k, (n_out, n_in) in enumerate(layout.layer_shapes()):
        w1 = torch.cat([g[f"l{k}.pre"][0], g[f"l{k}.post"][0]], dim=1)
        w = torch.empty(n_out, n_in, dtype=torch.float64)
        for post in range(n_out):
            for pre in range(n_in):
                x = torch.relu(
                    w1 @ torch.cat([codes[k][pre], codes[k + 1][post]]) + g[f"l{k}.b1"][0]
                )
                for j in range(1, len(dec.settings["hidden"])):
                    x = torch.relu(g[f"l{k}.w{j + 1}"][0] @ x + g[f"l{k}.b{j + 1}"][0])
                w[post, pre] = g[f"l{k}.out"][0] @ x
        out.append(w)
    return out


@pytest.mark.parametrize("code", ["binary", "gray", "onehot", "coords"])
def test_gnet_separable_first_layer_equals_naive_mlp(code):
    dec = GNet(LAYOUT, hidden=[5, 4], code=code)
    pop = population(dec, n=3)
    raw, _ = dec._raw(dec.blocks().split(pop), LAYOUT)
    for i in range(3):
        for k, w in enumerate(naive_gnet(dec, pop[i], LAYOUT)):
            torch.testing.assert_close(raw[k][i], w)


def test_cppn_equals_naive_pairwise_network():
    dec = CPPN(LAYOUT, hidden=[6, 5])
    pop = population(dec, n=2)
    raw, raw_b = dec._raw(dec.blocks().split(pop), LAYOUT)
    pos = LAYOUT.positions(torch.float64)
    for i in range(2):
        g = {k: v[i] for k, v in dec.blocks().split(pop).items()}

        def net(pre, post, g=g):
            x = torch.cat([pre, post, torch.linalg.norm(pre - post)[None]])
            w1 = torch.cat([g["pre"], g["post"], g["dist"][:, None]], dim=1)
            h = dec._act(w1 @ x + g["b1"])
            h = dec._act(g["w2"] @ h + g["b2"])
            return h @ g["out"]

        for k in range(LAYOUT.n_layers):
            centre = torch.tensor([0.0, 0.0, float(k)], dtype=torch.float64)
            for post in range(LAYOUT.sizes[k + 1]):
                torch.testing.assert_close(raw_b[k][i, post], net(centre, pos[k + 1][post])[1])
                for pre in range(LAYOUT.sizes[k]):
                    torch.testing.assert_close(
                        raw[k][i, post, pre], net(pos[k][pre], pos[k + 1][post])[0]
                    )


def test_connectome_equals_expression_product():
    dec = Connectome(LAYOUT, genes=3)
    pop = population(dec, n=2)
    raw, _ = dec._raw(dec.blocks().split(pop), LAYOUT)
    codes = LAYOUT.codes("binary", torch.float64)
    g = dec.blocks().split(pop)
    for i in range(2):
        x = [
            torch.sigmoid(c @ g[f"s{s}.expr"][i].T + g[f"s{s}.expr0"][i])
            for s, c in enumerate(codes)
        ]
        for k in range(LAYOUT.n_layers):
            torch.testing.assert_close(raw[k][i], x[k + 1] @ g[f"l{k}.op"][i] @ x[k].T)


@pytest.mark.parametrize("name", NAMES)
def test_module_equals_batched_forward(name):
    dec = make_decoder(name, LAYOUT)
    phenotype = dec.decode(population(dec, dtype=torch.float32))
    x = torch.randn(11, 6, 5, generator=torch.Generator().manual_seed(1))
    batched = phenotype(x)
    assert batched.shape == (8, 11, 3)
    for i in range(8):
        with torch.no_grad():
            torch.testing.assert_close(phenotype.module(i)(x), batched[i], rtol=1e-5, atol=1e-5)


def test_per_individual_inputs_match_shared_inputs():
    dec = GNet(LAYOUT)
    phenotype = dec.decode(population(dec))
    x = torch.randn(5, 30, dtype=torch.float64)
    torch.testing.assert_close(phenotype(x), phenotype(x.expand(8, 5, 30)))
    hidden = phenotype.hidden(x)
    assert len(hidden) == 1 and hidden[0].shape == (8, 5, 4) and (hidden[0] >= 0).all()


def test_compression_equals_hand_count():
    # 6x5 -> 2x2 -> 1x3: codes binary 3+3=6, 1+1=2, 0+2=2 bits.
    p_params = 30 * 4 + 4 * 3 + 4 + 3
    h1, h2 = 5, 4
    gnet = (
        (h1 * 6 + h1 * 2 + h1 + h2 * h1 + h2 + h2 + 2 + 1)
        + (h1 * 2 + h1 * 2 + h1 + h2 * h1 + h2 + h2 + 2 + 1)
        + 2
    )  # two gains
    assert GNet(LAYOUT, hidden=[h1, h2]).genome_length() == gnet
    g = 3
    connectome = (g * 6 + g) + (g * 2 + g) + (g * 2 + g) + 2 * (g * g + g + 1) + 2
    assert Connectome(LAYOUT, genes=g).genome_length() == connectome
    cppn = h1 * 3 * 2 + h1 + h1 + h2 * h1 + h2 + h2 * 2 + 2
    assert CPPN(LAYOUT, hidden=[h1, h2]).genome_length() == cppn
    assert Direct(LAYOUT).genome_length() == p_params
    assert Direct(LAYOUT).compression() == 1.0
    assert GNet(LAYOUT, hidden=[h1, h2]).compression() == pytest.approx(p_params / gnet)


@pytest.mark.parametrize("target", [50, 300])
def test_for_compression_picks_widest_decoder_above_target(target):
    layout = Layout.build((28, 28), [100], 10)
    dec = GNet.for_compression(layout, target)
    assert dec.compression() >= target
    wider = GNet(layout, hidden=[dec.settings["hidden"][0] + 1] * 2)
    assert wider.compression() < target
    with pytest.raises(ValueError, match="cannot reach"):
        GNet.for_compression(LAYOUT, 1e6)


@pytest.mark.parametrize(
    "make",
    [lambda L: CPPN(L, standardize=False), lambda L: GNet(L, code="coords", standardize=False)],
)
def test_coordinate_decoders_decode_one_genome_at_two_resolutions(make):
    coarse = Layout.build((5, 5), [(3, 3)], 2)
    fine = coarse.resample(1.8)  # 9x9 and 5x5: every coarse position is also a fine one
    assert fine.sizes == [81, 25, 2]
    dec = make(coarse)
    genome = population(dec, n=1)
    a, b = dec.decode(genome), dec.decode(genome, layout=fine)
    assert dec.genome_length(fine) == dec.genome_length()
    idx_in = (torch.arange(5)[:, None] * 18 + torch.arange(5)[None] * 2).reshape(-1)
    idx_hid = (torch.arange(3)[:, None] * 10 + torch.arange(3)[None] * 2).reshape(-1)
    # Without standardisation w = raw * sqrt(2 / fan_in): undo the fan-in factor.
    wa0, wb0 = a.weights[0][0] * math.sqrt(25), b.weights[0][0] * math.sqrt(81)
    torch.testing.assert_close(wb0[idx_hid][:, idx_in], wa0)
    wa1, wb1 = a.weights[1][0] * math.sqrt(9), b.weights[1][0] * math.sqrt(25)
    torch.testing.assert_close(wb1[:, idx_hid], wa1)


@pytest.mark.parametrize("name", ["gnet", "connectome", "direct"])
def test_code_bound_decoders_refuse_another_resolution(name):
    dec = make_decoder(name, LAYOUT)
    with pytest.raises(ValueError, match="cannot decode layout"):
        dec.decode(population(dec, n=1), layout=LAYOUT.resample(2.0))


@pytest.mark.parametrize("name", ["gnet", "connectome", "cppn"])
@pytest.mark.parametrize("scale", [1e-4, 1.0, 1e3])
def test_born_network_is_well_scaled_whatever_the_genome(name, scale):
    dec = make_decoder(name, LAYOUT)
    pop = population(dec) * scale
    gains = dec.blocks().split(pop)
    phenotype = dec.decode(pop)
    for k, w in enumerate(phenotype.weights):
        assert torch.isfinite(w).all()
        fan_in = w.shape[2]
        expected = math.sqrt(2 / fan_in) * layer_gain(gains[f"l{k}.gain"])
        std = w.std(dim=2, unbiased=False)
        assert (std <= expected * 1.0001).all()
        if scale >= 1:
            # A unit whose raw weights are all equal standardises to zeros; the rest to the gain.
            live = std > 1e-3 * expected
            assert live.float().mean() > 0.5
            torch.testing.assert_close(std[live], expected.expand_as(std)[live], rtol=1e-2, atol=0)
        torch.testing.assert_close(w.mean(dim=2), torch.zeros_like(std), atol=1e-6, rtol=0)


def test_bad_inputs_name_the_fault():
    dec = GNet(LAYOUT)
    with pytest.raises(ValueError, match=f"has {dec.genome_length()} genes"):
        dec.decode(torch.zeros(2, dec.genome_length() + 1))
    with pytest.raises(ValueError, match="floating-point"):
        dec.decode(torch.zeros(2, dec.genome_length(), dtype=torch.long))
    with pytest.raises(ValueError, match="unknown decoder 'nope'; valid decoders: gnet"):
        make_decoder("nope", LAYOUT)
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['widht'\]; valid settings"):
        GNet(LAYOUT, widht=3)
    with pytest.raises(ValueError, match="unknown code 'bits'"):
        GNet(LAYOUT, code="bits")
    with pytest.raises(ValueError, match="hidden must be a list"):
        GNet(LAYOUT, hidden=[0])
    with pytest.raises(ValueError, match="genes must be an int"):
        Connectome(LAYOUT, genes=0)
    with pytest.raises(ValueError, match="activations must be"):
        CPPN(LAYOUT, activations=["cosh"])
    with pytest.raises(ValueError, match="chunk_size"):
        dec.decode(torch.zeros(2, dec.genome_length()), chunk_size=0)
    phenotype = dec.decode(torch.zeros(2, dec.genome_length()))
    with pytest.raises(ValueError, match="input must be"):
        phenotype(torch.zeros(3, 7))
    with pytest.raises(IndexError, match="out of range"):
        phenotype.module(2)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_gene_block(name):
    # The `gradient` optimiser trains genomes by backprop through decode.
    dec = make_decoder(name, LAYOUT)
    genome = population(dec, n=2).requires_grad_(True)
    dec.decode(genome)(torch.randn(4, 30, dtype=torch.float64)).square().sum().backward()
    grads = dec.blocks().split(genome.grad)
    assert all(g.abs().sum() > 0 for g in grads.values()), [
        k for k, g in grads.items() if not g.any()
    ]


@pytest.mark.parametrize("name", NAMES)
def test_decoding_does_not_depend_on_the_thread_count(name):
    # Ray actors run one thread, the main process several: a genome must score the same.
    layout = Layout.build((28, 28), [32, 16], 10)
    dec = make_decoder(name, layout)
    pop = dec.init(16, torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        many = dec.decode(pop)
        torch.set_num_threads(1)
        one = dec.decode(pop)
    finally:
        torch.set_num_threads(threads)
    for x, y in zip(many.weights + many.biases, one.weights + one.biases, strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("name", NAMES)
def test_a_unit_with_one_input_keeps_a_live_weight(name):
    # Standardising over a single input would centre it to zero and cut the network.
    layout = Layout.build((5, 5), [1], 2)
    phenotype = make_decoder(name, layout).decode(population(make_decoder(name, layout)))
    w = phenotype.weights[1]  # [P, 2, 1]
    assert (w.abs() > 0).all()
    if name != "direct":
        gains = make_decoder(name, layout).blocks().split(population(make_decoder(name, layout)))
        expected = math.sqrt(2.0) * layer_gain(gains["l1.gain"])[:, :, None]
        torch.testing.assert_close(w.abs(), expected.expand_as(w), rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_decoding_into_a_workspace_equals_a_fresh_decode(name):
    dec = make_decoder(name, LAYOUT)
    first, second = population(dec, seed=1), population(dec, seed=2)
    workspace = dec.decode(first)
    assert dec.decode(second, out=workspace) is workspace
    fresh = dec.decode(second)
    for x, y in zip(
        workspace.weights + workspace.biases, fresh.weights + fresh.biases, strict=True
    ):
        assert torch.equal(x, y)


def test_a_workspace_of_the_wrong_kind_is_refused():
    dec = make_decoder("gnet", LAYOUT)
    pop = population(dec, n=4)
    good = dec.decode(pop)
    other = make_decoder("gnet", Layout.build((6, 5), [5], 3))
    other_layout = other.decode(population(other, n=4))
    for out in (dec.decode(pop[:3]), dec.decode(pop.float()), other_layout):
        with pytest.raises(ValueError, match="out must be a phenotype of layout"):
            dec.decode(pop, out=out)
    strided = type(good)(
        [w.transpose(1, 2).contiguous().transpose(1, 2) for w in good.weights],
        good.biases,
        good.layout,
    )
    with pytest.raises(ValueError, match="contiguous"):
        dec.decode(pop, out=strided)
    tracked = type(good)([w.requires_grad_(True) for w in good.weights], good.biases, good.layout)
    with pytest.raises(ValueError, match="must not require grad"):
        dec.decode(pop, out=tracked)
