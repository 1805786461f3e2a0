"""Objectives: what a population of phenotypes is scored on, batched over the population.

An `Objective` turns a `Phenotype` of P individuals into a value per individual
(the quantity selected on, always minimised here: a loss or a cost) plus
metrics that are only reported (accuracy, ROC-AUC). Registry `OBJECTIVES`
(name -> class):

- ``faces``: binary cross-entropy with logits on a fresh procedural minibatch
  of faces and non-faces every generation; accuracy and ROC-AUC on that batch,
  and on the real LFW subset as the held-out test (the innate face detection
  of the genomic-bottleneck paper, Shuvaev et al., PNAS 2024);
- ``digits``: cross-entropy on a minibatch of the digits (or MNIST) training
  set, optionally augmented (``augment = "shift"``: random translations of up
  to 2 pixels, `tasks.digits.shift_images`); accuracy; test accuracy on its
  test split, never augmented;
- ``wiring``: the wiring cost sum |w| * d of the grown network (the
  distance-only cost of seRNN, Achterberg et al., Nat Mach Intell 2023).

ROC-AUC is the rank statistic of Mann and Whitney (ties count one half),
computed for the whole population at once with `searchsorted`.

A minibatch, and its augmentation, is drawn from the generator it is given;
the problem seeds that generator from (seed, generation), so fitness is a
pure function of (genome, generation, seed).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from genome.phenotype import Phenotype

DATASETS = ("digits", "mnist")
# tasks.AUGMENTS, named here so that reading a config does not load the tasks.
AUGMENTS = ("none", "shift")


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ROC-AUC [P] of scores [P, B] against binary labels [B] (1 = positive).

    The Mann-Whitney statistic: the share of (positive, negative) pairs that
    the score orders correctly, ties counting one half. Each row's negatives
    are sorted once and every positive is located among them. Rows with a
    non-finite score, or label sets without both classes, give NaN.
    """
    labels = labels.to(torch.bool)
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    p = scores.shape[0]
    if n_pos == 0 or n_neg == 0:
        return torch.full((p,), float("nan"), dtype=torch.float64, device=scores.device)
    s = scores.detach()
    # Comparisons are exact in the scores' own type; only the counts need float64.
    negatives = s[:, ~labels].sort(dim=1).values
    positives = s[:, labels].contiguous()
    below = torch.searchsorted(negatives, positives, right=False)  # negatives < the positive
    up_to = torch.searchsorted(negatives, positives, right=True)  # negatives <= the positive
    wins = (below + up_to).sum(dim=1).to(torch.float64) / 2
    auc = wins / (n_pos * n_neg)
    return torch.where(torch.isfinite(s).all(dim=1), auc, torch.full_like(auc, float("nan")))


class Objective(ABC):
    """One objective: `evaluate` scores a population on a batch; `test` on held-out data."""

    name: ClassVar[str]
    sense: ClassVar[str] = "min"
    # Metrics reported next to the objective value (not selected on).
    metrics: ClassVar[tuple[str, ...]] = ()
    test_metrics: ClassVar[tuple[str, ...]] = ()
    # Whether the objective reads images, and so fixes the layout's input and output.
    has_data: ClassVar[bool] = True
    # The augmentations of its training batches it offers ("none": the batch as drawn).
    augments: ClassVar[tuple[str, ...]] = ("none",)

    def __init__(
        self,
        *,
        batch_size: int = 256,
        device: str = "cpu",
        dataset: str = "digits",
        augment: str = "none",
    ):
        if augment not in self.augments:
            raise ValueError(
                f"objective {self.name!r}: unknown augment {augment!r}; "
                f"valid values: {', '.join(self.augments)}"
            )
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.dataset = dataset
        self.augment = augment

    @property
    def input_shape(self) -> tuple[int, int] | None:
        return None

    @property
    def n_outputs(self) -> int | None:
        return None

    @property
    def max_batch_size(self) -> int | None:
        """The largest training batch it can draw (None: unbounded, e.g. generated data)."""
        return None

    def batch(self, generator: torch.Generator, batch_size: int | None = None) -> Any:
        """The training data of one generation, drawn from `generator` only
        (`batch_size` examples; None: the objective's own `batch_size`)."""
        return None

    @abstractmethod
    def evaluate(self, phenotype: Phenotype, batch: Any) -> dict[str, torch.Tensor]:
        """{name: value [P], metric: [P], ...}; the value is differentiable."""

    def test(self, phenotype: Phenotype) -> dict[str, torch.Tensor]:
        """Held-out metrics {metric: [P]} (empty when the objective has no test set)."""
        return {}

    # Heavy data is loaded on first use and not shipped to Ray actors.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_data")}


