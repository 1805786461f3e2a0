"""What every objective is: `Objective`, scored on a population of phenotypes at once.

An `Objective` turns a `Phenotype` of P individuals into a value per individual
(the quantity selected on, always minimised here: a loss or a cost) plus
metrics that are only reported (accuracy, ROC-AUC). A minibatch, and its
augmentation, is drawn from the generator it is given; the problem seeds that
generator from (seed, generation), so fitness is a pure function of (genome,
generation, seed).

ROC-AUC is the rank statistic of Mann and Whitney (ties count one half),
computed for the whole population at once from whole-number counts, so any
exact way of counting gives the same bits: on the CPU at float32 by sorting
integer keys with NumPy (its vectorised sort is ~10x torch's on short rows),
elsewhere with torch's `sort` and `searchsorted`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch

from genome.phenotype import Phenotype


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ROC-AUC [P] of scores [P, B] against binary labels [B] (1 = positive).

    The Mann-Whitney statistic: the share of (positive, negative) pairs that
    the score orders correctly, ties counting one half, from whole-number
    counts (`twice_the_wins_by_sorting` for float32 on the CPU, else
    `twice_the_wins_by_searching`: the same counts). Rows with a non-finite
    score, or label sets without both classes, give NaN.
    """
    labels = labels.to(torch.bool)
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    p = scores.shape[0]
    if n_pos == 0 or n_neg == 0:
        return torch.full((p,), float("nan"), dtype=torch.float64, device=scores.device)
    s = scores.detach()
    if s.dtype == torch.float32 and s.device.type == "cpu" and labels.device.type == "cpu":
        twice = twice_the_wins_by_sorting(s, labels)
    else:
        twice = twice_the_wins_by_searching(s, labels)
    auc = twice / 2 / (n_pos * n_neg)
    return torch.where(torch.isfinite(s).all(dim=1), auc, torch.full_like(auc, float("nan")))


def twice_the_wins_by_searching(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per row of scores [P, B] against bool labels [B]: the sum over positives of (negatives below
    it) + (negatives at or below it), as float64 (a whole number, exact).

    Each row's negatives are sorted once and every positive is located among
    them; the comparisons are exact in the scores' own type.
    """
    negatives = scores[:, ~labels].sort(dim=1).values
    positives = scores[:, labels].contiguous()
    below = torch.searchsorted(negatives, positives, right=False)  # negatives < the positive
    up_to = torch.searchsorted(negatives, positives, right=True)  # negatives <= the positive
    return (below + up_to).sum(dim=1).to(torch.float64)


def twice_the_wins_by_sorting(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`twice_the_wins_by_searching` of float32 CPU scores, by sorting integer keys with NumPy.

    Each score becomes an integer key in the floats' order (-0 and +0 one key)
    with its label in the lowest bit, so that among equal scores the negatives
    sort first; then a positive at place k has k - (positives before it)
    negatives at or below it. With the bit flipped, the positives sort first
    and the same sum counts the negatives strictly below. Rows with NaN get some
    count; the caller gives them NaN.
    """
    lab = labels.numpy()
    n_pos = int(lab.sum())
    bits = (scores.numpy() + np.float32(0)).view(np.int32)  # + 0: -0 becomes +0
    # Flip the sign bit of positive floats and every bit of negative ones: unsigned order.
    ordered = (bits ^ ((bits >> 31) | np.int32(-(2**31)))).view(np.uint32)
    key = ordered.astype(np.uint64) << np.uint64(1)
    bit = lab.astype(np.uint64)
    places = np.arange(lab.size, dtype=np.float64)
    negatives_first = np.sort(key | bit, axis=1) & np.uint64(1)  # 1: a positive
    positives_first = np.sort(key | (np.uint64(1) - bit), axis=1) & np.uint64(1)  # 0: a positive
    twice = negatives_first.astype(np.float64) @ places
    twice += (1.0 - positives_first.astype(np.float64)) @ places
    return torch.from_numpy(twice - n_pos * (n_pos - 1))


class Objective(ABC):
    """One objective: `evaluate` scores a population on a batch; `test` on held-out data."""

    name: ClassVar[str]
    sense: ClassVar[str] = "min"
    # Metrics reported next to the objective value (not selected on).
    metrics: ClassVar[tuple[str, ...]] = ()
    test_metrics: ClassVar[tuple[str, ...]] = ()
    # Whether the objective reads images, and so fixes the layout's input and output.
    has_data: ClassVar[bool] = True
    # Whether its value carries a gradient to the genome (the `gradient` searcher needs it).
    differentiable: ClassVar[bool] = True
    # The augmentations of its training batches it offers ("none": the batch as drawn).
    augments: ClassVar[tuple[str, ...]] = ("none",)

    def __init__(
        self,
        *,
        batch_size: int = 256,
        device: str = "cpu",
        dataset: str = "digits",
        augment: str = "none",
        seed: int = 0,
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
        # The run's seed: data generated once per run (a bank) is rendered from it.
        self.seed = int(seed)

    @classmethod
    def setting_defaults(cls) -> dict[str, Any]:
        """The objective's own settings (config table [objectives.NAME]) and their defaults."""
        return {"augment": "none"} if cls.has_data else {}

    @classmethod
    def check_settings(cls, settings: dict[str, Any]) -> None:
        """Raise ValueError("KEY: ...") for a setting that is out of range."""
        augment = settings.get("augment", "none")
        if augment not in cls.augments:
            raise ValueError(
                f"augment: {augment!r} is not valid; valid values: {', '.join(cls.augments)}"
            )

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

    def check_layers(self, n_layers: int) -> None:
        """Raise ValueError("KEY: ...") if the objective cannot score bodies of n_layers layers."""
        return None

    def batch(self, generator: torch.Generator, batch_size: int | None = None) -> Any:
        """The training data of one generation, drawn from `generator` only
        (`batch_size` examples; None: the objective's own `batch_size`)."""
        return None

    @abstractmethod
    def evaluate(self, phenotype: Phenotype, batch: Any) -> dict[str, torch.Tensor]:
        """{name: value [P], metric: [P], ...}; the value is differentiable.

        It reads the phenotype and never changes it: a lifetime of learning
        starts from copies (the problem keeps a genome's phenotype to score it
        again, evo/problem.py).
        """

    def outputs(self, phenotype: Phenotype, batch: Any) -> torch.Tensor | None:
        """What `score_outputs` scores the population on: the networks' outputs [P, ...]
        on the batch, each individual's in its own row (None: only `evaluate` scores).

        Split so, a large population is run in pieces (the problem's chunks)
        and scored all at once: a few large operations instead of many small
        ones. An individual's values must not depend on the rows scored with it.
        """
        return None

    def score_outputs(self, outputs: torch.Tensor, batch: Any) -> dict[str, torch.Tensor]:
        """`evaluate`'s result from the population's `outputs` [P, ...] on `batch`."""
        raise NotImplementedError(f"objective {self.name!r} scores phenotypes only")

    def prepare(self) -> None:
        """Make what every process reads from disk (before Ray actors start, so they only read it)."""
        return None

    def test(self, phenotype: Phenotype) -> dict[str, torch.Tensor]:
        """Held-out metrics {metric: [P]} (empty when the objective has no test set)."""
        return {}

    # Heavy data is loaded on first use and not shipped to Ray actors.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_data")}
