"""What a genome file may ask for: named bounds on its values and on what it grows.

A genome file of a few hundred bytes can name a body of millions of neurons,
identity codes of billions of entries, or numbers no float can hold. The
loader (`genome.files`) and `inspect` check these bounds before building
anything, so that memory stays proportional to what is kept and printed. Every
bound leaves a wide margin over the bodies the project grows (28x28 -> 800 ->
10 digits: 1,594 neurons, 636,010 parameters; 25x25 -> 64 -> 1 faces).
"""

from __future__ import annotations

import math
from typing import Any

from genome.layout import Layout

# Neurons in all sheets together: 164x the digits body, a 512x512 input sheet.
MAX_NEURONS = 2**18
# Sheets in a layout (the project's bodies have 3 or 4).
MAX_SHEETS = 256
# Identity-code entries (neurons x code width, over all sheets): what a
# decoder materialises for its codes. Digits with one-hot codes need 89,776.
MAX_CODE_ELEMENTS = 2**24
# Edges of the graph `inspect` and `export --graphml` build: networkx spends
# about a kilobyte per edge. Digits at the default keep of 10% has 63,600.
MAX_GRAPH_EDGES = 2**19
# Nesting of the JSON metadata (the project writes depth 3).
MAX_JSON_DEPTH = 32
# Integers in the metadata: beyond 64 bits they are no size, seed or count,
# and beyond 1e308 they do not even convert to a float.
MAX_ABS_INT = 2**64


def show(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, for one readable error line."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= MAX_ABS_INT:
        # repr of a 4,000-digit integer is unreadable, and past 4,300 digits an error.
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_fault(tree: Any) -> str | None:
    """The first value of a parsed JSON tree no genome file should hold, or None.

    Refused: nesting deeper than `MAX_JSON_DEPTH`, integers of 64 bits or more,
    and strings or keys that are not valid UTF-8 text (lone surrogates, which
    JSON's \\ud800 escapes can produce and no terminal or file can encode).
    The walk is iterative, so a deep tree cannot exhaust the stack.
    """
    stack: list[tuple[Any, str, int]] = [(tree, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return f"{where or 'the metadata'} nests deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(value, str):
            if not _encodable(value):
                return f"{where or 'a string'} holds a lone surrogate (not UTF-8 text)"
        elif isinstance(value, int) and not isinstance(value, bool):
            if abs(value) >= MAX_ABS_INT:
                return f"{where} is {show(value)}; integers must be below 2**64"
        elif isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str) or not _encodable(k):
                    return f"{where or 'the metadata'} has a key that is not UTF-8 text"
                stack.append((v, f"{where}.{k}" if where else k, depth + 1))
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def layout_fault(d: Any) -> str | None:
    """Why a recorded layout is too large to build, read before `Layout.from_dict`, or None.

    Only sizes are checked here; `Layout.from_dict` checks types and values.
    """
    sheets = d.get("sheets") if isinstance(d, dict) else None
    if not isinstance(sheets, list):
        return None
    if len(sheets) > MAX_SHEETS:
        return f"layout has {len(sheets)} sheets; at most {MAX_SHEETS} are allowed"
    total = 0
    for s in sheets:
        dims = s if isinstance(s, list) and len(s) == 2 else None
        if dims and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in dims):
            # Each factor is checked before the product, so no huge number is formed.
            if max(dims) > MAX_NEURONS or dims[0] * dims[1] > MAX_NEURONS - total:
                return (
                    f"layout {_describe(sheets)} has more than {MAX_NEURONS} neurons "
                    f"(the limit of a genome file)"
                )
            total += dims[0] * dims[1]
    return None


def _describe(sheets: list) -> str:
    text = " -> ".join(
        "x".join(show(v, 12) for v in s) if isinstance(s, list) else "?" for s in sheets[:6]
    )
    return text + (" -> ..." if len(sheets) > 6 else "")


def code_elements(layout: Layout, settings: dict[str, Any]) -> int:
    """Identity-code entries a decoder with these settings materialises for `layout`."""
    code = settings.get("code")
    if not isinstance(code, str):
        return 0
    return sum(s.size * s.code_dim(code) for s in layout.sheets)


def graph_edges(layout: Layout, keep: float) -> int:
    """Edges of the graph of the strongest `keep` of each layer's weights."""
    return sum(max(1, math.ceil(keep * o * i)) for o, i in layout.layer_shapes())
