"""Image helpers every task shares: normalisation, minibatches, training augmentations.

Every image in tasks/ is float32 and normalised on its own to zero mean and
unit variance (`normalize_images`), so one body plan and one genome can meet
every task, and no statistics of a training set leak into its test set.
Training minibatches are drawn without replacement (`minibatch`) and can be
augmented (`AUGMENTS`, applied by `augment`): ``shift`` moves every image by
its own random whole-pixel offset of up to `MAX_SHIFT` in each direction, one
of the distortions with which LeCun et al. (1998) enlarged the MNIST training
set. Every random draw comes from the generator passed in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Where tensors go: anything torch.device accepts.
Device = str | torch.device

AUGMENTS = ("none", "shift")
MAX_SHIFT = 2


def normalize_images(x: Tensor, eps: float = 1e-10) -> Tensor:
    """Each image [..., H, W] shifted and scaled to zero mean and unit variance.

    An image whose variance is at most `eps` (a constant one) comes out all zeros.
    """
    centred = x - x.mean(dim=(-2, -1), keepdim=True)
    # Two-pass variance: several times faster than Tensor.var on small images.
    var = (centred * centred).mean(dim=(-2, -1), keepdim=True)
    return centred * torch.where(var > eps, var.rsqrt(), 0.0)


def minibatch(
    x: Tensor, y: Tensor, batch_size: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """`batch_size` examples drawn without replacement, a pure function of the generator."""
    if not 0 < batch_size <= len(x):
        raise ValueError(f"batch_size must be in [1, {len(x)}] for this set, got {batch_size}")
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} images, {len(y)} labels")
    order = torch.randperm(len(x), generator=generator, device=generator.device)
    index = order[:batch_size].to(x.device)
    return x[index], y[index]


def augment(x: Tensor, kind: str, generator: torch.Generator) -> Tensor:
    """Images [B, H, W] augmented by `kind` (a value of `AUGMENTS`), drawn from `generator` only."""
    if kind == "none":
        return x
    if kind == "shift":
        return shift_images(x, MAX_SHIFT, generator)
    raise ValueError(f"unknown augment {kind!r}; valid values: {', '.join(AUGMENTS)}")


def shift_images(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Each image [B, H, W] moved by its own offset (dy, dx), each uniform in [-max_shift, max_shift].

    The border is repeated into the space an image leaves (the background, for
    digits), and the result is normalised again, so a shifted image keeps the
    convention of every image here. One batched gather, no loop over images.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    b, h, w = x.shape
    offsets = torch.randint(
        -max_shift, max_shift + 1, (2, b), generator=generator, device=generator.device
    ).to(x.device)
    padded = F.pad(x[:, None], (max_shift,) * 4, mode="replicate")[:, 0]
    # Output pixel (i, j) of image k reads padded (i + m - dy_k, j + m - dx_k).
    rows = torch.arange(h, device=x.device) + max_shift - offsets[0][:, None]  # [B, H]
    cols = torch.arange(w, device=x.device) + max_shift - offsets[1][:, None]  # [B, W]
    image = torch.arange(b, device=x.device)[:, None, None]
    return normalize_images(padded[image, rows[:, :, None], cols[:, None, :]])
