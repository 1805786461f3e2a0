"""Episodes: pure functions of (seed, split, i), labels permuted, groups kept, bad files named."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from tasks.episodes import draw_episodes, load_source
from tasks.labelled import DIGIT_SPLITS, DataError, LabelledImages, load_npz


def grouped_set(n_groups=3, classes_per_group=6, per_class=10, side=5) -> LabelledImages:
    c = n_groups * classes_per_group
    labels = torch.arange(c).repeat_interleave(per_class)
    # Every image carries its class in pixel 0 and its index in pixel 1, so draws can be traced.
    images = torch.zeros(len(labels), side, side)
    images[:, 0, 0] = labels.float()
    images[:, 0, 1] = torch.arange(len(labels)).float()
    return LabelledImages(
        name="toy",
        images=images,
        labels=labels,
        groups=torch.arange(n_groups).repeat_interleave(classes_per_group),
        group_names=[f"g{k}" for k in range(n_groups)],
        class_names=[str(k) for k in range(c)],
    )


def test_episode_i_is_the_same_whichever_episodes_are_drawn_with_it():
    src = grouped_set()
    a = draw_episodes(src, way=5, shot=2, query=3, seed=4, split="evaluation", indices=10)
    b = draw_episodes(src, way=5, shot=2, query=3, seed=4, split="evaluation", indices=[7, 3])
    assert torch.equal(a.support_x[[7, 3]], b.support_x)
    assert torch.equal(a.query_x[[7, 3]], b.query_x)
    c = draw_episodes(src, way=5, shot=2, query=3, seed=4, split="validation", indices=10)
    d = draw_episodes(src, way=5, shot=2, query=3, seed=5, split="evaluation", indices=10)
    assert not torch.equal(a.classes, c.classes)
    assert not torch.equal(a.classes, d.classes)


def test_episode_i_is_the_same_in_another_process():
    code = (
        "import torch; from tasks.episodes import draw_episodes, load_source;"
        "e = draw_episodes(load_source('digits', 'evaluation', (8, 8)), way=5, shot=1, "
        "query=2, seed=3, indices=[5]); print(e.classes.tolist(), float(e.query_x.sum()))"
    )
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout}
    here = draw_episodes(
        load_source("digits", "evaluation", (8, 8)), way=5, shot=1, query=2, seed=3, indices=[5]
    )
    assert outs == {f"{here.classes.tolist()} {float(here.query_x.sum())}\n"}


def test_support_and_query_images_belong_to_their_labels_and_never_repeat():
    src = grouped_set()
    eps = draw_episodes(src, way=4, shot=3, query=5, indices=20)
    for x, y in ((eps.support_x, eps.support_y), (eps.query_x, eps.query_y)):
        assert torch.equal(x[:, :, 0, 0].long(), torch.gather(eps.classes, 1, y))
    ids = torch.cat([eps.support_x[:, :, 0, 1], eps.query_x[:, :, 0, 1]], dim=1)
    assert all(len(set(row.tolist())) == ids.shape[1] for row in ids)


def test_within_group_episodes_keep_to_one_group_and_labels_are_permuted():
    src = grouped_set()
    eps = draw_episodes(src, way=5, shot=1, query=1, indices=50, within_groups=True)
    groups = src.groups[eps.classes]
    assert (groups == groups[:, :1]).all()
    across = draw_episodes(src, way=5, shot=1, query=1, indices=50, within_groups=False)
    assert (src.groups[across.classes] != src.groups[across.classes][:, :1]).any()
    # Label 0 is not always the smallest class: the order is drawn per episode.
    assert (eps.classes[:, 0] != eps.classes.min(dim=1).values).any()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"way": 7}, "group of 7"),
        ({"way": 5, "shot": 6, "query": 5}, "lower shot or query"),
        ({"way": 1}, "way must be"),
        ({"way": 20, "within_groups": False}, "the set has 18"),
    ],
)
def test_impossible_episodes_are_refused_with_the_reason(kwargs, match):
    args = {"shot": 1, "query": 1, "indices": 2, **kwargs}
    with pytest.raises(DataError, match=match):
        draw_episodes(grouped_set(), **args)


def test_digit_splits_hold_disjoint_classes():
    bg = load_source("digits", "background", (8, 8))
    ev = load_source("digits", "evaluation", (8, 8))
    assert bg.class_names == [str(c) for c in DIGIT_SPLITS["background"]]
    assert ev.class_names == [str(c) for c in DIGIT_SPLITS["evaluation"]]
    assert not set(bg.class_names) & set(ev.class_names)
    assert load_source("digits", "evaluation", (12, 10)).image_shape == (12, 10)
    with pytest.raises(DataError, match="valid splits"):
        load_source("digits", "validation", (8, 8))


def save(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_npz_loads_with_groups_resized_and_normalised(tmp_path):
    rng = np.random.default_rng(0)
    path = save(
        tmp_path / "mine.npz",
        images=rng.random((30, 10, 12)),
        labels=np.repeat(["a", "b", "c"], 10),
        groups=np.repeat(["x", "x", "y"], 10),
    )
    data = load_npz(path, (6, 6))
    assert data.image_shape == (6, 6)
    assert data.class_names == ["a", "b", "c"] and data.group_names == ["x", "y"]
    assert data.groups.tolist() == [0, 0, 1]
    torch.testing.assert_close(data.images.mean(dim=(1, 2)), torch.zeros(30), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"labels": np.zeros(3)}, "missing array"),
        ({"images": np.zeros((3, 4, 4)), "labels": np.zeros(2)}, "one per image"),
        ({"images": np.zeros((3, 4)), "labels": np.zeros(3)}, r"\[N, H, W\]"),
        ({"images": np.full((2, 4, 4), np.nan), "labels": np.zeros(2)}, "non-finite"),
        (
            {"images": np.zeros((2, 4, 4)), "labels": np.zeros(2), "groups": np.zeros(3)},
            "groups must be",
        ),
        (
            {"images": np.zeros((2, 4, 4)), "labels": np.array([0, 0]), "groups": [0, 1]},
            "more than one group",
        ),
    ],
)
def test_a_bad_npz_gets_one_clear_error(tmp_path, arrays, match):
    with pytest.raises(DataError, match=match):
        load_npz(save(tmp_path / "bad.npz", **arrays))


def test_an_npz_that_is_not_one_or_holds_pickles_is_refused(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable"):
        load_npz(junk)
    pickled = save(
        tmp_path / "obj.npz", images=np.zeros((2, 4, 4)), labels=np.array([{}, {}], dtype=object)
    )
    with pytest.raises(DataError, match="not a readable"):
        load_npz(pickled)
    with pytest.raises(DataError, match="no such file"):
        load_npz(tmp_path / "absent.npz")


def test_too_few_classes_or_examples_in_a_file_are_named(tmp_path):
    path = save(tmp_path / "few.npz", images=np.zeros((6, 4, 4)), labels=np.repeat([0, 1, 2], 2))
    data = load_npz(path)
    with pytest.raises(DataError, match="5-way episodes need 5 classes"):
        draw_episodes(data, way=5, shot=1, query=1, indices=1, within_groups=False)
    with pytest.raises(DataError, match="lower shot or query"):
        draw_episodes(data, way=3, shot=1, query=15, indices=1, within_groups=False)
