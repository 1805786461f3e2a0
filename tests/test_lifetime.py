"""Lifetime learning: rules lower the loss, batching equals a loop, heads and the protocol."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from genome import Layout
from genome.decoders import GNet
from lifetime.baselines import kaiming_bodies, pixel_prototype, random_genomes
from lifetime.fewshot import accuracy, interval, paired
from lifetime.heads import HEADS, adapt
from lifetime.rules import RULES, Net, loss, make_rule
from lifetime.rules.eqprop import free_state, readout, relax
from tasks.episodes import Episodes

RULE_NAMES = sorted(RULES)
LEARNING_HEADS = [h for h in HEADS if h != "prototype"]


def tiny_net(sizes=(6, 5, 3), groups=3, scale=0.5, seed=0, dtype=torch.float64) -> Net:
    g = torch.Generator().manual_seed(seed)
    ws = [
        torch.randn(groups, o, i, generator=g, dtype=dtype) * scale
        for i, o in itertools.pairwise(sizes)
    ]
    bs = [torch.randn(groups, o, generator=g, dtype=dtype) * 0.1 for o in sizes[1:]]
    return Net(tuple(ws), tuple(bs))


def easy_support(groups=3, per_class=4, way=3, n_in=6, seed=1, dtype=torch.float64):
    """Classes far apart along their own input direction: an easy episode."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(way).repeat_interleave(per_class).expand(groups, -1).contiguous()
    centres = torch.eye(way, n_in, dtype=dtype) * 3
    x = centres[y] + 0.3 * torch.randn(groups, way * per_class, n_in, generator=g, dtype=dtype)
    return x, y


def toy_episodes(e=6, way=3, shot=2, query=4, side=4, seed=0, noise=0.2) -> Episodes:
    """Separable toy classes: class c lights up its own block of pixels."""
    g = torch.Generator().manual_seed(seed)
    base = torch.zeros(way, side, side)
    for c in range(way):
        base[c].view(-1)[c * 4 : c * 4 + 4] = 3.0

    def draw(n):
        y = torch.arange(way).repeat_interleave(n).expand(e, -1).contiguous()
        x = base[y] + noise * torch.randn(e, way * n, side, side, generator=g)
        return x, y

    sx, sy = draw(shot)
    qx, qy = draw(query)
    return Episodes(
        sx, sy, qx, qy, torch.arange(way).expand(e, -1), torch.arange(e), way, shot, query
    )


# --- rules -------------------------------------------------------------------


@pytest.mark.parametrize("name", RULE_NAMES)
def test_every_rule_lowers_the_support_loss_on_an_easy_episode(name):
    net = tiny_net()
    x, y = easy_support()
    rule = make_rule(name, steps=5, lr=0.2)
    before = loss(net(x), y)
    after = loss(rule.adapt(net, x, y, 3)(x), y)
    assert (after < before).all(), (before, after)


