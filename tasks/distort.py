"""Each glyph sample's own distortion: its form, stroke width, affine map and elastic warp.

`distort` turns a class's master images (its fonts' renderings) into one
sample per index, every random number drawn from the generator it is given,
so a sample is a pure function of the generator state. The ranges below are
the whole of what makes a 1-shot query differ from its support image.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

# Distortions of each sample, uniform in these ranges unless said otherwise.
# Rotation in degrees: upright enough to read, as hand-written letters are.
ROTATION_DEG = 12.0
# Overall scale, log-uniform: the glyph fills 65-90% of the frame.
SCALE = (0.8, 1.1)
# Width over height, log-uniform: narrow and wide handwriting.
ASPECT = (0.88, 1.14)
# Horizontal shear (x += shear * y): slanted writing beyond the oblique faces.
SHEAR = 0.15
# Shift in half-widths of the frame: about 1.5 pixels at 28x28.
SHIFT = 0.1
# Stroke change in master pixels (< 0 erodes): more thinning erases serif hairlines.
STROKE = (-0.5, 2.0)
# Elastic displacement: std of a 4x4 grid of control points, in half-widths, bicubic between.
ELASTIC_STD = 0.04
ELASTIC_GRID = 4


def distort(
    masters: Tensor, n_forms: Tensor, index: Tensor, shape: tuple[int, int], generator
) -> Tensor:
    """One distorted sample [n, H, W] in about [0, 1] of each class in `index` [n]."""
    n, device = index.numel(), masters.device
    h, w = shape
    u = torch.rand((n, 8), generator=generator, device=generator.device).to(device)
    field = torch.randn(
        (n, 2, ELASTIC_GRID, ELASTIC_GRID), generator=generator, device=generator.device
    ).to(device)
    if n == 0:
        return torch.zeros(0, h, w, device=device)
    forms = n_forms[index]
    form = torch.minimum((u[:, 0] * forms).long(), forms - 1)
    ink = masters[index, form].float().div_(255.0)  # [n, S, S]

    # Stroke width: towards one erosion, or one then two dilations, by t pixels (continuous).
    t = (STROKE[0] + (STROKE[1] - STROKE[0]) * u[:, 1]).view(n, 1, 1)
    thick = _dilate(ink)
    ink = (
        ink.lerp(-_dilate(-ink), (-t).clamp_(0, 1))
        .addcmul_(thick - ink, t.clamp(0, 1))
        .addcmul_(_dilate(thick) - thick, (t - 1).clamp_(0, 1))
    )
    # Prefilter to about the sampling resolution (2x the output), so that thin strokes
    # do not alias; an area filter, by a whole factor.
    factor = ink.shape[-1] // (2 * max(h, w))
    if factor >= 2:
        ink = F.avg_pool2d(ink, factor)

    # Frame -> glyph, the inverse of glyph -> frame = rotate . shear . scale, then shift.
    angle = math.radians(ROTATION_DEG) * (2 * u[:, 2] - 1)
    scale = torch.exp(math.log(SCALE[0]) + math.log(SCALE[1] / SCALE[0]) * u[:, 3])
    aspect = torch.exp(math.log(ASPECT[0]) + math.log(ASPECT[1] / ASPECT[0]) * u[:, 4])
    shear = SHEAR * (2 * u[:, 5] - 1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    row_x = (
        torch.stack([cos + shear * sin, sin - shear * cos], -1) / (scale * aspect.sqrt())[:, None]
    )
    row_y = torch.stack([-sin, cos], -1) * (aspect.sqrt() / scale)[:, None]
    inverse = torch.stack([row_x, row_y], dim=1)  # [n, 2, 2]
    shift = SHIFT * (2 * u[:, 6:8, None] - 1)
    theta = torch.cat([inverse, -(inverse @ shift)], dim=2)
    grid = F.affine_grid(theta, [n, 1, 2 * h, 2 * w], align_corners=False)
    # Bicubic between the control points, as separable matrices: [n, 2h, 2w, 2].
    smooth = torch.einsum("yg,nkgx,wx->nywk", _cubic(2 * h, device), field, _cubic(2 * w, device))
    grid = grid.add_(smooth, alpha=ELASTIC_STD)
    images = F.grid_sample(ink[:, None], grid, padding_mode="zeros", align_corners=False)
    return F.avg_pool2d(images, 2)[:, 0]


def _dilate(x: Tensor) -> Tensor:
    """Grey-level dilation [n, S, S] by a 3x3 square: a separable max, cheaper than max_pool2d."""
    p = F.pad(x, (1, 1, 1, 1))
    rows = torch.maximum(torch.maximum(p[:, :-2], p[:, 1:-1]), p[:, 2:])
    return torch.maximum(torch.maximum(rows[:, :, :-2], rows[:, :, 1:-1]), rows[:, :, 2:])


@functools.lru_cache(maxsize=16)
def _cubic(size: int, device: torch.device) -> Tensor:
    """[size, ELASTIC_GRID]: bicubic weights from the control points to `size` pixels."""
    eye = torch.eye(ELASTIC_GRID)[:, None, :, None]
    weights = F.interpolate(eye, size=(size, 1), mode="bicubic", align_corners=True)
    return weights[:, 0, :, 0].T.contiguous().to(device)
