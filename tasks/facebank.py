"""A bank of procedural faces and non-faces: rendered once, cached on disk, drawn from cheaply.

`load_face_bank(seed, size)` returns `size` images of `make_faces` (tasks/faces.py),
rendered in chunks of `CHUNK`, chunk i from the generator `seeded(seed,
BANK_STREAM, i)`, so the bank is a pure function of (seed, size, image size,
generator version). It is kept in one safetensors file under the cache
directory that the native kernels use (``$INNATE_CACHE_DIR``, else
``$XDG_CACHE_HOME/innate`` or ``~/.cache/innate``), written atomically, whose
header holds the format, the generator version and every parameter, and a
CRC-32 of the images and labels: a file of another version or size is never
read as this bank, and a corrupt one is rendered again with a warning.

`FaceBank.draw(n, generator)` is one generation's minibatch: n // 2 faces and
the rest non-faces, drawn without replacement and shuffled, a pure function
of the generator (the caller seeds it from the run's seed and the generation).
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from tasks.cache import cache_dir, write_atomic
from tasks.faces import make_faces
from tasks.images import Device
from tasks.seeds import seeded

# The layout of the file; bump it when the file's contents change meaning.
FORMAT = 1
# The generator's version: bump it when make_faces draws other images from the
# same generator. The hash of its source (below) catches edits this misses.
GENERATOR_VERSION = 1
# Images rendered at once: big enough to amortise the per-call cost, small
# enough that the [chunk, parts, size, size] block of `make_faces` stays small.
CHUNK = 1024
# A stream of its own, apart from the ones a run derives from its seed.
BANK_STREAM = 0xFACE
MAX_SIZE = 1 << 20
_SOURCES = ("faces.py", "natural.py", "images.py")


@functools.cache
def generator_version() -> str:
    """The version of the images: `GENERATOR_VERSION` and a hash of the generator's source."""
    digest = hashlib.sha256()
    for name in _SOURCES:
        digest.update((Path(__file__).parent / name).read_bytes())
    return f"{GENERATOR_VERSION}-{digest.hexdigest()[:12]}"


@dataclass(frozen=True)
class FaceBank:
    """`images` [N, S, S] float32 (normalised), `labels` [N] long (1 face, 0 non-face)."""

    images: Tensor
    labels: Tensor
    seed: int

    @functools.cached_property
    def _classes(self) -> tuple[Tensor, Tensor]:
        return (self.labels == 1).nonzero()[:, 0], (self.labels == 0).nonzero()[:, 0]

    @property
    def max_batch_size(self) -> int:
        faces, non_faces = self._classes
        # n // 2 faces and n - n // 2 non-faces.
        return min(2 * len(faces) + 1, 2 * len(non_faces))

    def to(self, device: Device) -> FaceBank:
        return FaceBank(self.images.to(device), self.labels.to(device), self.seed)

    def draw(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """n images and labels: n // 2 faces and the rest non-faces, shuffled, from `generator`."""
        if not 0 <= n <= self.max_batch_size:
            raise ValueError(
                f"a face bank of {len(self.labels)} images gives batches of 0 to "
                f"{self.max_batch_size}, got {n}"
            )
        on = generator.device
        faces, non_faces = self._classes
        pick = []
        for index, k in ((faces, n // 2), (non_faces, n - n // 2)):
            pick.append(index[torch.randperm(len(index), generator=generator, device=on)[:k].cpu()])
        order = torch.randperm(n, generator=generator, device=on).to(self.images.device)
        chosen = torch.cat(pick).to(self.images.device)[order]
        return self.images[chosen], self.labels[chosen]


def render_face_bank(seed: int, size: int, image_size: int = 25) -> tuple[Tensor, Tensor]:
    """The bank's images [size, S, S] and labels [size] (long), rendered now, chunk by chunk."""
    images, labels = [], []
    for i, start in enumerate(range(0, size, CHUNK)):
        x, y = make_faces(min(CHUNK, size - start), seeded(seed, BANK_STREAM, i), image_size)
        images.append(x)
        labels.append(y)
    if not images:
        return torch.zeros(0, image_size, image_size), torch.zeros(0, dtype=torch.long)
    return torch.cat(images), torch.cat(labels)


def bank_path(seed: int, size: int, image_size: int = 25) -> Path:
    name = f"bank-s{seed}-n{size}-{image_size}x{image_size}-v{generator_version()}.safetensors"
    return cache_dir() / "faces" / name


def _header(seed: int, size: int, image_size: int) -> dict[str, str]:
    return {
        "format": str(FORMAT),
        "version": generator_version(),
        "seed": str(seed),
        "size": str(size),
        "height": str(image_size),
        "width": str(image_size),
    }


def _crc(t: Tensor) -> str:
    return str(zlib.crc32(t.contiguous().view(torch.uint8).numpy()))


def _read(path: Path, want: dict[str, str]) -> tuple[Tensor, Tensor]:
    """The bank in `path`; ValueError where it is not the bank `want` describes, or corrupt."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        images, labels = f.get_tensor("images"), f.get_tensor("labels")
    theirs = {k: meta.get(k) for k in want}
    if theirs != want:
        raise ValueError(f"it holds the bank {json.dumps(theirs)}, not {json.dumps(want)}")
    n, s = int(want["size"]), int(want["height"])
    if images.shape != (n, s, s) or images.dtype != torch.float32 or labels.shape != (n,):
        raise ValueError(f"its tensors have shapes {list(images.shape)} and {list(labels.shape)}")
    if _crc(images) != meta.get("images_crc32") or _crc(labels) != meta.get("labels_crc32"):
        raise ValueError("its checksum does not match its contents")
    return images, labels.long()


def _write(path: Path, images: Tensor, labels: Tensor, header: dict[str, str]) -> None:
    from safetensors.torch import save

    labels = labels.to(torch.uint8)
    meta = {**header, "images_crc32": _crc(images), "labels_crc32": _crc(labels)}
    data = save({"images": images.contiguous(), "labels": labels}, metadata=meta)
    write_atomic(path, data)


def build_face_bank(seed: int, size: int, image_size: int = 25) -> FaceBank:
    """The bank from its cache file, or rendered and cached (a bad file is replaced, with a warning)."""
    if not 2 <= size <= MAX_SIZE:
        raise ValueError(f"a face bank holds 2 to {MAX_SIZE} images, got {size}")
    seed, size, image_size = int(seed), int(size), int(image_size)
    path = bank_path(seed, size, image_size)
    header = _header(seed, size, image_size)
    if path.is_file():
        try:
            return FaceBank(*_read(path, header), seed)
        except Exception as e:  # whatever is wrong with the file, it is rendered again
            warnings.warn(f"{path}: not a usable face bank ({e}); rendering it again", stacklevel=2)
    images, labels = render_face_bank(seed, size, image_size)
    try:
        _write(path, images, labels, header)
    except OSError as e:  # a read-only cache costs a render per process, not the run
        warnings.warn(f"{path}: could not cache the face bank ({e})", stacklevel=2)
    return FaceBank(images, labels, seed)


@functools.lru_cache(maxsize=2)
def load_face_bank(seed: int, size: int, image_size: int = 25) -> FaceBank:
    """`build_face_bank`, kept in memory: one read per process and bank."""
    return build_face_bank(seed, size, image_size)
