"""Genome files: one genome as safetensors with a JSON metadata header.

A ``.genome`` file is a safetensors file (https://github.com/huggingface/safetensors)
holding one float32 tensor ``"genome"`` [D] and, under the metadata key
``"innate"``, one JSON string: the format version, the decoder's registry name
and settings, the layout, the genome length, the p-network size, the
compression ratio, and optionally the genome's fitness and lineage. The file
is self-describing: `load_genome` rebuilds the decoder, so the born network
can be grown from the file alone.

Loading never unpickles. The safetensors header is parsed here first, under
hard size caps, so that a hostile file cannot make the loader allocate more
than the file holds, and header and metadata are held to the bounds of
`genome.limits` (sizes, integers, text) before anything is built; every fault
raises one `GenomeFileError` that names the file and what is wrong. Writing is
atomic (temp file, fsync, rename), so a crash mid-write leaves any previous
file intact.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from genome.decoders import DECODERS, Decoder, decoder_class
from genome.layout import Layout
from genome.limits import MAX_CODE_ELEMENTS, code_elements, json_fault, layout_fault, show

FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
METADATA_KEY = "innate"
TENSOR_KEY = "genome"
# A genome file's header is a few KiB; a cap keeps a forged length from
# making the loader read (and parse) gigabytes before it can complain.
MAX_HEADER_BYTES = 2**20
# The grown network of a layout above this many parameters would not fit in
# memory for inspection; the loader refuses it before building anything.
DEFAULT_MAX_PARAMS = 2**28
_REQUIRED = ("format_version", "decoder", "settings", "layout", "genome_length", "compression")


class GenomeFileError(ValueError):
    """A genome file that cannot be loaded; the message names the file and the fault."""


# Builds the error for one fault of the file being loaded (the message gets the path).
_Fail = Callable[[str], GenomeFileError]


@dataclass(frozen=True)
class GenomeFile:
    """A loaded genome: the genome [D] (float32, CPU), its rebuilt decoder and metadata."""

    genome: torch.Tensor
    decoder: Decoder
    metadata: dict[str, Any]
    path: Path
    fitness: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def layout(self) -> Layout:
        return self.decoder.layout


# --- writing -------------------------------------------------------------------
def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` so that `path` is either the old file or the whole new one.

    The bytes go to a temp file in the same directory (a rename is atomic only
    within one file system), are fsynced, then renamed over `path`.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # os.open with mode 0o666 lets the umask decide permissions, as open() would;
    # O_EXCL refuses to follow a planted file or link.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible on every platform, hence best effort.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_genome(
    path: str | os.PathLike,
    genome: torch.Tensor,
    decoder: Decoder,
    *,
    fitness: dict[str, float] | None = None,
    lineage: dict[str, Any] | None = None,
) -> Path:
    """Save one genome [D] with its decoder, layout and optional fitness and lineage.

    The genome is stored as float32 (a float64 genome is rounded). Raises
    ValueError for a genome that does not fit the decoder or is not finite,
    a fitness that is not a dict of finite numbers, or a lineage that is not
    a JSON object.
    """
    if not isinstance(genome, torch.Tensor) or genome.ndim != 1:
        shape = list(genome.shape) if isinstance(genome, torch.Tensor) else type(genome).__name__
        raise ValueError(f"genome must be a 1-D tensor [D], got {shape}")
    length = decoder.genome_length()
    if genome.shape[0] != length:
        raise ValueError(
            f"genome has {genome.shape[0]} genes; the {decoder.name} decoder for layout "
            f"{decoder.layout.describe()} needs {length}"
        )
    data = genome.detach().to(device="cpu", dtype=torch.float32).contiguous()
    bad = int((~torch.isfinite(data)).sum())
    if bad:
        raise ValueError(f"genome has {bad} non-finite value(s) (after conversion to float32)")
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "decoder": decoder.name,
        "settings": decoder.settings,
        "layout": decoder.layout.to_dict(),
        "genome_length": length,
        "compression": decoder.compression(),
        "p_network_params": decoder.layout.n_params,
    }
    if fitness is not None:
        meta["fitness"] = _check_fitness(fitness, ValueError, "fitness")
    if lineage is not None:
        if not isinstance(lineage, dict):
            raise ValueError(f"lineage must be a dict, got {type(lineage).__name__}")
        meta["lineage"] = lineage
        fault = json_fault(lineage)
        if fault:
            raise ValueError(f"lineage: {fault}")
    try:
        text = json.dumps(meta, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"lineage must be JSON-serialisable with finite numbers: {e}") from e
    return write_atomic(path, st_save({TENSOR_KEY: data}, metadata={METADATA_KEY: text}))


def _check_fitness(fitness: Any, error: Callable[[str], Exception], where: str) -> dict[str, float]:
    if not isinstance(fitness, dict):
        raise error(f"{where} must be an object of name -> number, got {type(fitness).__name__}")
    out = {}
    for k, v in fitness.items():
        ok = isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
        if not ok or not math.isfinite(_as_float(v)):
            raise error(f"{where}[{show(k)}] must be a finite number, got {show(v)}")
        out[k] = float(v)
    return out


def _as_float(v: int | float) -> float:
    """float(v), with an integer beyond the float range as infinity, not an OverflowError."""
    try:
        return float(v)
    except OverflowError:
        return math.inf


# --- reading -------------------------------------------------------------------
def load_genome(path: str | os.PathLike, *, max_params: int = DEFAULT_MAX_PARAMS) -> GenomeFile:
    """Load and validate a genome file; raises `GenomeFileError` naming any fault.

    `max_params` bounds the grown network of the recorded layout (weights and
    biases), so a file cannot ask for a network too large to decode in memory.
    """
    path = Path(path)

    def fail(msg: str) -> GenomeFileError:
        return GenomeFileError(f"{path}: {msg}")

    try:
        # A FIFO or device would block or stream forever; only plain files are genomes.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise fail("not a regular file")
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            header, n_header = _read_header(f, size, fail)
            entry, meta = _check_header(header, fail)
            n_data = size - 8 - n_header
            expected = _check_entry(entry, n_data, fail)
            decoder, fitness, lineage = _check_metadata(meta, expected, max_params, fail)
            f.seek(0)
            raw = f.read()
    except GenomeFileError:
        raise
    except FileNotFoundError:
        raise fail("no such file") from None
    except ValueError:  # os.stat's answer to a NUL byte in the path
        raise fail("not a valid path") from None
    except OSError as e:
        raise fail(f"cannot read: {e.strerror or e}") from None
    if len(raw) != size:
        raise fail("file changed while being read")
    try:
        genome = st_load(raw)[TENSOR_KEY]
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # a Rust panic is a BaseException; all mean "corrupt"
        raise fail(
            f"not a valid safetensors file ({type(e).__name__}: {show(str(e), 120)})"
        ) from None
    # The header was checked here, the tensor parsed by safetensors: they must agree
    # (a JSON object with a repeated key is read differently by different parsers).
    if genome.dtype != torch.float32 or tuple(genome.shape) != (expected,):
        raise fail(f"genome tensor is {genome.dtype} {list(genome.shape)}, not F32 [{expected}]")
    bad = int((~torch.isfinite(genome)).sum())
    if bad:
        raise fail(f"genome has {bad} non-finite value(s) (NaN or infinity)")
    return GenomeFile(genome, decoder, meta, path, fitness, lineage)


def _read_header(f: Any, size: int, fail: _Fail) -> tuple[dict[str, Any], int]:
    """The safetensors header (8-byte little-endian length, then JSON), within caps."""
    if size < 8:
        raise fail(f"truncated: {size} bytes is too short for a safetensors header")
    (n,) = struct.unpack("<Q", f.read(8))
    if n > MAX_HEADER_BYTES:
        raise fail(
            f"not a genome file: header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit"
        )
    if 8 + n > size:
        raise fail(f"truncated: header says {n} bytes but the file has only {size - 8} after it")
    text = f.read(n)
    return _parse_json(text, "safetensors header", fail), n


def _parse_json(text: bytes | str, what: str, fail: _Fail) -> Any:
    def no_constants(name: str) -> None:
        raise ValueError(f"{name} is not valid JSON")

    def finite(literal: str) -> float:
        # 1e999 is valid JSON that Python reads as infinity; no genome field may hold one.
        x = float(literal)
        if not math.isfinite(x):
            raise ValueError(f"number {literal[:40]} is beyond the float range")
        return x

    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(text, parse_constant=no_constants, parse_float=finite)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise fail(f"{what} is not valid JSON ({type(e).__name__}: {str(e)[:120]})") from None


def _check_header(header: Any, fail: _Fail) -> tuple[dict[str, Any], dict[str, Any]]:
    """The genome tensor's header entry and the parsed innate metadata."""
    if not isinstance(header, dict):
        raise fail(f"safetensors header must be a JSON object, got {type(header).__name__}")
    fault = json_fault(header)
    if fault:
        raise fail(f"safetensors header: {fault}")
    extra = sorted(set(header) - {TENSOR_KEY, "__metadata__"})
    if extra:
        raise fail(f"unexpected tensors {extra[:5]}; a genome file holds only {TENSOR_KEY!r}")
    if TENSOR_KEY not in header:
        raise fail(f"no {TENSOR_KEY!r} tensor")
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or METADATA_KEY not in metadata:
        raise fail(f"missing {METADATA_KEY!r} metadata: not a genome file written by innate")
    text = metadata[METADATA_KEY]
    if not isinstance(text, str):
        raise fail(f"{METADATA_KEY!r} metadata must be a JSON string")
    meta = _parse_json(text, f"{METADATA_KEY!r} metadata", fail)
    if not isinstance(meta, dict):
        raise fail(f"{METADATA_KEY!r} metadata must be a JSON object, got {type(meta).__name__}")
    fault = json_fault(meta)
    if fault:
        raise fail(f"metadata {fault}")
    entry = header[TENSOR_KEY]
    if not isinstance(entry, dict):
        raise fail(f"header entry of {TENSOR_KEY!r} must be an object")
    return entry, meta


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_entry(entry: dict[str, Any], n_data: int, fail: _Fail) -> int:
    """Check dtype, shape and offsets of the genome tensor; return its length D."""
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not (isinstance(shape, list) and all(_is_int(s) and s >= 0 for s in shape)):
        raise fail(f"genome tensor has an invalid shape {show(shape)}")
    if dtype != "F32" or len(shape) != 1:
        raise fail(
            f"genome tensor must be 1-D float32 (F32), got {show(dtype)} of shape {show(shape)}"
        )
    ok = isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)
    if not ok or offsets[0] != 0 or offsets[1] != 4 * shape[0]:
        raise fail(f"genome tensor data_offsets {show(offsets)} do not match shape {shape} of F32")
    if n_data != offsets[1]:
        raise fail(f"truncated or padded: the header says {offsets[1]} data bytes, found {n_data}")
    return shape[0]