class Faces(Objective):
    name = "faces"
    metrics = ("acc", "auc")
    test_metrics = ("loss", "acc", "auc")

    SIZE = 25

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.SIZE, self.SIZE)

    @property
    def n_outputs(self) -> int:
        return 1

    def batch(
        self, generator: torch.Generator, batch_size: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        from tasks import make_faces

        n = self.batch_size if batch_size is None else int(batch_size)
        return make_faces(n, generator, size=self.SIZE, device=self.device)

    @staticmethod
    def _score(phenotype: Phenotype, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = phenotype(x)[..., 0]  # [P, B]
        target = y.to(logits.dtype).expand_as(logits)
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=1)
        with torch.no_grad():
            acc = ((logits > 0) == target.bool()).to(logits.dtype).mean(dim=1)
            auc = roc_auc(logits, y).to(logits.dtype)
        return {"loss": loss, "acc": acc, "auc": auc}

    def evaluate(self, phenotype: Phenotype, batch: Any) -> dict[str, torch.Tensor]:
        m = self._score(phenotype, *batch)
        return {self.name: m["loss"], "acc": m["acc"], "auc": m["auc"]}

    def test(self, phenotype: Phenotype) -> dict[str, torch.Tensor]:
        if getattr(self, "_data_test", None) is None:
            from tasks import lfw_faces

            self._data_test = lfw_faces(device=self.device)
        with torch.no_grad():
            return self._score(phenotype, *self._data_test)


class Digits(Objective):
    name = "digits"
    metrics = ("acc",)
    test_metrics = ("loss", "acc")
    augments = AUGMENTS

    def _set(self) -> Any:
        if getattr(self, "_data_set", None) is None:
            from tasks import load_dataset

            ds = load_dataset(self.dataset)
            self._data_set = ds
            self._data_train = (ds.train_x.to(self.device), ds.train_y.to(self.device))
            self._data_test = (ds.test_x.to(self.device), ds.test_y.to(self.device))
        return self._data_set

    @property
    def input_shape(self) -> tuple[int, int]:
        return tuple(self._set().image_shape)

    @property
    def n_outputs(self) -> int:
        return int(self._set().n_classes)

    @property
    def max_batch_size(self) -> int:
        return len(self._set().train_y)

    def batch(
        self, generator: torch.Generator, batch_size: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        from tasks import augment, minibatch

        self._set()
        n = self.batch_size if batch_size is None else int(batch_size)
        x, y = minibatch(*self._data_train, n, generator)
        return augment(x, self.augment, generator), y

    @staticmethod
    def _score(phenotype: Phenotype, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = phenotype(x)  # [P, B, C]
        p, b, c = logits.shape
        loss = F.cross_entropy(logits.reshape(p * b, c), y.repeat(p), reduction="none")
        with torch.no_grad():
            acc = (logits.argmax(dim=2) == y).to(logits.dtype).mean(dim=1)
        return {"loss": loss.reshape(p, b).mean(dim=1), "acc": acc}

    def evaluate(self, phenotype: Phenotype, batch: Any) -> dict[str, torch.Tensor]:
        m = self._score(phenotype, *batch)
        return {self.name: m["loss"], "acc": m["acc"]}

    def test(self, phenotype: Phenotype) -> dict[str, torch.Tensor]:
        self._set()
        with torch.no_grad():
            return self._score(phenotype, *self._data_test)


class Wiring(Objective):
    """Scale-free wiring cost (selected on), and the plain sum |w| * d (reported as `raw`).

    Selecting on the plain cost rewards shrinking the layer gains, which leaves
    the wiring as it was; the scale-free cost rewards few and short wires.
    """

    name = "wiring"
    metrics = ("raw",)
    has_data = False

    def evaluate(self, phenotype: Phenotype, batch: Any) -> dict[str, torch.Tensor]:
        from genome.wiring import wiring_cost

        return {
            self.name: wiring_cost(phenotype, scale_free=True),
            "raw": wiring_cost(phenotype),
        }


OBJECTIVES: dict[str, type[Objective]] = {cls.name: cls for cls in (Faces, Digits, Wiring)}


def make_objective(name: str, **settings: Any) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; valid objectives: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name](**settings)
