"""Stimulus sets by category, for tests of what a hidden unit prefers.

`face_stimuli` gives images of faces and of each kind of non-face, drawn with
the generators that `make_faces` mixes (procedural faces; scrambled faces,
partial faces, featureless heads, textures, natural-image patches) plus the
real LFW subset of scikit-image (its 100 faces and 100 background crops),
every image through the same camera and normalisation as training images.
A pure function of (seed, size).
"""

from __future__ import annotations

import torch
from torch import Tensor

from tasks.faces import BLOB, FACE, PARTIAL, SCRAMBLED, _camera, _render_heads, lfw_faces
from tasks.images import Device, normalize_images
from tasks.labelled import resize_images
from tasks.natural import natural_patches, textures
from tasks.seeds import seeded

# Categories in order; the first two are faces.
FACE_CATEGORIES = ("faces", "lfw_faces")
NON_FACE_CATEGORIES = (
    "scrambled",
    "partial",
    "featureless",
    "textures",
    "natural",
    "lfw_background",
)
STREAM_STIMULI = 31
_HEADS = {"faces": FACE, "scrambled": SCRAMBLED, "partial": PARTIAL, "featureless": BLOB}


def face_stimuli(
    per_category: int = 200, seed: int = 0, size: tuple[int, int] = (25, 25), device: Device = "cpu"
) -> dict[str, Tensor]:
    """{category: images [n, *size]}: `per_category` procedural images of each kind
    and the 100 + 100 LFW images; all drawn square and resampled to `size` if it differs."""
    if isinstance(per_category, bool) or not isinstance(per_category, int) or per_category < 2:
        raise ValueError(f"per_category must be an integer >= 2, got {per_category!r}")
    rows, cols = size
    if rows < 4 or cols < 4:
        raise ValueError(f"stimuli need an input of at least 4x4, got {rows}x{cols}")
    side = max(rows, cols)
    out: dict[str, Tensor] = {}
    for k, name in enumerate(
        ("faces", "scrambled", "partial", "featureless", "textures", "natural")
    ):
        gen = seeded(seed, STREAM_STIMULI, k)
        if name in _HEADS:
            modes = torch.full((per_category,), _HEADS[name], dtype=torch.long)
            images = _render_heads(modes, gen, side, "cpu")
        elif name == "textures":
            images = textures(per_category, gen, side, "cpu")
        else:
            images = natural_patches(per_category, gen, side, "cpu")
        out[name] = _fit(normalize_images(_camera(images, gen, "cpu")), rows, cols)
    lfw, labels = lfw_faces("cpu")
    out["lfw_faces"] = _fit(lfw[labels == 1], rows, cols)
    out["lfw_background"] = _fit(lfw[labels == 0], rows, cols)
    order = (*FACE_CATEGORIES, *NON_FACE_CATEGORIES)
    return {name: out[name].to(device) for name in order}


def _fit(images: Tensor, rows: int, cols: int) -> Tensor:
    return (
        images if tuple(images.shape[-2:]) == (rows, cols) else resize_images(images, (rows, cols))
    )