def _check_metadata(
    meta: dict[str, Any], length: int, max_params: int, fail: _Fail
) -> tuple[Decoder, dict[str, float], dict[str, Any]]:
    """Rebuild the decoder from the metadata and check it against the stored genome."""
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise fail(f"metadata lacks field(s) {missing}")
    version = meta["format_version"]
    if not _is_int(version) or version not in SUPPORTED_VERSIONS:
        raise fail(
            f"unknown format_version {show(version)}; this innate reads versions "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}"
        )
    name = meta["decoder"]
    if not isinstance(name, str) or name not in DECODERS:
        raise fail(f"unknown decoder {show(name)}; valid decoders: {', '.join(DECODERS)}")
    settings = meta["settings"]
    if not isinstance(settings, dict):
        raise fail(f"settings must be an object, got {type(settings).__name__}")
    too_large = layout_fault(meta["layout"])
    if too_large:
        raise fail(too_large)
    try:
        layout = Layout.from_dict(meta["layout"])
    except (ValueError, TypeError) as e:
        raise fail(f"invalid layout: {e}") from None
    if layout.n_params > max_params:
        raise fail(
            f"layout {layout.describe()} grows {layout.n_params} parameters, over the limit "
            f"of {max_params}; pass a larger max_params (CLI: --max-params) to load it"
        )
    try:
        decoder = decoder_class(name)(layout, **settings)
    except Exception as e:  # any failure to build from file data is a bad file
        raise fail(f"invalid settings for decoder {name}: {show(str(e), 200)}") from None
    codes = code_elements(layout, decoder.settings)
    if codes > MAX_CODE_ELEMENTS:
        raise fail(
            f"{decoder.settings['code']} codes of layout {layout.describe()} have {codes} "
            f"entries, over the limit of {MAX_CODE_ELEMENTS}; use a denser code (binary, gray)"
        )
    want = decoder.genome_length()
    if length != want:
        raise fail(
            f"genome has {length} genes but decoder {name} with these settings on layout "
            f"{layout.describe()} needs {want}"
        )
    recorded = meta["genome_length"]
    if not _is_int(recorded) or recorded != want:
        raise fail(f"metadata genome_length {show(recorded)} disagrees with the decoder's {want}")
    comp, got = decoder.compression(), meta["compression"]
    ok = isinstance(got, int | float) and not isinstance(got, bool)
    if not ok or not math.isclose(_as_float(got), comp, rel_tol=1e-9):
        raise fail(f"metadata compression {show(got)} disagrees with the recomputed {comp}")
    params = meta.get("p_network_params", layout.n_params)
    if not _is_int(params) or params != layout.n_params:
        raise fail(
            f"metadata p_network_params {show(params)} disagrees with the layout's "
            f"{layout.n_params}"
        )
    fitness = _check_fitness(meta.get("fitness", {}), fail, "metadata fitness")
    lineage = meta.get("lineage", {})
    if not isinstance(lineage, dict):
        raise fail(f"metadata lineage must be an object, got {type(lineage).__name__}")
    return decoder, fitness, lineage
