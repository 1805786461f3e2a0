"""What a genome grows, as plain values: the report of `innate inspect`, and exports.

`inspect_report` gathers a loaded genome file's decoder, layout, compression,
per-layer weight statistics, wiring cost and graph metrics into one JSON-able
dict; `write_state_dict` saves the born network as a `state_dict` (.pt or
.safetensors) for other tools. The command line only prints these.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import torch

from genome.files import GenomeFile, write_atomic
from genome.layout import Layout
from genome.limits import MAX_GRAPH_EDGES, graph_edges
from genome.phenotype import Phenotype

# Elements of a weight matrix read at once for statistics and wiring: memory
# beyond the phenotype itself stays at a few MiB, whatever the layout.
CHUNK = 2**18


def _finite(x: float) -> float | None:
    """JSON has no NaN or infinity: an undefined or overflowing measure is null."""
    return x if math.isfinite(x) else None


def strict_json(value: Any) -> Any:
    """`value` with every non-finite float replaced by None, so json.dumps(allow_nan=False) holds."""
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


def _rows(t: torch.Tensor) -> list[torch.Tensor]:
    """`t` as 2-D row blocks of about CHUNK elements each (views, no copies)."""
    t = t.detach().reshape(t.shape[0] if t.ndim > 1 else 1, -1)
    step = max(1, CHUNK // max(1, t.shape[1]))
    return [t[s : s + step] for s in range(0, t.shape[0], step)]


def weight_stats(t: torch.Tensor) -> dict[str, float | int | None]:
    """Mean, std, min, max, the share with |x| < 1e-3 and the non-finite count, in float64.

    Computed block by block (two passes for the std), so no float64 copy of
    the whole tensor is made; with non-finite entries the moments are null.
    """
    n = t.numel()
    total, near, bad = 0.0, 0, 0
    lo, hi = math.inf, -math.inf
    for r in _rows(t):
        r = r.double()
        ok = torch.isfinite(r)
        bad += int((~ok).sum())
        total += r.sum().item()
        lo, hi = min(lo, r.min().item()), max(hi, r.max().item())
        near += int((r.abs() < 1e-3).sum())
    mean = total / n if n else math.nan
    sq = sum(((r.double() - mean) ** 2).sum().item() for r in _rows(t)) if not bad else math.nan
    return {
        "mean": _finite(mean) if not bad else None,
        "std": _finite(math.sqrt(sq / n)) if n and not bad else None,
        "min": _finite(lo) if not bad else None,
        "max": _finite(hi) if not bad else None,
        "frac_near_zero": near / n if n else None,
        "non_finite": bad,
    }


def wiring_length(phenotype: Phenotype, i: int = 0) -> float:
    """Individual i's wiring cost, sum |w| * distance, in float64 and in row blocks.

    The same measure as `genome.wiring.wiring_cost`, without its cached
    [out, in] distance matrices or its |w| copy of every layer.
    """
    pos = phenotype.layout.positions(torch.float64)
    total = 0.0
    for k, w in enumerate(phenotype.weights):
        start = 0
        for r in _rows(w[i]):
            post = pos[k + 1][start : start + r.shape[0]]
            # A plain difference, not cdist: same values, and no per-call setup cost.
            dist = (post[:, None, :] - pos[k][None]).norm(dim=-1)
            total += (r.double().abs() * dist).sum().item()
            start += r.shape[0]
    return total


def inspect_report(gf: GenomeFile, phenotype: Phenotype, keep: float) -> dict[str, Any]:
    """Everything `inspect` shows about a loaded genome file, as one strict-JSON-able dict.

    Raises ValueError if the graph of the strongest `keep` edges would be
    larger than `genome.limits.MAX_GRAPH_EDGES` (check `graph_fault` first to
    refuse before decoding). Graph measures are null when a weight is not finite.
    """
    from genome.graph import graph_metrics, to_graph

    fault = graph_fault(gf.layout, keep)
    if fault:
        raise ValueError(fault)
    dec = gf.decoder
    layers = [
        {
            "layer": k,
            "shape": list(w.shape[1:]),
            "weights": weight_stats(w[0]),
            "biases": weight_stats(b[0]),
        }
        for k, (w, b) in enumerate(zip(phenotype.weights, phenotype.biases, strict=True))
    ]
    if any(lay[part]["non_finite"] for lay in layers for part in ("weights", "biases")):
        # Ordering, modularity and path search are undefined on NaN weights.
        metrics: dict[str, Any] = dict.fromkeys(_GRAPH_KEYS)
    else:
        metrics = graph_metrics(to_graph(phenotype, 0, keep))
    return strict_json(
        {
            "path": str(gf.path),
            "decoder": dec.name,
            "settings": dec.settings,
            "layout": dec.layout.to_dict(),
            "layout_text": dec.layout.describe(),
            "genome_length": dec.genome_length(),
            "p_network_params": dec.layout.n_params,
            "compression": dec.compression(),
            "fitness": gf.fitness,
            "lineage": gf.lineage,
            "layers": layers,
            "wiring_cost": wiring_length(phenotype),
            "graph_keep": keep,
            "graph": metrics,
        }
    )


_GRAPH_KEYS = (
    "n_nodes",
    "n_edges",
    "density",
    "mean_degree",
    "clustering",
    "modularity",
    "n_communities",
    "wiring_length",
    "largest_component",
    "mean_path_length",
)


def graph_fault(layout: Layout, keep: float) -> str | None:
    """Why the graph of the strongest `keep` edges of `layout` is too large to build, or None."""
    edges = graph_edges(layout, keep)
    if edges <= MAX_GRAPH_EDGES:
        return None
    return (
        f"the graph of the strongest {keep:.3g} of {layout.n_weights} weights has {edges} edges, "
        f"over the limit of {MAX_GRAPH_EDGES}; lower --keep"
    )


def write_state_dict(module: torch.nn.Module, path: Path, metadata: dict[str, Any]) -> None:
    """Save a module's state_dict to `path` (.safetensors with the genome's metadata, else .pt)."""
    from safetensors.torch import save as st_save

    sd = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    if path.suffix == ".safetensors":
        data = st_save(sd, metadata={"innate_genome": json.dumps(metadata, sort_keys=True)})
    else:
        buf = io.BytesIO()
        torch.save(sd, buf)
        data = buf.getvalue()
    write_atomic(path, data)