@pytest.mark.parametrize("name", RULE_NAMES)
def test_a_rate_of_zero_changes_nothing(name):
    net = tiny_net()
    x, y = easy_support()
    out = make_rule(name, steps=3, lr=0.0).adapt(net, x, y, 3)
    for a, b in zip(net.weights + net.biases, out.weights + out.biases, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", RULE_NAMES)
def test_batched_adaptation_equals_a_loop_over_networks(name):
    net = tiny_net(groups=4)
    x, y = easy_support(groups=4)
    rule = make_rule(name, steps=3, lr=0.1)
    batched = rule.adapt(net, x, y, 3)
    for g in range(4):
        one = Net(tuple(w[g : g + 1] for w in net.weights), tuple(b[g : g + 1] for b in net.biases))
        alone = rule.adapt(one, x[g : g + 1], y[g : g + 1], 3)
        for a, b in zip(
            alone.weights + alone.biases, batched.weights + batched.biases, strict=True
        ):
            torch.testing.assert_close(a[0], b[g], rtol=1e-10, atol=1e-12)


def test_fa_with_transposed_feedback_equals_sgd():
    net = tiny_net(sizes=(6, 5, 4, 3))
    x, y = easy_support()
    fa = make_rule("fa", steps=4, lr=0.3, feedback="weights").adapt(net, x, y, 3)
    sgd = make_rule("sgd", steps=4, lr=0.3).adapt(net, x, y, 3)
    for a, b in zip(fa.weights + fa.biases, sgd.weights + sgd.biases, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_fa_with_random_feedback_differs_from_sgd_in_hidden_layers():
    net = tiny_net(sizes=(6, 5, 3))
    x, y = easy_support()
    fa = make_rule("fa", steps=1, lr=0.3).adapt(net, x, y, 3)
    sgd = make_rule("sgd", steps=1, lr=0.3).adapt(net, x, y, 3)
    torch.testing.assert_close(fa.weights[-1], sgd.weights[-1])  # the top layer needs no feedback
    assert not torch.allclose(fa.weights[0], sgd.weights[0])


def test_hebbian_with_zero_coefficients_changes_nothing():
    net = tiny_net()
    x, y = easy_support()
    zero = [0.0, 0.0, 0.0, 0.0]
    out = make_rule("hebbian", steps=3, lr=1.0, head=zero, hidden=zero).adapt(net, x, y, 3)
    for a, b in zip(net.weights + net.biases, out.weights + out.biases, strict=True):
        assert torch.equal(a, b)


def test_hebbian_one_step_matches_a_hand_computation_on_a_2x2_layer():
    w = torch.tensor([[[0.5, -1.0], [0.25, 2.0]]], dtype=torch.float64)
    net = Net((w,), (torch.zeros(1, 2, dtype=torch.float64),))
    x = torch.tensor([[[1.0, 2.0], [3.0, -1.0]]], dtype=torch.float64)  # pre, two examples
    y = torch.tensor([[0, 1]])  # post clamped to one-hot: [1, 0] then [0, 1]
    a, b, c, d, lr = 0.5, 0.25, -1.0, 0.125, 0.1
    out = make_rule("hebbian", steps=1, lr=lr, head=[a, b, c, d]).adapt(net, x, y, 2)
    expected = w[0].clone()
    pre, post = x[0], torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    for i in range(2):  # post unit
        for j in range(2):  # pre unit
            dw = sum(
                a * pre[s, j] * post[s, i] + b * pre[s, j] + c * post[s, i] + d for s in range(2)
            )
            expected[i, j] += lr * dw / 2
    expected *= 2.0 / expected.abs().max()  # back to the layer's largest weight at birth
    torch.testing.assert_close(out.weights[0][0], expected)


def test_eqprop_update_approaches_the_gradient_as_beta_goes_to_zero():
    """Scellier and Bengio's theorem, on a tiny network in float64."""
    net = tiny_net(sizes=(4, 6, 5, 3), groups=2, scale=0.15, seed=3)
    x, y = easy_support(groups=2, n_in=4)
    x = x[:, :5]
    y = y[:, :5]
    params = [p.clone().requires_grad_() for p in net.weights + net.biases]
    live = Net(tuple(params[:3]), tuple(params[3:]))
    start, caps = free_state(live, x, 10.0)
    target = torch.nn.functional.one_hot(y, 3).double()
    free = relax(live, x, start, target, torch.zeros(2, dtype=torch.float64), 300, caps)
    reference = torch.autograd.grad(loss(readout(live, free[-1]), y).sum(), params)

    def error(beta, nudging):
        rule = make_rule(
            "eqprop", beta=beta, free_steps=300, nudged_steps=300, nudging=nudging, cap=10.0
        )
        dw, db = rule.gradient(net, x, y, 3)
        return max(
            float((a - b).norm() / b.norm()) for a, b in zip(dw + db, reference, strict=True)
        )

    sym = [error(b, "symmetric") for b in (0.1, 0.01, 0.001)]
    pos = [error(b, "positive") for b in (0.1, 0.01, 0.001)]
    assert sym[0] > sym[1] > sym[2] and sym[2] < 1e-4
    assert pos[0] > pos[1] > pos[2] and pos[2] < 1e-2


def test_eqprop_free_phase_is_the_feedforward_pass_with_one_hidden_layer():
    net = tiny_net(sizes=(6, 5, 3), scale=2.0)  # strong weights: the read-out feeds nothing back
    x, y = easy_support()
    start, caps = free_state(net, x, 2.0)
    target = torch.nn.functional.one_hot(y, 3).double()
    free = relax(net, x, start, target, torch.zeros(3, dtype=torch.float64), 5, caps)
    acts = net.activations(x)
    torch.testing.assert_close(free[0], acts[0])
    torch.testing.assert_close(readout(net, free[0]), acts[1])


def test_eqprop_on_a_single_layer_is_the_delta_rule():
    net = tiny_net(sizes=(6, 3))
    x, y = easy_support()
    ep = make_rule("eqprop", steps=3, lr=0.3).adapt(net, x, y, 3)
    sgd = make_rule("sgd", steps=3, lr=0.3).adapt(net, x, y, 3)
    for a, b in zip(ep.weights + ep.biases, sgd.weights + sgd.biases, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("sgd", {"lr": -1}),
        ("sgd", {"steps": 1.5}),
        ("sgd", {"momentum": 0.9}),
        ("fa", {"feedback": "sign"}),
        ("hebbian", {"head": [1, 2, 3]}),
        ("eqprop", {"beta": 0}),
        ("eqprop", {"nudging": "up"}),
        ("nope", {}),
    ],
)
def test_bad_rule_settings_name_the_fault(name, settings):
    with pytest.raises(ValueError, match=next(iter(settings), "nope")):
        make_rule(name, **settings)


# --- heads and the protocol --------------------------------------------------

LAYOUT = Layout.build((4, 4), [8], 2)


def test_prototype_head_scores_all_on_separable_toy_classes():
    body = kaiming_bodies(LAYOUT, 3, torch.Generator().manual_seed(0), dtype=torch.float64)
    # An identity-like first layer keeps the classes apart in the features.
    w = torch.zeros(3, 8, 16, dtype=torch.float64)
    w[:, torch.arange(8), torch.arange(0, 16, 2)] = 1.0
    w[:, torch.arange(8), torch.arange(1, 16, 2)] = 1.0
    body.weights[0] = w
    eps = toy_episodes()
    assert torch.equal(accuracy(body, eps, None, "prototype"), torch.ones(3, len(eps)))
    assert torch.equal(pixel_prototype(eps), torch.ones(len(eps), dtype=torch.float64))


@pytest.mark.parametrize("head", LEARNING_HEADS)
@pytest.mark.parametrize("name", RULE_NAMES)
def test_adapting_a_population_equals_adapting_each_individual_on_each_episode(name, head):
    body = kaiming_bodies(LAYOUT, 3, torch.Generator().manual_seed(1), dtype=torch.float64)
    eps = toy_episodes(e=2)
    rule = make_rule(name, steps=2, lr=0.1)
    batched = adapt(body, eps.support_x, eps.support_y, rule, head, eps.way).phenotype()
    assert batched.population_size == 3 * 2
    for p in range(3):
        for e in range(2):
            one = adapt(
                body.select([p]), eps.support_x[e : e + 1], eps.support_y[e : e + 1], rule, head, 3
            ).phenotype()
            for a, b in zip(
                one.weights + one.biases, batched.weights + batched.biases, strict=True
            ):
                torch.testing.assert_close(a[0], b[p * 2 + e], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("head", HEADS)
def test_the_adapted_phenotype_gives_the_adapted_logits(head):
    body = kaiming_bodies(LAYOUT, 2, torch.Generator().manual_seed(2), dtype=torch.float64)
    eps = toy_episodes(e=3)
    adapted = adapt(body, eps.support_x, eps.support_y, make_rule("sgd", steps=2), head, 3)
    logits = adapted.logits(eps.query_x)  # [P, E, B, way]
    ph = adapted.phenotype()
    for p in range(2):
        for e in range(3):
            net = ph.module(p * 3 + e)
            torch.testing.assert_close(net(eps.query_x[e].double()), logits[p, e])


def test_learning_heads_leave_the_body_or_not_as_named():
    body = kaiming_bodies(LAYOUT, 1, torch.Generator().manual_seed(3), dtype=torch.float64)
    eps = toy_episodes(e=1)
    rule = make_rule("sgd", steps=3, lr=0.5)
    linear = adapt(body, eps.support_x, eps.support_y, rule, "linear", 3).phenotype()
    whole = adapt(body, eps.support_x, eps.support_y, rule, "all", 3).phenotype()
    assert torch.equal(linear.weights[0], body.weights[0])
    assert not torch.equal(whole.weights[0], body.weights[0])


def test_accuracy_in_chunks_equals_one_call(monkeypatch):
    body = kaiming_bodies(LAYOUT, 2, torch.Generator().manual_seed(4))
    eps = toy_episodes(e=5, noise=1.5)
    rule = make_rule("fa", steps=2)
    whole = accuracy(body, eps, rule, "all")
    monkeypatch.setattr("lifetime.fewshot.CHUNK_MEMORY", 1)
    assert torch.equal(accuracy(body, eps, rule, "all"), whole)


def test_interval_matches_a_reference():
    values = torch.tensor([0.2, 0.6, 0.4, 1.0, 0.8, 0.5])
    got = interval(values)
    v = values.double().numpy()
    assert math.isclose(got.mean, float(v.mean()))
    assert math.isclose(got.half_width, 1.96 * float(np.std(v, ddof=1)) / math.sqrt(len(v)))
    d = paired(values, values.flip(0))
    assert math.isclose(d.mean, 0.0, abs_tol=1e-12)


def test_random_genomes_and_kaiming_bodies_are_seeded():
    dec = GNet(LAYOUT, hidden=[4])
    a = random_genomes(dec, 2, torch.Generator().manual_seed(5))
    b = random_genomes(dec, 2, torch.Generator().manual_seed(5))
    assert torch.equal(a.weights[0], b.weights[0])
    k = kaiming_bodies(LAYOUT, 500, torch.Generator().manual_seed(5), dtype=torch.float64)
    assert abs(float(k.weights[0].std()) - (2 / 16) ** 0.5) < 0.01


@pytest.mark.parametrize("name", RULE_NAMES)
def test_adapting_all_in_the_span_of_the_inputs_equals_adapting_every_weight(name):
    """The `all` head's reduced coordinates give the same networks and logits (float64)."""
    layout = Layout.build((5, 6), [7] if name == "eqprop" else [7, 6], 2)
    body = kaiming_bodies(layout, 2, torch.Generator().manual_seed(6), dtype=torch.float64)
    eps = toy_episodes(e=3, side=6, noise=1.0)
    settings = {"hidden": [0.5, 0.1, -0.2, 0.05]} if name == "hebbian" else {}
    rule = make_rule(name, steps=3, lr=0.2, **settings)
    reduced = adapt(body, eps.support_x[:, :, :5], eps.support_y, rule, "all", 3)
    rule.updates_in_input_span = lambda n: False
    full = adapt(body, eps.support_x[:, :, :5], eps.support_y, rule, "all", 3)
    assert (reduced.basis is not None) == (name != "hebbian")
    a, b = reduced.phenotype(), full.phenotype()
    for u, v in zip(a.weights + a.biases, b.weights + b.biases, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-10)
    q = eps.query_x[:, :, :5]
    torch.testing.assert_close(reduced.logits(q), full.logits(q), rtol=1e-9, atol=1e-10)


def test_eqprop_refuses_to_adapt_a_body_with_two_hidden_layers():
    """Its free fixed point would not be the feedforward network that is scored."""
    net = tiny_net(sizes=(6, 5, 4, 3))
    x, y = easy_support()
    with pytest.raises(ValueError, match="at most one hidden layer, got 2"):
        make_rule("eqprop").adapt(net, x, y, 3)
    make_rule("eqprop", steps=1).adapt(tiny_net(sizes=(6, 5, 3)), x, y, 3)


def test_the_pretrained_body_learns_its_background_classes():
    from lifetime.baselines import pretrained_body
    from tasks.episodes import load_source

    layout = Layout.build((8, 8), [16], 1)
    source = load_source("digits", "background", (8, 8))
    body = pretrained_body(layout, source, steps=150, classes_per_batch=5, per_class=16)
    assert body.layout.sizes[-1] == source.n_classes
    hits = body(source.images).argmax(dim=-1)[0] == source.labels
    assert float(hits.float().mean()) > 0.9
