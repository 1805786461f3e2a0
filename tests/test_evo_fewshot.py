"""The few-shot objective: evolution selecting for what the born network learns."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import TINY, changed

from evo import config
from evo.driver import new_run
from evo.objectives import FewShot
from evo.sections import ConfigError
from genome import Layout
from genome.decoders import make_decoder
from lifetime.fewshot import scores
from lifetime.rules import make_rule

# Digits 0-4 at 8x8, 3-way 1-shot episodes: a run of seconds.
SETTINGS = {"data": "digits", "size": 8, "way": 3, "query": 2, "episodes": 3, "test_episodes": 4}
RUN = changed(
    TINY,
    task={"objectives": ["fewshot"]},
    objectives={"fewshot": SETTINGS},
    layout={"hidden": [12]},
)


def phenotype(p: int = 4):
    layout = Layout.build((8, 8), [12], 3)
    decoder = make_decoder("gnet", layout, hidden=[4, 4])
    return decoder.decode(decoder.init(p, torch.Generator().manual_seed(0)))


def test_the_value_is_the_query_loss_after_the_lifetime_loop():
    obj = FewShot(**SETTINGS)
    a = obj.batch(torch.Generator().manual_seed(5))
    b = obj.batch(torch.Generator().manual_seed(5))
    c = obj.batch(torch.Generator().manual_seed(6))
    assert torch.equal(a.support_x, b.support_x) and not torch.equal(a.support_x, c.support_x)
    assert a.support_x.shape == (3, 3, 8, 8) and a.query_x.shape == (3, 6, 8, 8)
    ph = phenotype()
    got = obj.evaluate(ph, a)
    acc, loss = scores(ph, a, make_rule("sgd"), "linear")
    torch.testing.assert_close(got["fewshot"], loss.mean(dim=1).float())
    torch.testing.assert_close(got["acc"], acc.mean(dim=1).float())
    assert got["fewshot"].shape == (4,) and bool((got["acc"] >= 0).all())
    # Another rule and head give other values on the same episodes.
    other = FewShot(**SETTINGS, head="prototype").evaluate(ph, a)["fewshot"]
    assert not torch.equal(other, got["fewshot"])


def test_the_test_uses_fixed_episodes_of_the_held_out_classes():
    obj = FewShot(**SETTINGS)
    ph = phenotype(2)
    first, second = obj.test(ph), FewShot(**SETTINGS).test(ph)
    assert set(first) == {"loss", "acc"}
    assert torch.equal(first["acc"], second["acc"])
    assert set(obj._data_test.classes.unique().tolist()) <= {0, 1, 2, 3, 4}


def test_a_run_selects_on_few_shot_skill_and_reports_it(tmp_path):
    cfg = config.resolve(config.validate(RUN, "test"), "test")
    assert cfg["layout"]["input"] == [8, 8] and cfg["layout"]["output"] == 3
    res = new_run(cfg, tmp_path, progress=False)
    with open(res.run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert res.run_dir.name.startswith("fewshot__gnet__s0__")
    assert [int(r["generation"]) for r in rows] == [0, 1, 2]
    assert 0 <= float(rows[1]["test_fewshot_acc"]) <= 1
    assert all(float(r["fewshot_acc_best"]) >= 0 for r in rows)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"way": 6}, "way: 6-way episodes need 6 classes"),
        ({"head": "tail"}, "head: 'tail' is not valid"),
        ({"rule": "magic"}, "unknown rule"),
        ({"rule_settings": {"lr": -1}}, "lr must be"),
        ({"data": "faces"}, "data: 'faces' is not valid"),
        ({"size": 1000}, "size: must be an integer from 4 to"),
        ({"episodes": 0}, "episodes: must be an integer from 1"),
        ({"samples": -1}, "samples: must be an integer from 0 to"),
        ({"data": "glyphs", "samples": 2}, r"samples: an episode takes shot \+ query = 3"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(changes, words):
    raw = changed(RUN, objectives={"fewshot": {**SETTINGS, **changes}})
    with pytest.raises(ConfigError, match=words):
        config.validate(raw, "test")


def test_eqprop_on_every_weight_of_a_deep_body_is_refused_before_the_run():
    raw = changed(
        RUN,
        objectives={"fewshot": {**SETTINGS, "rule": "eqprop", "head": "all"}},
        layout={"hidden": [12, 12]},
    )
    with pytest.raises(ConfigError, match=r"objectives\.fewshot\.rule: rule 'eqprop' adapts"):
        config.resolve(config.validate(raw, "test"), "test")
    config.resolve(config.validate(changed(raw, layout={"hidden": [12]}), "test"), "test")


def test_the_gradient_searcher_is_refused():
    raw = changed(RUN, algorithm={"name": "gradient", "population_size": 1})
    with pytest.raises(ConfigError, match=r"algorithm\.name: 'gradient' follows the gradient"):
        config.validate(raw, "test")


def test_glyph_episodes_come_from_the_drawn_samples_unless_samples_is_0():
    glyphs = {"data": "glyphs", "size": 12, "way": 3, "query": 2, "episodes": 4, "samples": 5}
    obj = FewShot(**glyphs, seed=3)
    episodes = obj.batch(torch.Generator().manual_seed(1))
    drawn = obj._source("background")
    assert drawn.counts.tolist() == [5] * drawn.n_classes
    images = torch.cat([episodes.support_x, episodes.query_x], dim=1).flatten(0, 1)
    labels = torch.cat([episodes.support_y, episodes.query_y], dim=1)
    classes = episodes.classes.gather(1, labels).flatten()  # the character behind each image
    for image, c in zip(images, classes, strict=True):
        own = drawn.images[drawn.labels == int(c)]
        assert bool((own == image).all(dim=(1, 2)).any())
    # The background set is the run's seed's; the test's is the same for every run.
    other = FewShot(**glyphs, seed=4)
    assert not torch.equal(other._source("background").images, drawn.images)
    assert torch.equal(other._source("evaluation").images, obj._source("evaluation").images)
    again = FewShot(**glyphs, seed=3).batch(torch.Generator().manual_seed(1))
    assert torch.equal(again.query_x, episodes.query_x)
    fresh = FewShot(**{**glyphs, "samples": 0}, seed=3)
    assert fresh._source("background").__class__.__name__ == "GlyphSet"
    assert fresh.batch(torch.Generator().manual_seed(1)).query_x.shape == episodes.query_x.shape
