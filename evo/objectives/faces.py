"""Face detection: the innate ability of the genomic-bottleneck paper (Shuvaev et al., PNAS 2024).

Binary cross-entropy with logits on a fresh procedural minibatch of faces and
non-faces every generation (`tasks.make_faces`); accuracy and ROC-AUC on that
batch, and on the real LFW subset as the held-out test (`tasks.lfw_faces`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from evo.objectives.base import Objective, roc_auc
from genome.phenotype import Phenotype


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
