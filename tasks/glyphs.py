"""Glyphs: a many-class image set of letters from the DejaVu fonts, split by script.

A font set with the shape and protocol of Lake et al.'s (Science 2015)
one-shot benchmark of handwritten characters: scripts of characters, a fixed
split of whole scripts into ``background`` (training and evolution),
``validation`` and ``evaluation`` (`SPLIT_SCRIPTS`; sizes from
`glyph_counts`), and few-shot episodes within or across scripts. It is built
offline from the DejaVu faces that matplotlib ships (`FACES`: Sans, Serif and
Mono with their bold and oblique variants): one *form* of a character is one
face's rendering of it, so a character has up to twelve hand-designed forms.

The characters are the letters (Unicode categories Lu, Ll, Lt, Lo) of the
scripts in `SCRIPTS`, without precomposed or decorated letters (a
decomposition, or "WITH" in the name), rendered without shaping (so Arabic
letters take their isolated forms); Latin includes the IPA and historic
letters. Forms that render empty are dropped, then near-duplicate characters:
two characters whose masters correlate above `DUPLICATE_CORRELATION` in some
face they share (Latin o, Cyrillic о and Greek ο; o and O once scaled to fit)
are one class, kept in the first script of `SCRIPTS`. A character needs
`MIN_FORMS` forms to be kept.

Masters are rendered once at `MASTER_SIZE` (ink in [0, 1], centred by the
ink's bounding box and scaled to fit) and cached as one ``.npz`` in
``$INNATE_CACHE_DIR`` (default ``$XDG_CACHE_HOME/innate`` or
``~/.cache/innate``). Every sample gets its own form, stroke width (min- or
max-pooling of the master), affine map and smooth elastic displacement
(Simard et al., ICDAR 2003), resampled for the whole batch with one
`grid_sample` call at twice the requested size and box-filtered down, then
normalised per image (`tasks.images.normalize_images`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import os
import unicodedata
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tasks.cache import cache_dir, write_atomic
from tasks.distort import distort
from tasks.episodes import split_code
from tasks.images import Device, normalize_images
from tasks.labelled import LabelledImages
from tasks.seeds import seeded

# Bump when the cached masters change for the same fonts (rendering, filters, layout).
VERSION = 1
SPLITS = ("background", "validation", "evaluation")
# Three families, each with its bold and slanted variants: one form per face.
FACES = tuple(
    f"DejaVu{family}{variant}"
    for family, slant in (("Sans", "Oblique"), ("Serif", "Italic"), ("SansMono", "Oblique"))
    for variant in ("", "-Bold", f"-{slant}", f"-Bold{slant}")
)
# Script name -> the prefix of its letters' Unicode names. The order is the
# priority among near-duplicates: the first script keeps the shared shape.
SCRIPTS = {
    "Latin": "LATIN ",
    "Greek": "GREEK ",
    "Cyrillic": "CYRILLIC ",
    "Armenian": "ARMENIAN ",
    "Hebrew": "HEBREW ",
    "Arabic": "ARABIC ",
    "Georgian": "GEORGIAN ",
    "Canadian syllabics": "CANADIAN SYLLABICS ",
    "Tifinagh": "TIFINAGH ",
    "Lisu": "LISU ",
    "Lao": "LAO ",
    "N'Ko": "NKO ",
    "Old Italic": "OLD ITALIC ",
    "Ogham": "OGHAM ",
    "Coptic": "COPTIC ",
}
SPLIT_SCRIPTS = {
    "background": ("Latin", "Greek", "Cyrillic", "Arabic", "Canadian syllabics"),
    "validation": ("Armenian", "Hebrew", "Ogham", "Coptic", "Lisu"),
    "evaluation": ("Georgian", "Tifinagh", "Lao", "N'Ko", "Old Italic"),
}

MASTER_SIZE = 64
# The ink's longer side, in master pixels: a margin for thicker strokes and rotation.
GLYPH_SIZE = 52
# Pixels per em when rendering, then area-downsampled: smooth edges at the master size.
RENDER_PX = 128
# A form with less ink than this (in full pixels at the master size) is empty.
MIN_INK = 8.0
MIN_FORMS = 2
# The resolution of the duplicate check: small shifts and stroke details do not count.
COMPARE_SIZE = 32
# Latin o and Cyrillic о correlate 1.0, o and O 0.92, c and C 0.94. Some distinct letters
# fall too (O and D 0.90, E and F 0.93): better one class lost than two one cannot tell apart.
DUPLICATE_CORRELATION = 0.9


@dataclasses.dataclass(frozen=True)
class GlyphSet:
    """The characters of one split: masters [C, F, S, S] uint8 (ink 0-255), n_forms [C] long.

    Class c has forms masters[c, :n_forms[c]]; the rest is zero padding.
    """

    name: str
    split: str
    class_names: list[str]
    groups: Tensor
    group_names: list[str]
    image_shape: tuple[int, int]
    masters: Tensor
    n_forms: Tensor

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def device(self) -> torch.device:
        return self.masters.device

    def to(self, device: Device) -> GlyphSet:
        """The same set with every tensor on `device`."""
        return dataclasses.replace(
            self,
            groups=self.groups.to(device),
            masters=self.masters.to(device),
            n_forms=self.n_forms.to(device),
        )

    def sample(self, classes: Tensor, per_class: int, generator: torch.Generator) -> Tensor:
        """[N, per_class, H, W] float32 normalised images of the N classes in `classes` [N] long.

        Each sample has its own random form and distortion, drawn from
        `generator` only (on the generator's device, then moved), so the
        images are a pure function of its state and the arguments.
        """
        classes = torch.as_tensor(classes).to(device=self.device, dtype=torch.long).reshape(-1)
        if per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {per_class}")
        if classes.numel() and (classes.min() < 0 or classes.max() >= self.n_classes):
            bad = classes[(classes < 0) | (classes >= self.n_classes)][0].item()
            raise ValueError(f"class index {bad} out of range; valid: 0..{self.n_classes - 1}")
        h, w = self.image_shape
        index = classes.repeat_interleave(per_class)
        images = distort(self.masters, self.n_forms, index, (h, w), generator)
        return normalize_images(images).view(classes.numel(), per_class, h, w)


def load_glyphs(
    split: str = "background", size: tuple[int, int] | int = (28, 28), device: Device = "cpu"
) -> GlyphSet:
    """The characters of the scripts of `split` (one of `SPLITS`), sampled at `size` (H, W)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    shape = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(shape) != 2 or not all(4 <= s <= 256 for s in shape):
        raise ValueError(f"size must be (H, W) with 4 <= H, W <= 256, got {size!r}")
    cat = _catalogue(str(_cache_path()))
    names = list(SPLIT_SCRIPTS[split])
    script_ids = [list(SCRIPTS).index(s) for s in names]
    keep = np.flatnonzero(np.isin(cat["scripts"], script_ids))
    scripts, codes = cat["scripts"][keep], cat["codepoints"][keep]
    return GlyphSet(
        name="glyphs",
        split=split,
        class_names=[f"{list(SCRIPTS)[s]}:{chr(c)}" for s, c in zip(scripts, codes, strict=True)],
        groups=torch.tensor([script_ids.index(s) for s in scripts], dtype=torch.long),
        group_names=names,
        image_shape=shape,
        masters=torch.from_numpy(cat["masters"][keep]),
        n_forms=torch.from_numpy(cat["n_forms"][keep].astype(np.int64)),
    ).to(device)


# The stream a drawn sample set is seeded from; classes are drawn in chunks of this many.
STREAM_DRAWN = 0x6C59
DRAWN_CHUNK = 64


def drawn_glyphs(glyphs: GlyphSet, per_class: int, seed: int = 0) -> LabelledImages:
    """`per_class` samples of every character of `glyphs`, drawn once, as a fixed image set.

    Each sample gets its own form and distortion as in `GlyphSet.sample`;
    classes are drawn in chunks of `DRAWN_CHUNK`, chunk k from
    `seeded(seed, STREAM_DRAWN, split, k)`, so the set is a pure function of
    (seed, split, per_class, size). Episodes then pick distinct samples of it
    (`LabelledImages.sample`): Omniglot's shape, 20 drawings of each
    character, at a small fraction of the cost of a fresh distortion for
    every image of every episode.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be an integer >= 1, got {per_class!r}")
    images = []
    for k, start in enumerate(range(0, glyphs.n_classes, DRAWN_CHUNK)):
        classes = torch.arange(start, min(start + DRAWN_CHUNK, glyphs.n_classes))
        generator = seeded(seed, STREAM_DRAWN, split_code(glyphs.split), k)
        images.append(glyphs.sample(classes, per_class, generator).flatten(0, 1))
    labels = torch.arange(glyphs.n_classes).repeat_interleave(per_class)
    return LabelledImages(
        name=f"{glyphs.name} ({per_class} drawn per class)",
        images=torch.cat(images),
        labels=labels.to(glyphs.device),
        groups=glyphs.groups,
        group_names=list(glyphs.group_names),
        class_names=list(glyphs.class_names),
    )


def glyph_counts() -> dict[str, dict[str, int]]:
    """Per split: the number of scripts, characters and forms (a character's fonts, summed),
    and the characters of each script (by name)."""
    cat = _catalogue(str(_cache_path()))
    counts = {}
    for split, names in SPLIT_SCRIPTS.items():
        inside = np.isin(cat["scripts"], [list(SCRIPTS).index(s) for s in names])
        counts[split] = {
            "scripts": len(names),
            "characters": int(inside.sum()),
            "forms": int(cat["n_forms"][inside].sum()),
            **{s: int((cat["scripts"] == list(SCRIPTS).index(s)).sum()) for s in names},
        }
    return counts


def master_similarity(masters: Tensor, faces: Tensor) -> Tensor:
    """[C, C]: the highest correlation of two characters' masters in a face they share.

    `masters` [C, F, S, S] (any scale), `faces` [C, F] long: the face of each
    form, -1 for padding. The diagonal is set to -1.
    """
    c, f, s, _ = masters.shape
    x = F.adaptive_avg_pool2d(masters.float().view(c * f, 1, s, s), COMPARE_SIZE)
    x = normalize_images(x).view(c, f, -1) / COMPARE_SIZE
    similarity = torch.full((c, c), -1.0)
    for face in range(len(FACES)):
        rows, slot = torch.nonzero(faces == face, as_tuple=True)
        v = x[rows, slot]
        block = similarity[rows[:, None], rows[None, :]]
        similarity[rows[:, None], rows[None, :]] = torch.maximum(block, v @ v.T)
    return similarity.fill_diagonal_(-1.0)


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _cache_key() -> str:
    """What the masters depend on: this format, matplotlib, the font files and the constants."""
    import matplotlib

    sizes = [(face, (_font_dir() / f"{face}.ttf").stat().st_size) for face in FACES]
    # Python's Unicode tables decide which code points are letters, and of which script.
    parts = (VERSION, matplotlib.__version__, unicodedata.unidata_version, sizes, SCRIPTS)
    parts += (MASTER_SIZE, GLYPH_SIZE, RENDER_PX, MIN_INK, MIN_FORMS)
    return repr((*parts, COMPARE_SIZE, DUPLICATE_CORRELATION))


def _cache_path() -> Path:
    digest = hashlib.sha256(_cache_key().encode()).hexdigest()[:16]
    return cache_dir() / f"glyphs-v{VERSION}-{digest}.npz"


_FIELDS = ("masters", "n_forms", "faces", "codepoints", "scripts")


@functools.lru_cache(maxsize=2)
def _catalogue(path: str) -> dict[str, np.ndarray]:
    """Every kept character of every script, read from the cache file at `path` or built into it."""
    key = _cache_key()
    if os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as stored:
                if str(stored["key"]) != key:
                    raise ValueError("it was built for other fonts or another format")
                cat = {name: stored[name] for name in _FIELDS}
            _check(cat)
            return cat
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            warnings.warn(f"rebuilding the glyph cache {path}: {e}", stacklevel=3)
    cat = _build()
    buf = io.BytesIO()
    np.savez_compressed(buf, key=np.array(key), **cat)
    try:
        write_atomic(Path(path), buf.getvalue())
    except OSError as e:
        warnings.warn(f"could not write the glyph cache {path}: {e}", stacklevel=3)
    return cat


def _check(cat: dict[str, np.ndarray]) -> None:
    """Raise ValueError unless the arrays fit together (a cache file is never misread)."""
    c, f, s = len(cat["codepoints"]), len(FACES), MASTER_SIZE
    shapes = {"masters": (c, f, s, s), "n_forms": (c,), "faces": (c, f), "scripts": (c,)}
    for name, shape in shapes.items():
        if cat[name].shape != shape:
            raise ValueError(f"{name} has shape {cat[name].shape}, expected {shape}")
    if cat["masters"].dtype != np.uint8 or (cat["n_forms"] < MIN_FORMS).any():
        raise ValueError("masters are not uint8 or a character has too few forms")
    if not np.isin(cat["scripts"], np.arange(len(SCRIPTS))).all():
        raise ValueError("a script index is out of range")


def _letters() -> list[tuple[int, int]]:
    """(codepoint, script index) of the letters that some face covers, in `SCRIPTS` order."""
    from matplotlib.ft2font import FT2Font

    covered = set()
    for face in FACES:
        covered |= set(FT2Font(str(_font_dir() / f"{face}.ttf")).get_charmap())
    letters = []
    for code in sorted(covered):
        ch = chr(code)
        name = unicodedata.name(ch, "")
        letter = unicodedata.category(ch) in ("Lu", "Ll", "Lt", "Lo")
        if not letter or unicodedata.decomposition(ch) or " WITH " in name:
            continue
        for script, (_, prefix) in enumerate(SCRIPTS.items()):
            if name.startswith(prefix):
                letters.append((code, script))
    return sorted(letters, key=lambda t: (t[1], t[0]))


def _render(font, code: int) -> np.ndarray | None:
    """The master [S, S] float32 of one character in one face, or None if it is (almost) empty."""
    font.clear()
    font.set_text(chr(code), 0.0)
    font.draw_glyphs_to_bitmap(antialiased=True)
    image = np.asarray(font.get_image(), dtype=np.float32) / 255.0
    rows, cols = np.flatnonzero(image.any(1)), np.flatnonzero(image.any(0))
    if rows.size == 0:
        return None
    image = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = image.shape
    fit = GLYPH_SIZE / max(h, w)
    out_h, out_w = max(1, round(h * fit)), max(1, round(w * fit))
    small = F.interpolate(
        torch.from_numpy(image)[None, None],
        size=(out_h, out_w),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )[0, 0].clamp_(0, 1)
    master = torch.zeros(MASTER_SIZE, MASTER_SIZE)
    top, left = (MASTER_SIZE - out_h) // 2, (MASTER_SIZE - out_w) // 2
    master[top : top + out_h, left : left + out_w] = small
    if master.sum() < MIN_INK:
        return None
    return master.numpy()


def _build() -> dict[str, np.ndarray]:
    """Render every letter in every face that covers it, then drop the thin and the duplicates."""
    from matplotlib.ft2font import FT2Font

    letters = _letters()
    fonts = []
    for face in FACES:
        font = FT2Font(str(_font_dir() / f"{face}.ttf"))
        font.set_size(RENDER_PX, 72)  # at 72 dpi a point is a pixel
        fonts.append((font, set(font.get_charmap())))
    c, s = len(letters), MASTER_SIZE
    masters = np.zeros((c, len(FACES), s, s), dtype=np.uint8)
    faces = np.full((c, len(FACES)), -1, dtype=np.int64)
    n_forms = np.zeros(c, dtype=np.int64)
    for i, (code, _) in enumerate(letters):
        for face, (font, charmap) in enumerate(fonts):
            master = _render(font, code) if code in charmap else None
            if master is not None:
                masters[i, n_forms[i]] = np.round(master * 255)
                faces[i, n_forms[i]] = face
                n_forms[i] += 1
    rich = np.flatnonzero(n_forms >= MIN_FORMS)
    similarity = master_similarity(torch.from_numpy(masters[rich]), torch.from_numpy(faces[rich]))
    kept: list[int] = []
    for i in range(len(rich)):  # in SCRIPTS order: the first script keeps a shared shape
        if not kept or similarity[i, kept].max() < DUPLICATE_CORRELATION:
            kept.append(i)
    keep = rich[kept]
    return {
        "masters": masters[keep],
        "n_forms": n_forms[keep],
        "faces": faces[keep],
        "codepoints": np.array([letters[i][0] for i in keep], dtype=np.int64),
        "scripts": np.array([letters[i][1] for i in keep], dtype=np.int64),
    }
