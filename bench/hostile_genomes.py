"""Hostile genome files for bench/fuzz_genomes.py: mutations of real ones, file i a pure
function of (seed, i).

`write_bases` writes one real genome file per decoder (with fitness and
lineage); `hostile_file(bases, seed, i)` mutates one of them: byte flips,
truncations, forged header lengths, metadata fields set to extreme or
ill-typed values, huge or malformed layouts and settings, wrong tensor dtypes,
shapes and offsets, non-finite genes.
"""

from __future__ import annotations

import json
import random
import struct
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIELDS = ["format_version", "decoder", "settings", "layout", "genome_length", "compression"]
FIELDS += ["p_network_params", "fitness", "lineage", "extra"]
# Hostile JSON values, as the raw text that goes into the file.
VALUES = [
    *map(json.dumps, [10**309, -(10**309), 2**64, 2**63, -(2**63), 1e308, -1e308, 5e-324]),
    *map(json.dumps, [0, -1, 1, 3.5, True, False, None, "", [], {}, [1, 2], {"a": 1}]),
    *map(json.dumps, ["[bold red]x[/]", "[/bold]", "\x1b[2J\x1b[31mred", "\u202eevil", "\r\n"]),
    *map(json.dumps, ["\x00", "日本語", "x" * 100_000, "gnet", "binary", "onehot"]),
    "NaN", "Infinity", "-Infinity", "1e999", "-1e999", '"\\ud800"', '"a\\udfffb"',
    "1" + "0" * 5000, "[" * 40 + "]" * 40, "[" * 5000 + "]" * 5000,
    '{"a":' * 40 + "1" + "}" * 40,
]  # fmt: skip
KEYS = ["faces", "", "[red]k", "[/x]", "\x1b[31mk", "\u202ek", "x" * 1000, "\ud800"]
LAYOUTS = [
    [[3000, 3000], [2, 2], [1, 3]], [[1, 100_000], [1, 1], [1, 1]], [[512, 512], [1, 1], [1, 1]],
    [[2**62, 2], [1, 1]], [[0, 3], [1, 1]], [[-1, 3], [1, 1]], [[1.5, 3], [1, 1]],
    [["6", "5"], [1, 1]], [[True, 1], [1, 1]], [[1, 1]], [], [[1, 1]] * 300, [[1, 1]] * 3,
    [[6, 5], [2, 2], [1, 3]], [[6, 5], [4], [1, 3]], [[256, 1024], [1, 1]],
    [[256, 512], [255, 512], [1, 1]], [[16384, 16], [1, 1], [1, 1]], [[64, 64], [4, 4], [1, 2]],
    [[1, 60_000], [1, 1], [1, 1]], [[10**400, 1], [1, 1]],
]  # fmt: skip
SETTINGS = [
    {"hidden": [10**6, 2]}, {"hidden": [2**63]}, {"hidden": []}, {"hidden": [1] * 5000},
    {"code": "onehot"}, {"code": "[red]x"}, {"genes": 10**9}, {"genes": 0}, {"genes": 2**70},
    {"activations": ["sin"] * 1000}, {"activations": []}, {"standardize": "yes"},
    {"standardize": False}, {"x" * 10_000: 1}, {"hidden": [4096, 4096]},
]  # fmt: skip
DTYPES = ["F64", "F16", "BF16", "I32", "U8", "BOOL", "X", None, 1]
KINDS = {
    "bytes": 20, "truncate": 8, "length": 5, "field": 20, "nested": 15, "layout": 10,
    "settings": 7, "tensor": 8, "genes": 5, "random": 2,
}  # fmt: skip


# --- generating ----------------------------------------------------------------------
def write_bases(folder: Path) -> list[bytes]:
    """One real genome file per decoder (tiny layout, with fitness and lineage), as bytes."""
    import torch

    from genome import DECODERS, Layout, make_decoder
    from genome.files import save_genome

    layout = Layout.build((6, 5), [4], 3)
    small = {"gnet": {"hidden": [3, 3]}, "connectome": {"genes": 3}, "cppn": {"hidden": [4]}}
    out = []
    for name in sorted(DECODERS):
        dec = make_decoder(name, layout, **small.get(name, {}))
        genome = dec.init(1, torch.Generator().manual_seed(0))[0]
        lineage = {"run": "faces__gnet__0", "generation": 3, "seed": 0}
        path = save_genome(folder / f"{name}.genome", genome, dec, fitness={"faces": 0.5},
                           lineage=lineage)  # fmt: skip
        out.append(path.read_bytes())
    return out


def _split(raw: bytes) -> tuple[dict, dict, bytes]:
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    return header, json.loads(header["__metadata__"]["innate"]), raw[8 + n :]


