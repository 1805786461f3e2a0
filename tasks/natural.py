"""Natural-image patches and procedural textures: what is not a face.

Two sources of non-face imagery, shared by the face task as hard negatives and
as clutter behind the procedural heads (so that background statistics carry no
label):

- Patches of the photographs that scikit-image ships inside its wheel
  (``skimage.data``; no download, so no network at run time), listed in
  `NATURAL_IMAGES`. Every image that shows a face, human or animal, is left
  out: ``astronaut``, ``camera`` (a cameraman), ``chelsea`` and ``cat``,
  ``coins`` (ancient coins, some with heads in profile), ``logo`` (a snake's
  head), ``shepp_logan_phantom`` (an oval with two dark ellipses: a face to a
  ratio template, so no clean non-face) and ``lfw_subset`` (the held-out
  test). The images that need ``pooch`` (``eagle``, ``kidney``, ``lily``...)
  are left out too.
- Textures: 1/f^alpha filtered noise (natural images have a power spectrum
  close to 1/f^2, Field, JOSA A 1987), gratings and plaids, and piecewise-flat
  regions split by straight edges with shading gradients, which is much of what
  the LFW non-face crops look like.

Patches are random crops (position, size, rotation, mirror) drawn with an
explicit generator and read with one `grid_sample` call for the whole batch
from an atlas of all the source images.
Random numbers are drawn on the generator's device and then moved, so a CPU
generator gives the same images on any device.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tasks.images import Device

# Loaded from the files bundled in scikit-image (checked on 0.26, offline).
# None of these shows a face; "horse" is a silhouette, "retina" the back of an eye.
NATURAL_IMAGES = (
    "brick",
    "grass",
    "gravel",
    "rocket",
    "moon",
    "text",
    "page",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "coffee",
    "clock",
    "colorwheel",
    "cell",
    "microaneurysms",
    "checkerboard",
)

_SOURCE_SIDE = 256


def uniform(
    generator: torch.Generator, shape: tuple[int, ...], low: float, high: float, device: Device
) -> Tensor:
    """Uniform draws in [low, high), made on the generator's device, returned on `device`."""
    u = torch.rand(shape, generator=generator, device=generator.device)
    return (low + (high - low) * u).to(device)


def draws(
    generator: torch.Generator,
    batch: int | tuple[int, ...],
    ranges: dict[str, tuple[float, float]],
    device: Device,
) -> dict[str, Tensor]:
    """One uniform draw per named (low, high) range for each item: [*batch, 1, 1] each.

    One random call for all the parameters: with small images, the cost of a
    batch is mostly the number of tensor operations, not their size.
    """
    batch = (batch,) if isinstance(batch, int) else tuple(batch)
    low, high = torch.tensor(list(ranges.values()), device=device).T
    shape = (*batch, len(ranges))
    u = torch.rand(shape, generator=generator, device=generator.device).to(device)
    values = (low + (high - low) * u)[..., None, None].unbind(dim=len(batch))
    return dict(zip(ranges, values, strict=True))


