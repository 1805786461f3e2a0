"""Face detection data: procedural faces and hard non-faces, and the real LFW subset.

`make_faces` draws a balanced, shuffled batch of face and non-face images,
every one a pure function of the generator state, rendered with batched torch
code (no loop over images) because evolution asks for a fresh batch every
generation.

Faces follow the scale and layout of the tight 25x25 face crops that
scikit-image ships (`skimage.data.lfw_subset`: faces from Labeled Faces in
the Wild, Huang et al. 2007, aligned as in Huang et al. 2012; its non-faces
are background crops of the same photos, black where the alignment warped
past the photo's edge): an egg-shaped head, hair, neck, and the T of dark
eye sockets, eyes, brows, nostrils and mouth on lighter skin (the contrast
pattern that Viola and Jones's Haar features, 2001, and Sinha's ratio
templates, 2002, detect), all anti-aliased ellipses on a coordinate grid. Each face varies in size (the
head 40-100% of the image width), position, in-plane rotation (+-25 degrees),
shape, lighting gradient, feature contrast and (rarely) polarity, background
clutter, gamma, blur and noise.

Non-faces are hard negatives in a roughly equal mixture: scrambled faces (the
same parts at random places and angles in the same head), partial faces (a
crop off the centre of a much larger face), featureless heads and blobs,
textures, and patches of natural images (see `tasks.natural`). All images
share the same backgrounds, gamma, blur and noise, and every image is
normalised to zero mean and unit variance (`normalize_images`): on the raw LFW
subset, mean brightness alone separates faces from non-faces 81% of the time.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from tasks.images import Device, normalize_images
from tasks.natural import draws, grid, natural_patches, normal, textures, uniform

# Face coordinates: origin between the eyes, x to the right, y down, unit =
# half the width of the face at the cheeks. Measured on the mean LFW face:
# eyes 1 unit apart, mouth about 1 unit below them, chin at 1.6.
# (x, y, x-radius, y-radius, angle, bend, contrast low, high, edge softness)
_PARTS = (
    (-0.5, -0.05, 0.38, 0.22, 0.0, 0.0, 0.10, 0.35, 3.0),  # eye sockets: soft shadows
    (0.5, -0.05, 0.38, 0.22, 0.0, 0.0, 0.10, 0.35, 3.0),
    (-0.5, 0.0, 0.24, 0.10, 0.0, 0.0, 0.35, 0.80, 1.0),  # eyes
    (0.5, 0.0, 0.24, 0.10, 0.0, 0.0, 0.35, 0.80, 1.0),
    (-0.5, -0.33, 0.30, 0.07, 0.1, 0.4, 0.15, 0.70, 1.0),  # brows, arched
    (0.5, -0.33, 0.30, 0.07, -0.1, 0.4, 0.15, 0.70, 1.0),
    (0.0, 0.32, 0.09, 0.30, 0.0, 0.0, -0.20, -0.05, 2.0),  # bright nose ridge
    (0.0, 0.62, 0.24, 0.08, 0.0, 0.0, 0.20, 0.50, 1.5),  # nostrils and nose shadow
    (0.0, 1.05, 0.42, 0.09, 0.0, -0.3, 0.30, 0.80, 1.0),  # mouth, corners up
)

FACE, SCRAMBLED, PARTIAL, BLOB = 0, 1, 2, 3
# Shares of the non-faces: scrambled, partial, featureless head, texture, natural patch.
_NON_FACE_SHARES = (0.25, 0.10, 0.20, 0.20, 0.25)
# Each face's feature contrast is scaled by a gain, log-uniform in this range.
# Faint faces matter: a logistic regression trained on 2,000 images with
# strong features only (gain 1) reaches ROC-AUC 0.83 on the real LFW subset;
# with this range, 0.87 (mean of 3 seeds).
_FEATURE_GAIN = (0.4, 1.0)

# Per-head parameters, uniform in (low, high): widths and shifts in image
# half-widths, other lengths in face units (see _PARTS), intensities in
# [0, 1]; the ones in (0, 1) pick a branch by comparison with a probability.
_HEAD_RANGES = {
    "tight": (0.0, 1.0),
    "width_tight": (0.62, 0.9),
    "width_small": (0.38, 0.62),
    "shift_x": (-1.0, 1.0),
    "shift_y": (-1.0, 1.0),
    "tilt_a": (-0.5, 0.5),
    "tilt_b": (-0.5, 0.5),
    "partial_angle": (0.0, 2 * math.pi),
    "partial_radius": (0.75, 1.2),
    "partial_width": (0.8, 2.0),
    "skin": (0.35, 0.8),
    "dark_hair": (0.0, 1.0),
    "hair_dark": (0.02, 0.4),
    "hair_light": (0.4, 0.9),
    "dark_back": (0.0, 1.0),
    "back_drop": (0.1, 0.4),
    "back_any": (0.05, 0.95),
    "neck_shade": (0.5, 0.85),
    "clothes_width": (1.6, 2.4),
    "clothes_tone": (0.0, 1.0),
    "has_hair": (0.0, 1.0),
    "back_hair_lift": (0.0, 0.4),
    "back_hair_width": (1.05, 1.3),
    "back_hair_height": (1.2, 1.5),
    "taper": (0.0, 0.25),
    "head_width": (0.9, 1.05),
    "head_height": (1.3, 1.5),
    "light_angle": (0.0, 2 * math.pi),
    "light_slope": (0.0, 0.4),
    "side_shade": (0.1, 0.35),
    "hairline": (-1.35, -0.95),
    "temple_dip": (0.1, 0.35),
}
_CLUTTER_RANGES = {
    "angle": (0.0, math.pi),
    "x": (-1.0, 1.0),
    "y": (-1.0, 1.0),
    "thin": (0.0, 1.0),
    "thin_radius": (0.03, 0.08),
    "radius_x": (0.1, 0.8),
    "radius_y": (0.1, 0.5),
    "present": (0.0, 1.0),
    "tone": (0.0, 1.0),
}


def make_faces(
    n: int, generator: torch.Generator, size: int = 25, device: Device = "cpu"
) -> tuple[Tensor, Tensor]:
    """`n` images [n, size, size] float32 and labels [n] long (1 face, 0 non-face).

    n // 2 are faces, the rest non-faces, shuffled; every image normalised.
    A pure function of the generator state (random numbers are drawn on the
    generator's device, so a CPU generator gives the same images anywhere).
    """
    if n < 0 or size < 4:
        raise ValueError(f"make_faces needs n >= 0 and size >= 4, got n={n}, size={size}")
    device = torch.device(device)
    n_faces = n // 2
    counts = [int(share * (n - n_faces)) for share in _NON_FACE_SHARES]
    counts[-1] += n - n_faces - sum(counts)
    n_scrambled, n_partial, n_blob, n_texture, n_natural = counts

    modes = torch.tensor(
        [FACE] * n_faces + [SCRAMBLED] * n_scrambled + [PARTIAL] * n_partial + [BLOB] * n_blob,
        device=device,
    )
    images = torch.cat(
        [
            _render_heads(modes, generator, size, device),
            textures(n_texture, generator, size, device),
            natural_patches(n_natural, generator, size, device),
        ]
    )
    labels = (torch.arange(n, device=device) < n_faces).long()
    images = normalize_images(_camera(images, generator, device))
    order = torch.randperm(n, generator=generator, device=generator.device).to(device)
    return images[order], labels[order]


def lfw_faces(device: Device = "cpu") -> tuple[Tensor, Tensor]:
    """The real LFW subset of scikit-image, normalised: [200, 25, 25] and labels [200] long.

    The first 100 are faces (label 1), the last 100 non-faces (label 0).
    """
    images = torch.from_numpy(_lfw_numpy()).to(device)
    labels = (torch.arange(200, device=device) < 100).long()
    return normalize_images(images), labels


@functools.lru_cache(maxsize=1)
def _lfw_numpy():
    import skimage.data

    return skimage.data.lfw_subset().astype("float32")


def _coverage(distance: Tensor) -> Tensor:
    """The share of a pixel inside a straight edge at `distance` pixels (inside > 0), in place.

    A one-pixel linear ramp: box-filter anti-aliasing, cheaper than a sigmoid
    on the [images, parts, pixels] block that dominates the cost.
    """
    return distance.add_(0.5).clamp_(0.0, 1.0)


def _soft_ellipse(x: Tensor, y: Tensor, radius_x, radius_y, pixel) -> Tensor:
    """1 inside the ellipse, 0 outside, anti-aliased over about `pixel` across the rim.

    Radii and pixel are numbers or tensors that broadcast against x and y.
    """
    r = (x / radius_x).square_().add_((y / radius_y).square_()).sqrt_()
    # (1 - r) * the smaller radius approximates the distance to the rim.
    if isinstance(radius_x, Tensor) or isinstance(radius_y, Tensor):
        smaller = torch.minimum(torch.as_tensor(radius_x), torch.as_tensor(radius_y))
    else:
        smaller = min(radius_x, radius_y)
    return _coverage(r.sub_(1).mul_(-smaller / pixel))


def _render_heads(modes: Tensor, generator: torch.Generator, size: int, device: Device) -> Tensor:
    """Heads on cluttered backgrounds, [n, size, size] in about [0, 1]; `modes` picks the kind."""
    n = modes.numel()
    if n == 0:
        return torch.zeros(0, size, size, device=device)
    mode = modes[:, None, None]
    d = draws(generator, n, _HEAD_RANGES, device)

    # Where the head is. Three in four are framed like the LFW crops, whose
    # face half-width is about 0.74 of the half-image, with the eyes 0.43
    # half-widths above the centre; the rest are smaller and move more.
    tight = d["tight"] < 0.75
    width = torch.where(tight, d["width_tight"], d["width_small"])
    shift = torch.where(tight, 0.08, 0.05 + 0.6 * (1 - width))
    centre_x = d["shift_x"] * shift
    centre_y = -0.43 * width + d["shift_y"] * shift
    # Triangular in +-25 degrees: mostly upright, as detected faces are.
    angle = (d["tilt_a"] + d["tilt_b"]) * math.radians(25)
    # A partial face: a point well off the face centre, enlarged, lands mid-image.
    p_x = d["partial_radius"] * torch.cos(d["partial_angle"])
    p_y = 0.35 + 1.4 * d["partial_radius"] * torch.sin(d["partial_angle"])
    partial = mode == PARTIAL
    width = torch.where(partial, d["partial_width"], width)
    cos, sin = torch.cos(angle), torch.sin(angle)
    centre_x = torch.where(partial, -width * (cos * p_x - sin * p_y), centre_x)
    centre_y = torch.where(partial, -width * (sin * p_x + cos * p_y), centre_y)

    # Image (x, y, 1) -> face (x, y): rotate about the face centre, scale by its width.
    row_x = torch.cat([cos, sin, -(cos * centre_x + sin * centre_y)], dim=-1)
    row_y = torch.cat([-sin, cos, sin * centre_x - cos * centre_y], dim=-1)
    to_face = torch.cat([row_x, row_y], dim=1) / width  # [n, 2, 3]
    gx, gy = grid(size, device)
    x, y = (
        to_face[:, :, 0:1, None] * gx + to_face[:, :, 1:2, None] * gy + to_face[:, :, 2:3, None]
    ).unbind(1)
    pixel = (2.0 / size) / width  # one pixel, in face units

    # Intensities: skin, hair, background; the background is often darker.
    skin = d["skin"]
    hair = torch.where(d["dark_hair"] < 0.75, d["hair_dark"], d["hair_light"])
    back_level = torch.where(d["dark_back"] < 0.5, skin - d["back_drop"], d["back_any"])
    image = _background(n, generator, size, device, back_level)

    # Neck and shoulders, behind the head.
    neck = _soft_ellipse(x, y - 1.9, 0.55, 0.8, pixel)
    image = torch.lerp(image, skin * d["neck_shade"], neck)
    clothes = _soft_ellipse(x, y - 3.3, d["clothes_width"], 1.1, pixel)
    image = torch.lerp(image, d["clothes_tone"], clothes)

    # Hair behind the head shows around the top and the sides.
    has_hair = d["has_hair"] < 0.6
    back_hair = _soft_ellipse(
        x, y + d["back_hair_lift"], d["back_hair_width"], d["back_hair_height"], pixel
    )
    image = torch.where(has_hair, torch.lerp(image, hair, back_hair), image)

    # The head: an egg, narrower at the jaw, shaded darker at the sides.
    jaw = 1 - d["taper"] * ((y - 0.35) / 1.4).clamp(0, 1)
    head = _soft_ellipse(x, y - 0.35, d["head_width"] * jaw, d["head_height"], pixel)
    light = d["light_angle"]
    shade = 1 + d["light_slope"] * (x * torch.cos(light) + y * torch.sin(light)) / 2
    x2 = x * x
    shade = shade * (1 - d["side_shade"] * x2.clamp(max=1))
    image = torch.lerp(image, skin * shade, head)

    # Hair on the head, above a hairline that dips at the temples.
    hairline = d["hairline"] + d["temple_dip"] * x2
    fringe = head * _coverage((hairline - y) / pixel)
    image = torch.where(has_hair, torch.lerp(image, hair, fringe), image)

    # Featureless heads skip the costly part: that is what makes them featureless.
    featured = modes != BLOB
    image[featured] += _features(
        to_face[featured], pixel[featured], modes[featured], skin[featured], generator, size
    )
    return image


def _features(
    to_face: Tensor, pixel: Tensor, modes: Tensor, skin: Tensor, generator, size: int
) -> Tensor:
    """The sum of the parts' intensity changes, [n, size, size]."""
    n, device = to_face.shape[0], to_face.device
    p = torch.tensor(_PARTS, device=device, dtype=torch.float32)  # [parts, 9]
    n_parts = p.shape[0]
    r = uniform(generator, (n, n_parts, 11), 0, 1, device).unbind(dim=-1)

    # Face shape: eye spacing and eye-mouth distance vary; each part jitters a little.
    spread = uniform(generator, (n, 1), 0.88, 1.12, device)
    drop = torch.where(p[:, 1] > 0, uniform(generator, (n, 1), 0.88, 1.12, device), 1.0)
    cx = p[:, 0] * spread + 0.1 * (r[0] - 0.5)
    cy = p[:, 1] * drop + 0.1 * (r[1] - 0.5)
    rx = p[:, 2] * (0.8 + 0.45 * r[2])
    ry = p[:, 3] * (0.8 + 0.45 * r[3])
    is_mouth = torch.arange(n_parts, device=device) == n_parts - 1  # the last part
    ry = torch.where(is_mouth, ry * (1 + 1.2 * r[4]), ry)  # mouths open
    angle = p[:, 4] + 0.2 * (r[5] - 0.5)
    bend = p[:, 5] * (2 * r[6] - 0.5)
    contrast = p[:, 6] + (p[:, 7] - p[:, 6]) * r[7]
    low, high = math.log(_FEATURE_GAIN[0]), math.log(_FEATURE_GAIN[1])
    contrast = contrast * torch.exp(uniform(generator, (n, 1), low, high, device))

    # Scrambled: the same parts anywhere in and around the head, at any angle.
    scrambled = (modes == SCRAMBLED)[:, None]
    cx = torch.where(scrambled, 2.2 * r[8] - 1.1, cx)
    cy = torch.where(scrambled, 2.6 * r[9] - 1.0, cy)
    angle = torch.where(scrambled, 2 * math.pi * r[10], angle)
    # Dark parts pull the skin towards black and bright ones (the nose ridge)
    # towards white; one face in ten has its polarity reversed.
    skin = skin.view(n, 1)
    dark = (uniform(generator, (n, 1), 0, 1, device) < 0.9) == (contrast > 0)
    amount = torch.where(dark, -skin, 1 - skin) * contrast.abs()

    # Compose face -> part (rotate about the part centre, scale by its radii)
    # with image -> face: one affine map from the image grid per part.
    cos, sin = torch.cos(angle), torch.sin(angle)
    to_part = torch.stack(
        [
            torch.stack([cos, sin, -(cos * cx + sin * cy)], dim=-1) / rx[..., None],
            torch.stack([-sin, cos, sin * cx - cos * cy], dim=-1) / ry[..., None],
        ],
        dim=-2,
    )  # [n, parts, 2, 3]
    matrix = to_part[..., :2] @ to_face[:, None]
    matrix[..., 2] += to_part[..., 2]
    # The grid is separable (x varies by column, y by row): a broadcast add
    # per coordinate, no matmul. Each [n, parts, size, size], in part radii.
    gx, gy = grid(size, device)
    m = matrix[..., None, None]
    qx = (m[:, :, 0, 0] * gx[0] + m[:, :, 0, 1] * gy[:, :1]).add_(m[:, :, 0, 2])
    qy = (m[:, :, 1, 0] * gx[0] + m[:, :, 1, 1] * gy[:, :1]).add_(m[:, :, 1, 2])
    # A bend curves the part along y = bend * x^2 (arched brows, smiles).
    # In-place ops: this [n, parts, size, size] block dominates the cost.
    qx.square_()
    qy.addcmul_(qx, (bend * rx**2 / ry)[..., None, None], value=-1)
    r = qy.square_().add_(qx).sqrt_()
    # The distance to the rim, in pixels, is about (1 - r) * the smaller radius.
    scale = (torch.minimum(rx, ry) / (pixel.view(n, 1) * p[:, 8]))[..., None, None]
    mask = _coverage(r.mul_(-scale).add_(scale)).view(n, n_parts, size * size)
    return (amount[:, None] @ mask).view(n, size, size)


def _background(n: int, generator, size: int, device: Device, level: Tensor) -> Tensor:
    """Backgrounds around `level` [n, 1, 1]: a natural patch, a texture, or flat, plus blobs."""
    d = draws(generator, n, {"source": (0.0, 1.0), "contrast": (0.1, 0.7)}, device)
    source = d["source"].view(n)
    base = torch.full((n, size, size), 0.5, device=device)
    # Render each kind only where it is used: this runs every generation.
    natural, textured = source < 0.45, (source >= 0.45) & (source < 0.8)
    if natural.any():
        base[natural] = natural_patches(int(natural.sum()), generator, size, device)
    if textured.any():
        base[textured] = textures(int(textured.sum()), generator, size, device)
    image = level + d["contrast"] * (base - 0.5)
    # Clutter: up to three ellipses and lines (thin ellipses), drawn at once, layered in turn.
    c = draws(generator, (n, 3), _CLUTTER_RANGES, device)
    gx, gy = grid(size, device)
    cos, sin = torch.cos(c["angle"]), torch.sin(c["angle"])
    dx, dy = gx - c["x"], gy - c["y"]
    radius_y = torch.where(c["thin"] < 0.4, c["thin_radius"], c["radius_y"])
    blob = _soft_ellipse(
        cos * dx + sin * dy, cos * dy - sin * dx, c["radius_x"], radius_y, 2 / size
    )
    blob = blob * (c["present"] < 0.4)
    for k in range(3):
        image = torch.lerp(image, c["tone"][:, k], blob[:, k])
    return image


def _camera(images: Tensor, generator: torch.Generator, device: Device) -> Tensor:
    """What every image goes through alike: gamma, a Gaussian blur, sensor noise."""
    n, h, w = images.shape
    if n == 0:
        return images
    gamma = torch.exp(uniform(generator, (n, 1, 1), math.log(0.7), math.log(1.5), device))
    images = images.clamp(0, 1) ** gamma
    sigma = uniform(generator, (n, 1), 0.2, 0.9, device)
    taps = torch.arange(-3, 4, device=device, dtype=torch.float32)
    kernel = torch.exp(-(taps * taps) / (2 * sigma * sigma))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # [n, 7]
    # One grouped convolution per axis blurs every image with its own sigma.
    padded = F.pad(images[None], (3, 3, 3, 3), mode="replicate")
    blurred = F.conv2d(padded, kernel.view(n, 1, 7, 1), groups=n)
    blurred = F.conv2d(blurred, kernel.view(n, 1, 1, 7), groups=n)[0]
    # Noise relative to the image's own contrast, so that it never drowns a faint image.
    spread = (
        (blurred - blurred.mean(dim=(-2, -1), keepdim=True))
        .square()
        .mean(dim=(-2, -1), keepdim=True)
        .sqrt()
    )
    noise = (
        spread
        * uniform(generator, (n, 1, 1), 0.0, 0.1, device)
        * normal(generator, (n, h, w), device)
    )
    return blurred + noise
