"""The glyph set: cached masters, distinct classes, disjoint splits, distorted samples."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

from tasks import glyphs
from tasks.glyphs import SPLITS, GlyphSet, glyph_counts, load_glyphs, master_similarity


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The catalogue rendered cold into a fresh cache directory, used by the whole module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INNATE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        glyphs._catalogue.cache_clear()
        path = glyphs._cache_path()
        assert not path.exists()
        catalogue = glyphs._catalogue(str(path))
        assert path.exists()
        yield path, catalogue
    glyphs._catalogue.cache_clear()


@pytest.fixture(scope="module")
def background(built) -> GlyphSet:
    return load_glyphs("background")


def _reload(path) -> dict[str, np.ndarray]:
    glyphs._catalogue.cache_clear()
    return glyphs._catalogue(str(path))


def test_masters_are_the_same_cold_and_warm(built):
    path, cold = built
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warm = _reload(path)
    assert warm is not cold
    for name in cold:
        assert np.array_equal(cold[name], warm[name]), name


def test_same_generator_seed_same_samples_other_seed_other_samples(background):
    classes = torch.tensor([0, 5, 17])
    first = background.sample(classes, 4, _gen(3))
    assert torch.equal(first, background.sample(classes, 4, _gen(3)))
    assert not torch.allclose(first, background.sample(classes, 4, _gen(4)))


def test_samples_depend_only_on_the_generator_state(background):
    g = _gen(1)
    first = background.sample(torch.tensor([2]), 3, g)
    second = background.sample(torch.tensor([2]), 3, g)  # the generator moved on
    assert not torch.allclose(first, second)


def test_no_two_kept_classes_are_near_duplicates(built):
    _, cat = built
    similarity = master_similarity(torch.from_numpy(cat["masters"]), torch.from_numpy(cat["faces"]))
    assert similarity.max() < glyphs.DUPLICATE_CORRELATION
    names = set(load_glyphs("background").class_names)
    # One class for the shared shape, kept by the first script.
    assert "Latin:o" in names and "Cyrillic:о" not in names and "Greek:ο" not in names
    assert not {"Latin:o", "Latin:O"} <= names
    assert (cat["n_forms"] >= glyphs.MIN_FORMS).all()


def test_two_samples_of_a_class_differ_and_every_sample_is_normalised(background):
    x = background.sample(torch.arange(0, 100, 10), 2, _gen(0))
    assert x.shape == (10, 2, 28, 28) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert ((x[:, 0] - x[:, 1]).abs().amax(dim=(-2, -1)) > 0.1).all()
    flat = x.flatten(2).double()
    assert torch.allclose(flat.mean(-1), torch.zeros(10, 2, dtype=flat.dtype), atol=1e-4)
    assert torch.allclose(
        flat.std(-1, correction=0), torch.ones(10, 2, dtype=flat.dtype), atol=1e-3
    )


def test_splits_are_disjoint_by_script_and_class_and_match_the_counts(built):
    sets = {split: load_glyphs(split) for split in SPLITS}
    counts = glyph_counts()
    for a, b in itertools.combinations(SPLITS, 2):
        assert not set(sets[a].group_names) & set(sets[b].group_names)
        assert not set(sets[a].class_names) & set(sets[b].class_names)
    for split, s in sets.items():
        per_script = torch.bincount(s.groups, minlength=len(s.group_names))
        assert per_script.min() >= 5, (split, per_script)
        assert all(
            name.split(":")[0] == s.group_names[g]
            for name, g in zip(s.class_names, s.groups.tolist(), strict=True)
        )
        assert counts[split] == {
            "scripts": len(s.group_names),
            "characters": s.n_classes,
            "forms": int(s.n_forms.sum()),
            **{name: int(n) for name, n in zip(s.group_names, per_script, strict=True)},
        }
    assert counts["evaluation"]["scripts"] >= 3 and counts["evaluation"]["characters"] >= 20


@pytest.mark.parametrize("size", [(8, 8), (25, 25), (28, 28), (12, 20)])
def test_sizes_work(built, size):
    s = load_glyphs("evaluation", size=size)
    x = s.sample(torch.tensor([0, 1, 2, 3, 4]), 3, _gen(2))
    assert s.image_shape == size and x.shape == (5, 3, *size)
    assert torch.isfinite(x).all() and (x.flatten(2).std(-1) > 0.5).all()


def test_a_corrupt_cache_file_is_rebuilt_with_a_warning(built, monkeypatch):
    path, cat = built
    # The rebuild is the cold build of the fixture; rendering again would only cost time.
    monkeypatch.setattr(glyphs, "_build", lambda: cat)
    path.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="rebuilding the glyph cache"):
        _reload(path)
    np.savez(path, key=np.array("built for other fonts"), **cat)
    with pytest.warns(UserWarning, match="other fonts"):
        _reload(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = _reload(path)
    assert np.array_equal(again["masters"], cat["masters"])


def test_bad_arguments_name_the_value(built, background):
    with pytest.raises(ValueError, match=r"'train'.*background"):
        load_glyphs("train")
    for size in [(3, 3), (28, 300)]:
        with pytest.raises(ValueError, match=str(size[1] if size[1] > 256 else 3)):
            load_glyphs(size=size)
    with pytest.raises(ValueError, match=f"{background.n_classes}.*0..{background.n_classes - 1}"):
        background.sample(torch.tensor([0, background.n_classes]), 1, _gen(0))
    with pytest.raises(ValueError, match="-1"):
        background.sample(torch.tensor([-1]), 1, _gen(0))
    with pytest.raises(ValueError, match=r"per_class.*0"):
        background.sample(torch.tensor([0]), 0, _gen(0))


def test_to_keeps_the_samples(background):
    moved = background.to("cpu")
    assert moved.device == torch.device("cpu") and moved.n_classes == background.n_classes
    assert torch.equal(
        moved.sample(torch.tensor([1]), 2, _gen(5)),
        background.sample(torch.tensor([1]), 2, _gen(5)),
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_cpu_generator_gives_the_same_samples_on_the_gpu(background):
    on_cpu = background.sample(torch.tensor([3, 4]), 2, _gen(6))
    on_gpu = background.to("cuda").sample(torch.tensor([3, 4]), 2, _gen(6))
    assert on_gpu.device.type == "cuda"
    assert torch.allclose(on_cpu, on_gpu.cpu(), atol=1e-4)


def test_a_drawn_set_is_a_pure_function_of_seed_split_and_size(built, background):
    small = load_glyphs("background", size=12)
    a, b = glyphs.drawn_glyphs(small, 3, seed=1), glyphs.drawn_glyphs(small, 3, seed=1)
    assert torch.equal(a.images, b.images) and a.images.shape == (3 * small.n_classes, 12, 12)
    assert a.counts.tolist() == [3] * small.n_classes and a.class_names == small.class_names
    assert torch.equal(a.groups, small.groups) and a.group_names == small.group_names
    assert not torch.equal(glyphs.drawn_glyphs(small, 3, seed=2).images, a.images)
    # Three samples of one class are three different distortions.
    first = a.images[a.labels == 0]
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match=r"per_class must be an integer >= 1"):
            glyphs.drawn_glyphs(small, bad)
