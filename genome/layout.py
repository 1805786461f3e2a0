"""The body plan: layers of neurons placed in space, with identity codes.

A `Layout` is a stack of sheets. The input sheet lies at z=0 and has the shape
of the image; hidden sheets and the output row lie above it at z=1, 2, ...
Every neuron has a 3-D position (x and y in [-1, 1] across its sheet) and
identity codes derived from its place in the sheet, as in the genomic
bottleneck of Shuvaev, Lachi, Koulakov and Zador (PNAS 2024), where each
neuron is named by the binary code of its index:

- ``binary``: the row and column indices in binary, as +-1;
- ``gray``: the same in Gray code (neighbours differ in one bit);
- ``onehot``: one-hot row ++ one-hot column, as +-1;
- ``coords``: the (x, y) position, the same at any resolution.

`resample` gives the same plan at another resolution, so that decoders that
read coordinates (``cppn``, ``gnet`` with ``code="coords"``) grow a bigger body
from the same genome.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

CODES = ("binary", "gray", "onehot", "coords")
LAYOUT_FORMAT = 1


@dataclass(frozen=True)
class Sheet:
    """One layer of neurons arranged on a rows x cols grid at height z."""

    rows: int
    cols: int
    z: float

    @property
    def size(self) -> int:
        return self.rows * self.cols

    def positions(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Positions [rows*cols, 3], row-major; x spans columns, y spans rows."""
        y = _span(self.rows, dtype)
        x = _span(self.cols, dtype)
        yy, xx = torch.meshgrid(y, x, indexing="ij")
        zz = torch.full_like(xx, float(self.z))
        return torch.stack([xx.reshape(-1), yy.reshape(-1), zz.reshape(-1)], dim=1)

    def code_dim(self, code: str) -> int:
        if code in ("binary", "gray"):
            return _bits(self.rows) + _bits(self.cols)
        if code == "onehot":
            return (self.rows if self.rows > 1 else 0) + (self.cols if self.cols > 1 else 0)
        if code == "coords":
            return 2
        raise ValueError(f"unknown code {code!r}; valid codes: {', '.join(CODES)}")

    def codes(self, code: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Identity codes [rows*cols, code_dim(code)] of every neuron, row-major."""
        r = torch.arange(self.rows).repeat_interleave(self.cols)
        c = torch.arange(self.cols).repeat(self.rows)
        if code in ("binary", "gray"):
            if code == "gray":
                r, c = r ^ (r >> 1), c ^ (c >> 1)
            parts = [_bit_planes(r, _bits(self.rows)), _bit_planes(c, _bits(self.cols))]
            out = torch.cat(parts, dim=1).to(dtype)
            return out * 2 - 1
        if code == "onehot":
            parts = []
            if self.rows > 1:
                parts.append(torch.nn.functional.one_hot(r, self.rows))
            if self.cols > 1:
                parts.append(torch.nn.functional.one_hot(c, self.cols))
            if not parts:
                return torch.zeros(1, 0, dtype=dtype)
            return torch.cat(parts, dim=1).to(dtype) * 2 - 1
        if code == "coords":
            return self.positions(dtype)[:, :2].clone()
        raise ValueError(f"unknown code {code!r}; valid codes: {', '.join(CODES)}")


def _span(n: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(1, dtype=dtype) if n == 1 else torch.linspace(-1.0, 1.0, n, dtype=dtype)


def _bits(n: int) -> int:
    return max(0, math.ceil(math.log2(n))) if n > 1 else 0


def _bit_planes(index: torch.Tensor, bits: int) -> torch.Tensor:
    if bits == 0:
        return torch.zeros(index.shape[0], 0, dtype=torch.long)
    shifts = torch.arange(bits - 1, -1, -1)
    return (index[:, None] >> shifts) & 1


def grid_for(n: int) -> tuple[int, int]:
    """The most square rows x cols grid holding exactly n neurons (rows <= cols)."""
    if n < 1:
        raise ValueError(f"a layer needs at least 1 neuron, got {n}")
    rows = math.isqrt(n)
    while n % rows:
        rows -= 1
    return rows, n // rows


@dataclass(frozen=True)
class Layout:
    """A layered body plan: input sheet, hidden sheets, output row.

    Build it with `Layout.build((25, 25), [64], 1)`; hidden and output sizes
    may be ints (placed on the most square grid) or (rows, cols) pairs.
    """

    sheets: tuple[Sheet, ...]

    def __post_init__(self) -> None:
        if len(self.sheets) < 2:
            raise ValueError(f"a layout needs an input and an output sheet, got {len(self.sheets)}")
        for i, s in enumerate(self.sheets):
            if s.rows < 1 or s.cols < 1:
                raise ValueError(f"sheet {i} has shape {s.rows}x{s.cols}; both must be >= 1")

    @classmethod
    def build(
        cls,
        input_shape: Sequence[int],
        hidden: Sequence[int | Sequence[int]] = (),
        output: int | Sequence[int] = 1,
    ) -> Layout:
        if len(input_shape) != 2:
            raise ValueError(f"input_shape must be (rows, cols), got {tuple(input_shape)}")
        shapes = [tuple(int(v) for v in input_shape)]
        for h in hidden:
            shapes.append(grid_for(int(h)) if isinstance(h, int) else tuple(int(v) for v in h))
        shapes.append(
            (1, int(output)) if isinstance(output, int) else tuple(int(v) for v in output)
        )
        for s in shapes:
            if len(s) != 2 or min(s) < 1:
                raise ValueError(f"every sheet shape must be (rows>=1, cols>=1), got {s}")
        return cls(tuple(Sheet(r, c, float(z)) for z, (r, c) in enumerate(shapes)))

    # --- sizes -------------------------------------------------------------
    @property
    def sizes(self) -> list[int]:
        return [s.size for s in self.sheets]

    @property
    def n_layers(self) -> int:
        """Number of weight layers (connection types between consecutive sheets)."""
        return len(self.sheets) - 1

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.sheets[0].rows, self.sheets[0].cols)

    def layer_shapes(self) -> list[tuple[int, int]]:
        """(out, in) of every weight matrix."""
        n = self.sizes
        return [(n[i + 1], n[i]) for i in range(self.n_layers)]

    @property
    def n_weights(self) -> int:
        return sum(o * i for o, i in self.layer_shapes())

    @property
    def n_params(self) -> int:
        """Parameters of the grown (p-)network: weights plus biases."""
        return self.n_weights + sum(self.sizes[1:])

    def positions(self, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        return [s.positions(dtype) for s in self.sheets]

    def codes(self, code: str, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        return [s.codes(code, dtype) for s in self.sheets]

    # --- variants ----------------------------------------------------------
    def resample(self, scale: float) -> Layout:
        """The same plan with every sheet but the output rescaled by `scale`."""
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"scale must be a positive finite number, got {scale}")
        sheets = [
            Sheet(max(1, round(s.rows * scale)), max(1, round(s.cols * scale)), s.z)
            for s in self.sheets[:-1]
        ]
        return Layout((*sheets, self.sheets[-1]))

    # --- serialisation -----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": LAYOUT_FORMAT, "sheets": [[s.rows, s.cols] for s in self.sheets]}

    @classmethod
    def from_dict(cls, d: Any) -> Layout:
        """Rebuild a layout from `to_dict` output; raises ValueError naming the fault."""
        if not isinstance(d, dict) or "sheets" not in d:
            raise ValueError("layout must be an object with a 'sheets' list")
        if d.get("format", LAYOUT_FORMAT) != LAYOUT_FORMAT:
            raise ValueError(
                f"layout format {d['format']!r} is not supported; supported: {LAYOUT_FORMAT}"
            )
        sheets = d["sheets"]
        if not isinstance(sheets, list) or len(sheets) < 2:
            raise ValueError("layout.sheets must be a list of at least 2 [rows, cols] pairs")
        out = []
        for z, s in enumerate(sheets):
            ok = isinstance(s, list) and len(s) == 2
            ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in s)
            if not ok:
                raise ValueError(
                    f"layout.sheets[{z}] must be [rows, cols] with ints >= 1, got {s!r}"
                )
            out.append(Sheet(s[0], s[1], float(z)))
        return cls(tuple(out))

    def describe(self) -> str:
        return " -> ".join(f"{s.rows}x{s.cols}" for s in self.sheets)