def _join(header: dict, meta_text: str, data: bytes) -> bytes:
    header = {**header, "__metadata__": {"innate": meta_text}}
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _with_raw(meta: dict, path: list[str], raw: str) -> str:
    """The metadata as JSON text with the value at `path` replaced by the raw text."""
    d = meta
    for k in path[:-1]:
        d = d.setdefault(k, {}) if isinstance(d.get(k), dict) else d.setdefault("x", {})
    d[path[-1]] = "@@RAW@@"
    return json.dumps(meta).replace('"@@RAW@@"', raw, 1)


def _consistent(meta: dict, sheets: Any) -> None:
    """Update p_network_params and compression to match a new layout, when computable."""
    ok = isinstance(sheets, list) and len(sheets) < 1000
    ok = ok and all(isinstance(s, list) and len(s) == 2 for s in sheets)
    if ok and all(isinstance(v, int) and abs(v) < 2**64 for s in sheets for v in s):
        sizes = [a * b for a, b in sheets]
        params = sum(sizes[k] * sizes[k + 1] + sizes[k + 1] for k in range(len(sizes) - 1))
        meta["p_network_params"] = params
        meta["compression"] = params / meta["genome_length"]


def hostile_file(bases: list[bytes], seed: int, i: int) -> tuple[bytes, str]:
    """File i of the run with this seed: (its bytes, the kind of mutation)."""
    rng = random.Random(seed * 1_000_003 + i)
    kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
    raw = rng.choice(bases)
    header, meta, data = _split(raw)
    if kind == "bytes":
        b = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            pos = (
                rng.randrange(min(len(b), 8 + 600)) if rng.random() < 0.7 else rng.randrange(len(b))
            )
            b[pos] = rng.randrange(256)
        out = bytes(b)
    elif kind == "truncate":
        out = raw[: rng.randrange(len(raw))]
    elif kind == "length":
        n = rng.choice(
            [0, 1, 2**63, 2**64 - 1, 2**20, 2**20 + 1, len(raw), rng.randrange(len(raw))]
        )
        out = struct.pack("<Q", n) + raw[8:]
    elif kind in ("field", "nested"):
        if kind == "field":
            path = [rng.choice(FIELDS)]
        else:
            path = [rng.choice(["fitness", "lineage", "settings", "layout"]), rng.choice(KEYS)]
        out = _join(header, _with_raw(meta, path, rng.choice(VALUES)), data)
    elif kind == "layout":
        sheets = rng.choice(LAYOUTS)
        meta["layout"] = {"format": rng.choice([1, 1, 1, 2, "1"]), "sheets": sheets}
        if rng.random() < 0.8:
            _consistent(meta, sheets)
        out = _join(header, json.dumps(meta), data)
    elif kind == "settings":
        meta["settings"] = {**meta["settings"], **rng.choice(SETTINGS)}
        out = _join(header, json.dumps(meta), data)
    elif kind == "tensor":
        entry = dict(header["genome"])
        edit = rng.choice(["dtype", "shape", "offsets", "extra", "metadata", "dup"])
        if edit == "dtype":
            entry["dtype"] = rng.choice(DTYPES)
        elif edit == "shape":
            entry["shape"] = rng.choice([[], [-1], [2**62], [len(data) // 4, 1], "8", [1.5]])
        elif edit == "offsets":
            entry["data_offsets"] = rng.choice([[4, len(data)], [0, 2**64], [0], None, [0, -4]])
        header = {**header, "genome": entry}
        if edit == "extra":
            header["other"] = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
        text = json.dumps(meta)
        out = _join(header, text, data)
        if edit == "metadata":
            h = {
                **header,
                "__metadata__": rng.choice(
                    [{"innate": 5}, {"x": "1"}, [], {"innate": text, "n": 1}]
                ),
            }
            h_text = json.dumps(h).encode()
            out = struct.pack("<Q", len(h_text)) + h_text + data
        elif edit == "dup":
            h_text = json.dumps({**header, "__metadata__": {"innate": text}}).encode()
            dup = (
                b'{"genome": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}, ' + h_text[1:]
            )
            out = struct.pack("<Q", len(dup)) + dup + data
    elif kind == "genes":
        b = bytearray(data)
        value = rng.choice([float("nan"), float("inf"), -float("inf"), 3.4e38, -3.4e38, 1e-45])
        for _ in range(rng.randint(1, 4)):
            pos = 4 * rng.randrange(len(b) // 4)
            b[pos : pos + 4] = struct.pack("<f", value)
        out = raw[: len(raw) - len(data)] + bytes(b)
    else:
        out = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 400)))
    if kind not in ("bytes", "truncate", "random") and rng.random() < 0.1:
        b = bytearray(out)  # a second, byte-level fault on top
        if b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        out = bytes(b)
    return out, kind


# --- running -------------------------------------------------------------------------
