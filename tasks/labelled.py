"""Fixed labelled image sets for episodes: digits by class, and a user's own `.npz`.

`LabelledImages` holds images [M, H, W], labels [M] and a group per class
(an alphabet, a script; one group when the set has none), and draws distinct
images of given classes for an episode. `load_npz` reads a user's set and
checks it; `digit_classes` splits a digit set by class, so that episodes
test on digits the body never met (background 0-4, evaluation 5-9).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tasks.images import Device, normalize_images


class DataError(ValueError):
    """A labelled data set that cannot serve episodes; the message names the fault."""


@dataclasses.dataclass(frozen=True)
class LabelledImages:
    """A fixed labelled image set: images [M, H, W] float32 normalised, labels [M] in [0, C).

    `groups` [C] gives each class's group (0 for all when the set has none).
    Sampling draws distinct images of a class, without replacement.
    """

    name: str
    images: Tensor
    labels: Tensor
    groups: Tensor
    group_names: list[str]
    class_names: list[str]

    def __post_init__(self) -> None:
        # Members of each class, contiguous: order[starts[c] : starts[c] + counts[c]].
        order = torch.argsort(self.labels, stable=True)
        counts = torch.bincount(self.labels, minlength=self.n_classes)
        starts = torch.cumsum(counts, 0) - counts
        object.__setattr__(self, "_order", order)
        object.__setattr__(self, "_counts", counts)
        object.__setattr__(self, "_starts", starts)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int]:
        return (int(self.images.shape[-2]), int(self.images.shape[-1]))

    @property
    def counts(self) -> Tensor:
        """Images per class [C]."""
        return self._counts

    def sample(self, classes: Tensor, per_class: int, generator: torch.Generator) -> Tensor:
        """[N, per_class, H, W]: distinct images of each class in `classes` [N], from `generator`."""
        classes = _check_classes(classes, self.n_classes)
        counts = self._counts[classes.to(self._counts.device)]
        if per_class < 1 or int(counts.min()) < per_class:
            raise DataError(
                f"{self.name}: {per_class} images per class asked, but a chosen class has "
                f"{int(counts.min())}; valid: 1 to {int(counts.min())}"
            )
        # A random key per member, +inf past each class's count: the smallest
        # `per_class` keys are a uniform draw without replacement, for all classes at once.
        width = int(counts.max())
        keys = torch.rand(len(classes), width, generator=generator, device=generator.device)
        keys = keys.to(self.images.device)
        keys[torch.arange(width, device=keys.device)[None, :] >= counts[:, None]] = float("inf")
        offsets = keys.topk(per_class, dim=1, largest=False).indices
        members = self._order[self._starts[classes.to(self._starts.device)][:, None] + offsets]
        return self.images[members]

    def subset(self, classes: Sequence[int], name: str | None = None) -> LabelledImages:
        """The images of `classes` only, relabelled 0..len(classes)-1 in that order."""
        keep = torch.as_tensor(list(classes), dtype=torch.long)
        remap = torch.full((self.n_classes,), -1, dtype=torch.long)
        remap[keep] = torch.arange(len(keep))
        mask = remap[self.labels.cpu()] >= 0
        used = sorted({int(g) for g in self.groups[keep]})
        group_of = {g: k for k, g in enumerate(used)}
        return LabelledImages(
            name=name or self.name,
            images=self.images[mask.to(self.images.device)],
            labels=remap[self.labels.cpu()][mask].to(self.labels.device),
            groups=torch.tensor([group_of[int(g)] for g in self.groups[keep]], dtype=torch.long),
            group_names=[self.group_names[g] for g in used],
            class_names=[self.class_names[int(c)] for c in keep],
        )

    def resized(self, shape: tuple[int, int]) -> LabelledImages:
        """The same set with every image resampled to `shape` (H, W) and normalised again."""
        if tuple(shape) == self.image_shape:
            return self
        return dataclasses.replace(self, images=resize_images(self.images, shape))

    def to(self, device: Device) -> LabelledImages:
        return dataclasses.replace(
            self, images=self.images.to(device), labels=self.labels.to(device)
        )


def resize_images(images: Tensor, shape: tuple[int, int]) -> Tensor:
    """Images [M, H, W] resampled to `shape` (antialiased bilinear), then normalised per image."""
    out = F.interpolate(
        images[:, None].float(), size=tuple(shape), mode="bilinear", antialias=True
    )[:, 0]
    return normalize_images(out)


def _check_classes(classes: Tensor, n_classes: int) -> Tensor:
    classes = torch.as_tensor(classes, dtype=torch.long)
    if classes.ndim != 1 or len(classes) == 0:
        raise ValueError(f"classes must be a non-empty [N] tensor, got shape {list(classes.shape)}")
    if int(classes.min()) < 0 or int(classes.max()) >= n_classes:
        raise ValueError(f"class indices must be in [0, {n_classes}), got {classes.tolist()}")
    return classes


def load_npz(path: str | Path, size: tuple[int, int] | None = None) -> LabelledImages:
    """A user's labelled image set: `images [N, H, W]`, `labels [N]`, optional `groups [N]`.

    Labels and groups may be any integers or strings; classes are numbered in
    sorted order. Images are resized to `size` (the genome's input sheet) and
    normalised per image. Any fault raises `DataError` naming the file and the fault.
    """
    path = Path(path)

    def fail(msg: str) -> DataError:
        return DataError(f"{path}: {msg}")

    if not path.is_file():
        raise fail("no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zip, header or pickle faults all mean "not a usable .npz"
        raise fail(f"not a readable .npz file without pickles ({type(e).__name__}: {e})") from None
    missing = [k for k in ("images", "labels") if k not in arrays]
    if missing:
        raise fail(f"missing array(s) {missing}; an .npz needs images [N, H, W] and labels [N]")
    images, labels = arrays["images"], arrays["labels"]
    if images.ndim != 3 or min(images.shape) < 1:
        raise fail(f"images must be [N, H, W] with N, H, W >= 1, got shape {list(images.shape)}")
    if images.dtype.kind not in "biuf":
        raise fail(f"images must be numbers, got dtype {images.dtype}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise fail(f"labels must be [N] with N = {len(images)} (one per image), got {labels.shape}")
    groups = arrays.get("groups")
    if groups is not None and (groups.ndim != 1 or len(groups) != len(images)):
        raise fail(f"groups must be [N] with N = {len(images)} (one per image), got {groups.shape}")
    x = images.astype(np.float64)
    if not np.isfinite(x).all():
        raise fail(f"images hold {int((~np.isfinite(x)).sum())} non-finite pixels (NaN or inf)")
    names, y = np.unique(labels, return_inverse=True)
    if groups is None:
        group_names, class_group = ["all"], np.zeros(len(names), dtype=np.int64)
    else:
        group_names_arr, g = np.unique(groups, return_inverse=True)
        group_names = [str(v) for v in group_names_arr]
        class_group = np.zeros(len(names), dtype=np.int64)
        class_group[y] = g
        if (class_group[y] != g).any():
            raise fail("a label appears in more than one group; each class needs one group")
    data = LabelledImages(
        name=path.stem,
        images=normalize_images(torch.from_numpy(x.astype(np.float32))),
        labels=torch.from_numpy(y.astype(np.int64)),
        groups=torch.from_numpy(class_group),
        group_names=group_names,
        class_names=[str(v) for v in names],
    )
    return data if size is None else data.resized(size)


# Digit classes per split: episodes on "evaluation" ask for digits that a body
# trained or evolved on "background" never had to tell apart.
DIGIT_SPLITS: dict[str, tuple[int, ...]] = {
    "background": (0, 1, 2, 3, 4),
    "evaluation": (5, 6, 7, 8, 9),
}


def digit_classes(name: str, split: str, device: Device = "cpu") -> LabelledImages:
    """The digits (`name`: "digits" or "mnist", train and test images) of the classes of `split`."""
    from tasks.digits import load_digits, load_mnist

    loaders = {"digits": load_digits, "mnist": load_mnist}
    if name not in loaders:
        raise DataError(f"unknown digit set {name!r}; valid: {', '.join(loaders)}")
    if split not in DIGIT_SPLITS:
        raise DataError(f"{name} has no split {split!r}; valid splits: {', '.join(DIGIT_SPLITS)}")
    d = loaders[name]()
    whole = LabelledImages(
        name=name,
        images=torch.cat([d.train_x, d.test_x]),
        labels=torch.cat([d.train_y, d.test_y]),
        groups=torch.zeros(d.n_classes, dtype=torch.long),
        group_names=["digits"],
        class_names=[str(c) for c in range(d.n_classes)],
    )
    return whole.subset(DIGIT_SPLITS[split]).to(device)
