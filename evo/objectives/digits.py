"""Digit recognition: cross-entropy on a labelled image set, tested on its test split.

A minibatch of the digits (or MNIST) training set (`dataset`), optionally
augmented (`augment = "shift"`: random translations of up to 2 pixels,
`tasks.images.shift_images`); accuracy; test loss and accuracy on the test split,
never augmented.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from evo.objectives.base import Objective
from genome.phenotype import Phenotype
from tasks import AUGMENTS, DATASETS


class Digits(Objective):
    name = "digits"
    metrics = ("acc",)
    test_metrics = ("loss", "acc")
    augments = AUGMENTS

    @classmethod
    def setting_defaults(cls) -> dict[str, Any]:
        return {"dataset": "digits", **super().setting_defaults()}

    @classmethod
    def check_settings(cls, settings: dict[str, Any]) -> None:
        dataset = settings.get("dataset", "digits")
        if dataset not in DATASETS:
            raise ValueError(
                f"dataset: {dataset!r} is not valid; valid values: {', '.join(DATASETS)}"
            )
        super().check_settings(settings)

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
    def _score(logits: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-entropy and accuracy [P] of the logits [P, B, C] against labels [B]."""
        p, b, c = logits.shape
        loss = F.cross_entropy(logits.reshape(p * b, c), y.repeat(p), reduction="none")
        with torch.no_grad():
            acc = (logits.argmax(dim=2) == y).to(logits.dtype).mean(dim=1)
        return {"loss": loss.reshape(p, b).mean(dim=1), "acc": acc}

    def outputs(self, phenotype: Phenotype, batch: Any) -> torch.Tensor:
        return phenotype(batch[0])  # [P, B, C]

    def score_outputs(self, outputs: torch.Tensor, batch: Any) -> dict[str, torch.Tensor]:
        m = self._score(outputs, batch[1])
        return {self.name: m["loss"], "acc": m["acc"]}

    def evaluate(self, phenotype: Phenotype, batch: Any) -> dict[str, torch.Tensor]:
        return self.score_outputs(self.outputs(phenotype, batch), batch)

    def test(self, phenotype: Phenotype) -> dict[str, torch.Tensor]:
        self._set()
        x, y = self._data_test
        with torch.no_grad():
            return self._score(phenotype(x), y)
