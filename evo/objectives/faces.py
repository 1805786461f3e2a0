"""Face detection: the innate ability of the genomic-bottleneck paper (Shuvaev et al., PNAS 2024).

Binary cross-entropy with logits on a procedural minibatch of faces and
non-faces every generation; accuracy and ROC-AUC on that batch, and on the
real LFW subset as the held-out test (`tasks.lfw_faces`). `data = "bank"`
draws the minibatch from a bank of `bank_size` images rendered once from the
run's seed and cached on disk (`tasks.facebank`); `data = "fresh"` renders a
new one every generation (`tasks.make_faces`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from evo.objectives.base import Objective, roc_auc
from genome.phenotype import Phenotype

DATA = ("bank", "fresh")
BANK_SIZE = 32768


class Faces(Objective):
    name = "faces"
    metrics = ("acc", "auc")
    test_metrics = ("loss", "acc", "auc")

    SIZE = 25

    def __init__(self, *, data: str = "bank", bank_size: int = BANK_SIZE, **settings: Any):
        from tasks.facebank import MAX_SIZE

        super().__init__(**settings)
        if data not in DATA:
            raise ValueError(
                f"objective 'faces': unknown data {data!r}; valid values: {', '.join(DATA)}"
            )
        if not 2 <= bank_size <= MAX_SIZE:
            raise ValueError(f"objective 'faces': bank_size must be 2 to {MAX_SIZE}")
        self.data = data
        self.bank_size = int(bank_size)
        self.dataset = "faces bank"

    @classmethod
    def setting_defaults(cls) -> dict[str, Any]:
        return {**super().setting_defaults(), "data": "bank", "bank_size": BANK_SIZE}

    @classmethod
    def check_settings(cls, settings: dict[str, Any]) -> None:
        from tasks.facebank import MAX_SIZE

        data = settings.get("data", "bank")
        if data not in DATA:
            raise ValueError(f"data: {data!r} is not valid; valid values: {', '.join(DATA)}")
        size = settings.get("bank_size", BANK_SIZE)
        if isinstance(size, bool) or not isinstance(size, int) or not 2 <= size <= MAX_SIZE:
            raise ValueError(
                f"bank_size: must be an integer from 2 to {MAX_SIZE} (images), got {size!r}"
            )
        super().check_settings(settings)

    @property
    def max_batch_size(self) -> int | None:
        # A balanced draw without replacement: half of a batch from each class.
        return self.bank_size if self.data == "bank" else None

    def prepare(self) -> None:
        if self.data == "bank":
            self.bank()

    def bank(self):
        """The face bank of the run's seed (loaded once; a Ray actor loads its own)."""
        if getattr(self, "_data_bank", None) is None:
            from tasks.facebank import load_face_bank

            self._data_bank = load_face_bank(self.seed, self.bank_size, self.SIZE).to(self.device)
        return self._data_bank

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.SIZE, self.SIZE)

    @property
    def n_outputs(self) -> int:
        return 1

    def batch(
        self, generator: torch.Generator, batch_size: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.batch_size if batch_size is None else int(batch_size)
        if self.data == "bank":
            return self.bank().draw(n, generator)
        from tasks import make_faces

        return make_faces(n, generator, size=self.SIZE, device=self.device)

    @staticmethod
    def _score(logits: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss, accuracy and ROC-AUC [P] of the face logits [P, B] against labels [B]."""
        target = y.to(logits.dtype).expand_as(logits)
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=1)
        with torch.no_grad():
            acc = ((logits > 0) == target.bool()).to(logits.dtype).mean(dim=1)
            auc = roc_auc(logits, y).to(logits.dtype)
        return {"loss": loss, "acc": acc, "auc": auc}

    def outputs(self, phenotype: Phenotype, batch: Any) -> torch.Tensor:
        return phenotype(batch[0])[..., 0]  # [P, B]

    def score_outputs(self, outputs: torch.Tensor, batch: Any) -> dict[str, torch.Tensor]:
        m = self._score(outputs, batch[1])
        return {self.name: m["loss"], "acc": m["acc"], "auc": m["auc"]}

    def evaluate(self, phenotype: Phenotype, batch: Any) -> dict[str, torch.Tensor]:
        return self.score_outputs(self.outputs(phenotype, batch), batch)

    def test(self, phenotype: Phenotype) -> dict[str, torch.Tensor]:
        if getattr(self, "_data_test", None) is None:
            from tasks import lfw_faces

            self._data_test = lfw_faces(device=self.device)
        x, y = self._data_test
        with torch.no_grad():
            return self._score(phenotype(x)[..., 0], y)