def normal(generator: torch.Generator, shape: tuple[int, ...], device: Device) -> Tensor:
    """Standard normal draws, made on the generator's device, returned on `device`."""
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def grid(size: int, device: Device) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates in [-1, 1]: x grows to the right, y downwards. [size, size] each."""
    t = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(t, t, indexing="ij")
    return x, y


@functools.lru_cache(maxsize=1)
def _natural_stack_numpy() -> np.ndarray:
    """The grayscale source images in [0, 1], each resized to a square: [K, S, S]."""
    # Imported here so that importing `tasks` stays cheap and touches no files.
    import skimage.data
    from skimage.color import rgb2gray, rgba2rgb
    from skimage.transform import resize
    from skimage.util import img_as_float

    stack = []
    for name in NATURAL_IMAGES:
        image = img_as_float(np.asarray(getattr(skimage.data, name)()))
        if image.ndim == 3 and image.shape[-1] == 4:
            image = rgba2rgb(image)
        if image.ndim == 3:
            image = rgb2gray(image)
        image = image - image.min()
        image = image / max(image.max(), 1e-8)
        # Squashing the aspect ratio is harmless for texture statistics.
        stack.append(resize(image, (_SOURCE_SIDE, _SOURCE_SIDE), anti_aliasing=True))
    return np.stack(stack).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _natural_atlas(device: str) -> Tensor:
    """The source images one above the other, each with a black row above and below.

    [1, 1, K * (S + 2), S]. One 2-D `grid_sample` over this atlas reads a whole
    batch of crops from different images (a 3-D volume indexed by depth does the
    same at several times the cost). The black rows stop a crop that overruns
    its image from reading the next one.
    """
    stack = torch.from_numpy(_natural_stack_numpy())
    atlas = F.pad(stack, (0, 0, 1, 1)).reshape(-1, stack.shape[-1])
    return atlas.to(device)[None, None]


def natural_patches(
    n: int, generator: torch.Generator, size: int = 25, device: Device = "cpu"
) -> Tensor:
    """Random crops of the bundled photographs, [n, size, size] float32 in [0, 1].

    A crop has a random source image, centre, side (2% to 50% of the image,
    log-uniform), rotation and mirror. A crop that reaches past the image edge
    reads black there, like the LFW non-face crops do. Flat crops (sky, paper,
    a silhouette's inside) are drawn again, twice, then replaced by textures:
    a constant image would be a trivial non-face.
    """
    device = torch.device(device)
    out = _crops(n, generator, size, device)
    for attempt in range(3):
        flat = out.flatten(1).std(dim=1) < 0.01
        if not flat.any():
            break
        count = int(flat.sum())
        out[flat] = (
            _crops(count, generator, size, device)
            if attempt < 2
            else textures(count, generator, size, device)
        )
    return out


def _crops(n: int, generator: torch.Generator, size: int, device: torch.device) -> Tensor:
    if n == 0:
        return torch.zeros(0, size, size, device=device)
    atlas = _natural_atlas(str(device))
    k, side = len(NATURAL_IMAGES), _SOURCE_SIDE
    index = torch.randint(k, (n,), generator=generator, device=generator.device).to(device)
    half = torch.exp(uniform(generator, (n,), math.log(0.02), math.log(0.5), device))
    centre = uniform(generator, (n, 2), -1.0, 1.0, device) * (1 - 0.8 * half[:, None])
    angle = uniform(generator, (n,), -math.pi, math.pi, device)
    mirror = torch.where(uniform(generator, (n,), 0, 1, device) < 0.5, -1.0, 1.0)

    # Supersample twice then average, so that large crops do not alias.
    # Output pixel (x, y) -> atlas (column, row), affine per crop, broadcast
    # straight into the [n, pixels, 2] layout that grid_sample reads (a
    # matmul with an inner size of 3, or stacking, costs several times more).
    x, y = grid(2 * size, device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    hx = half * mirror
    to_row = (side - 1) / (atlas.shape[-2] - 1)  # image y -> atlas y: scale, then offset
    offset = (index * (side + 2) + 1 + (side - 1) / 2) * 2 / (atlas.shape[-2] - 1) - 1
    affine = torch.stack(
        [
            torch.stack([hx * cos, half * sin * to_row], dim=-1),
            torch.stack([-hx * sin, half * cos * to_row], dim=-1),
            torch.stack([centre[:, 0], centre[:, 1] * to_row + offset], dim=-1),
        ],
        dim=1,
    )  # [n, 3, 2]
    coords = x.reshape(1, -1, 1) * affine[:, None, 0] + y.reshape(1, -1, 1) * affine[:, None, 1]
    coords += affine[:, None, 2]  # [n, pixels, 2]
    # Past the image's top or bottom edge, stop in its black row.
    reach = (side + 1) / (atlas.shape[-2] - 1)
    coords[..., 1].clamp_(min=(offset - reach)[:, None], max=(offset + reach)[:, None])
    coords = coords.view(1, n * 2 * size, 2 * size, 2)
    out = F.grid_sample(atlas, coords, mode="bilinear", padding_mode="zeros", align_corners=True)
    return F.avg_pool2d(out.view(n, 1, 2 * size, 2 * size), 2)[:, 0]


def filtered_noise(
    n: int, generator: torch.Generator, size: int = 25, device: Device = "cpu"
) -> Tensor:
    """White noise shaped to a 1/f^alpha amplitude spectrum, alpha in [1, 2.5]: [n, size, size]."""
    if n == 0:
        return torch.zeros(0, size, size, device=device)
    noise = normal(generator, (n, size, size), device)
    alpha = uniform(generator, (n, 1, 1), 1.0, 2.5, device)
    fy = torch.fft.fftfreq(size, device=device)[:, None]
    fx = torch.fft.rfftfreq(size, device=device)[None, :]
    f = torch.sqrt(fx**2 + fy**2).clamp_min(1.0 / size)
    spectrum = torch.fft.rfft2(noise) * f ** (-alpha)
    return _unit_range(torch.fft.irfft2(spectrum, s=(size, size)))


def gratings(n: int, generator: torch.Generator, size: int = 25, device: Device = "cpu") -> Tensor:
    """Sine or soft square-wave gratings, half of them plaids: [n, size, size] in [0, 1]."""
    x, y = grid(size, device)
    out = torch.zeros(n, size, size, device=device)
    for component in range(2):
        theta = uniform(generator, (n, 1, 1), 0, math.pi, device)
        cycles = torch.exp(uniform(generator, (n, 1, 1), math.log(0.5), math.log(5.0), device))
        phase = uniform(generator, (n, 1, 1), 0, 2 * math.pi, device)
        wave = torch.sin(math.pi * cycles * (x * torch.cos(theta) + y * torch.sin(theta)) + phase)
        sharp = uniform(generator, (n, 1, 1), 0, 1, device) < 0.4
        wave = torch.where(sharp, torch.tanh(4 * wave), wave)
        if component == 1:  # the second component makes a plaid for half of them
            wave = wave * (uniform(generator, (n, 1, 1), 0, 1, device) < 0.5)
        out = out + wave
    return _unit_range(out)


def edges(n: int, generator: torch.Generator, size: int = 25, device: Device = "cpu") -> Tensor:
    """Flat regions split by 1-3 soft straight edges, over a shading gradient: [n, size, size]."""
    x, y = grid(size, device)
    out = uniform(generator, (n, 1, 1), 0, 1, device).expand(n, size, size)
    for step in range(3):
        theta = uniform(generator, (n, 1, 1), 0, 2 * math.pi, device)
        offset = uniform(generator, (n, 1, 1), -0.9, 0.9, device)
        softness = uniform(generator, (n, 1, 1), 0.5, 3.0, device) * (2.0 / size)
        side = torch.sigmoid((x * torch.cos(theta) + y * torch.sin(theta) - offset) / softness)
        level = uniform(generator, (n, 1, 1), 0, 1, device)
        keep = (uniform(generator, (n, 1, 1), 0, 1, device) < 0.6) | (step == 0)
        out = torch.where(keep, out * (1 - side) + level * side, out)
    theta = uniform(generator, (n, 1, 1), 0, 2 * math.pi, device)
    slope = uniform(generator, (n, 1, 1), 0, 0.5, device)
    out = out + slope * (x * torch.cos(theta) + y * torch.sin(theta))
    return out


def textures(n: int, generator: torch.Generator, size: int = 25, device: Device = "cpu") -> Tensor:
    """An equal mixture of filtered noise, gratings and edges, [n, size, size] float32."""
    device = torch.device(device)
    kind = torch.randint(3, (n,), generator=generator, device=generator.device).to(device)
    out = torch.empty(n, size, size, device=device)
    for k, render in enumerate((filtered_noise, gratings, edges)):
        chosen = kind == k
        if chosen.any():  # an FFT of an empty batch is an error in some backends
            out[chosen] = render(int(chosen.sum()), generator, size, device)
    return out


def _unit_range(x: Tensor) -> Tensor:
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-8)
