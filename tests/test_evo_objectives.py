"""Objectives and the problem on tiny data: values match plain loops, non-finite scores worst."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from evo import workspaces
from evo.objectives import OBJECTIVES, Digits, Faces, Wiring, make_objective, roc_auc
from evo.problem import WORST, GenomeProblem
from genome import Layout, make_decoder, native
from tasks.seeds import derive_seed


def _auc_loop(scores: list[float], labels: list[int]) -> float:
    """Mann-Whitney: P(score of a positive > score of a negative), ties count half."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_roc_auc_matches_a_loop_with_ties():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (40,), generator=g)
    scores = torch.randint(0, 6, (5, 40), generator=g).float()  # many ties
    got = roc_auc(scores, labels)
    want = [_auc_loop(s.tolist(), labels.tolist()) for s in scores]
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64))


def _auc_pairwise(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Every (positive, negative) pair compared: the counts, and so the bits, roc_auc must give."""
    pos, neg = scores[:, labels.bool(), None], scores[:, None, ~labels.bool()]
    twice = (2 * (pos > neg).sum((1, 2)) + (pos == neg).sum((1, 2))).to(torch.float64)
    auc = twice / 2 / (pos.shape[1] * neg.shape[2])
    return torch.where(torch.isfinite(scores).all(dim=1), auc, torch.full_like(auc, float("nan")))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(64, 200), (7, 999), (3, 2), (1, 5), (33, 64)])
def test_roc_auc_counts_exactly_on_every_path(dtype, shape):
    # float32 on the CPU sorts integer keys (NumPy); float64 takes torch's sort and
    # searchsorted: both must give the pairwise counts' bits, ties, -0 = +0 and
    # non-finite rows included, for strided scores too.
    g = torch.Generator().manual_seed(shape[1])
    p, b = shape
    labels = torch.randperm(b, generator=g) % 2
    labels[0], labels[-1] = 0, 1
    scores = torch.randn(p, b, generator=g, dtype=dtype)
    scores[0, : b // 2] = 0.25  # a tie of many, across the classes
    scores[-1] = scores[-1].round()
    scores[0, 0], scores[-1, -1] = -0.0, 0.0
    if p > 3:
        scores[1, 1], scores[2, 0], scores[3, 0] = float("nan"), float("inf"), -float("inf")
    for view in (scores, torch.cat([scores, scores], dim=1)[:, ::2]):
        got = roc_auc(view, labels)
        want = _auc_pairwise(view, labels)
        assert torch.equal(got.nan_to_num(-1.0), want.nan_to_num(-1.0))
        assert got.dtype == torch.float64 and got.isnan().sum() == want.isnan().sum()


def test_roc_auc_nan_for_nonfinite_rows_and_single_class():
    labels = torch.tensor([0, 1, 0, 1])
    scores = torch.tensor([[0.1, 0.9, 0.2, 0.8], [float("nan"), 1.0, 0.0, 1.0]])
    auc = roc_auc(scores, labels)
    assert auc[0] == 1.0 and torch.isnan(auc[1])
    assert torch.isnan(roc_auc(scores, torch.ones(4, dtype=torch.long))).all()


def _phenotype(layout: Layout, p: int = 4):
    dec = make_decoder("gnet", layout, hidden=[4, 4])
    return dec, dec.decode(dec.init(p, torch.Generator().manual_seed(1)))


def test_faces_objective_matches_per_individual_loop():
    obj = Faces(batch_size=32, bank_size=256)  # a small bank: rendered in a moment
    _, ph = _phenotype(Layout.build(obj.input_shape, [8], obj.n_outputs))
    x, y = obj.batch(torch.Generator().manual_seed(2))
    assert x.shape == (32, 25, 25) and y.shape == (32,)
    out = obj.evaluate(ph, (x, y))
    for i in range(ph.population_size):
        logits = ph.module(i)(x)[:, 0]
        loss = F.binary_cross_entropy_with_logits(logits, y.float())
        assert torch.allclose(out["faces"][i], loss, atol=1e-5)
        assert out["acc"][i] == ((logits > 0) == y.bool()).float().mean()
    test = obj.test(ph)
    assert set(test) == {"loss", "acc", "auc"} and test["auc"].shape == (4,)


def test_digits_objective_matches_per_individual_loop():
    obj = Digits(batch_size=32, dataset="digits")
    assert obj.input_shape == (8, 8) and obj.n_outputs == 10
    _, ph = _phenotype(Layout.build(obj.input_shape, [16], obj.n_outputs))
    x, y = obj.batch(torch.Generator().manual_seed(3))
    out = obj.evaluate(ph, (x, y))
    for i in range(ph.population_size):
        logits = ph.module(i)(x)
        assert torch.allclose(out["digits"][i], F.cross_entropy(logits, y), atol=1e-5)
    assert obj.test(ph)["acc"].shape == (4,)


def test_digits_augmentation_is_seeded_keeps_labels_and_spares_the_test_set():
    import tasks
    from evo.objectives import AUGMENTS

    assert AUGMENTS == tasks.AUGMENTS
    plain, shifted = Digits(batch_size=32), Digits(batch_size=32, augment="shift")
    x, y = plain.batch(torch.Generator().manual_seed(3))
    ax, ay = shifted.batch(torch.Generator().manual_seed(3))
    assert torch.equal(ay, y) and ax.shape == x.shape and not torch.equal(ax, x)
    assert torch.equal(ax, shifted.batch(torch.Generator().manual_seed(3))[0])
    _, ph = _phenotype(Layout.build(plain.input_shape, [16], plain.n_outputs))
    test, test_shifted = plain.test(ph), shifted.test(ph)
    assert all(torch.equal(test[k], test_shifted[k]) for k in test)
    with pytest.raises(
        ValueError, match=r"objective 'faces': unknown augment 'shift'; valid values: none"
    ):
        Faces(augment="shift")


def test_wiring_objective_is_the_scale_free_wiring_cost():
    from genome.wiring import wiring_cost

    _, ph = _phenotype(Layout.build((8, 8), [16], 10))
    got = Wiring().evaluate(ph, None)
    assert torch.equal(got["wiring"], wiring_cost(ph, scale_free=True))
    assert torch.equal(got["raw"], wiring_cost(ph)) and got["wiring"].shape == (4,)


def test_registry_and_unknown_objective():
    assert set(OBJECTIVES) == {"faces", "digits", "fewshot", "wiring"}
    with pytest.raises(ValueError, match="valid objectives: faces, digits, fewshot, wiring"):
        make_objective("smell")


def _problem(mode: str = "weighted", seed: int = 0) -> GenomeProblem:
    layout = Layout.build((8, 8), [16], 10)
    dec = make_decoder("gnet", layout, hidden=[4, 4])
    objs = [Digits(batch_size=32), Wiring()]
    return GenomeProblem(dec, objs, weights=[1.0, 0.01], mode=mode, seed=seed)


@pytest.mark.parametrize("shape", [(8, 8), (25, 25)])
def test_fitness_is_a_pure_function_of_genome_generation_and_seed(shape):
    layout = Layout.build(shape, [16], 10)
    dec = make_decoder("gnet", layout, hidden=[16, 16])  # unchunked, this one differs by piece
    data = Faces if shape == (25, 25) else Digits

    class Any10(data):
        n_outputs = 10
        metrics = ()

        def evaluate(self, phenotype, batch):
            return {self.name: phenotype(batch[0]).square().mean(dim=(1, 2))}

    p = GenomeProblem(dec, [Any10(batch_size=32)], seed=0)
    pop = dec.init(40, torch.Generator().manual_seed(0))

    def fit(x, g, problem=p):
        return problem.fitness(problem.score(x, g))[0]

    whole = fit(pop, 5)
    assert torch.equal(whole, fit(pop.clone(), 5))
    # Any piece that starts on a chunk boundary, as on a Ray actor, scores bit for bit the same.
    assert torch.equal(whole, torch.cat([fit(pop[:16], 5), fit(pop[16:], 5)]))
    assert torch.equal(whole[32:], fit(pop[32:].clone(), 5))
    # Chunks read in place where aligned, copied where not: the same bits either way.
    skewed = torch.empty(pop.numel() + 1)[1:].view_as(pop).copy_(pop)
    assert skewed.data_ptr() % 64 != 0 and torch.equal(whole, fit(skewed, 5))
    assert not torch.equal(whole, fit(pop, 6))
    other = GenomeProblem(dec, [Any10(batch_size=32)], seed=1)
    assert not torch.equal(whole, fit(pop, 5, other))
    assert derive_seed(0, 1) != derive_seed(1, 0)


def test_a_lone_genome_scored_again_is_decoded_once(monkeypatch):
    # The driver scores the reigning champion again on every generation's batch:
    # its phenotype is decoded once, and its scores are those of a fresh decode.
    p = _problem()
    pop = p.decoder.init(3, torch.Generator().manual_seed(0))
    decoded = []
    decode = p.decoder.decode

    def counting(population, *args, **kwargs):
        decoded.append(population.shape[0])
        return decode(population, *args, **kwargs)

    monkeypatch.setattr(p.decoder, "decode", counting)
    champion = pop[0].clone()
    champion[0] = 0.0
    p.score(champion[None], 0, exact=False)
    again = p.score(champion[None], 1, exact=False)
    assert decoded == [1]
    fresh = _problem().score(champion[None], 1, exact=False)
    assert again.keys() == fresh.keys()
    assert all(torch.equal(again[c], fresh[c]) for c in fresh)
    # The same genes but for one zero's sign are another genome; only the last is kept.
    flipped = champion.clone()
    flipped[0] = -0.0
    for genome in (flipped, champion, champion, flipped):
        p.score(genome[None], 2, exact=False)
    assert decoded == [1, 1, 1, 1]
    # Chunks of a population are decoded every time.
    p.score(pop, 2)
    p.score(pop, 2)
    assert decoded == [1, 1, 1, 1, 16, 16]

    def same_as_fresh(generation):
        got = p.score(flipped[None], generation, exact=False)
        fresh = _problem().score(flipped[None], generation, exact=False)
        return all(torch.equal(got[c], fresh[c]) for c in fresh)

    assert same_as_fresh(3) and decoded[-1] == 16
    # Another kernel mode decodes again (the paths differ in the last bits).
    with native.use("torch"):
        assert same_as_fresh(3) and decoded[-1] == 1
    assert same_as_fresh(3) and len(decoded) == 8
    # Workspaces of other sizes crowd the lone one out: it is decoded afresh.
    for size in (2, 3, 5):
        p.score(pop[:1].expand(size, -1), 3, exact=False)
    assert same_as_fresh(4) and decoded[-4:] == [2, 3, 5, 1]


@pytest.mark.parametrize("kernels", ["auto", "torch"])
@pytest.mark.parametrize("decoder", ["gnet", "direct"])
def test_a_population_decoded_ahead_scores_as_chunk_by_chunk(monkeypatch, decoder, kernels):
    # A population whose phenotypes fit in AHEAD_MEMORY is decoded in one pass (the
    # g-network's native layers over every row at once); its scores keep the bits of
    # decoding each chunk of 16 alone, whatever the population's size and memory.
    layout = Layout.build((8, 8), [12], 10)
    dec = make_decoder(decoder, layout, **({"hidden": [8, 8]} if decoder == "gnet" else {}))
    p = GenomeProblem(dec, [Digits(batch_size=24)], seed=0)
    sizes = []
    decode = dec.decode

    def counting(population, *args, **kwargs):
        sizes.append(population.shape[0])
        return decode(population, *args, **kwargs)

    monkeypatch.setattr(dec, "decode", counting)
    g = torch.Generator().manual_seed(1)
    pop = dec.init(64, g) + 0.5 * torch.randn(64, dec.genome_length(), generator=g)
    skewed = torch.empty(pop.numel() + 1)[1:].view_as(pop).copy_(pop)  # not at 64 bytes
    strided = torch.cat([pop, pop], dim=1)[:, : pop.shape[1]]  # rows not contiguous
    with native.use(kernels):
        for population in (pop, pop[:40], pop[5:50], skewed, strided):
            n = population.shape[0]
            monkeypatch.setattr(workspaces, "AHEAD_MEMORY", 32 * 2**20)
            sizes.clear()
            ahead = p.score(population, 3)
            assert sizes == [-(-n // 16) * 16]
            monkeypatch.setattr(workspaces, "AHEAD_MEMORY", 0)
            sizes.clear()
            chunked = p.score(population, 3)
            assert sizes == [16] * -(-n // 16)
            assert ahead.keys() == chunked.keys()
            assert all(torch.equal(ahead[c], chunked[c]) for c in chunked)
    # One buffer serves every population size (grown to the largest), apart from the
    # chunks' workspaces: fronts of new sizes neither allocate nor evict the lone genome's.
    monkeypatch.setattr(workspaces, "AHEAD_MEMORY", 32 * 2**20)
    lone = pop[0].clone()
    p.score(lone[None], 3, exact=False)
    p.score(pop, 3)
    buffer = p._workspaces._ahead.weights[0].data_ptr()
    sizes.clear()
    for n in (20, 37, 50, 33, 64):
        p.score(pop[:n], 3)
    p.score(lone[None], 3, exact=False)
    assert sizes == [32, 48, 64, 48, 64]
    assert p._workspaces._ahead.weights[0].data_ptr() == buffer
    # A decoder that would split a chunk of 16 in two for memory decodes chunk by chunk.
    monkeypatch.setattr(dec, "chunk_size", lambda layout=None: 8)
    sizes.clear()
    p.score(pop, 3)
    assert sizes == [16] * 4


def test_nonfinite_fitness_scores_worst_and_is_flagged():
    for mode in ("weighted", "pareto"):
        p = _problem(mode)
        pop = p.decoder.init(4, torch.Generator().manual_seed(0))
        pop[1, 0] = float("nan")
        pop[2, :] = float("inf")
        fit, data = p.fitness(p.score(pop, 0))
        assert fit.shape == (4, p.n_objectives)
        assert (fit[1:3] == WORST).all() and (fit[[0, 3]] < WORST).all()
        assert data[:, -1].tolist() == [0.0, 1.0, 1.0, 0.0]
        assert p.columns == ["digits", "digits_acc", "wiring", "wiring_raw", "nonfinite"]
