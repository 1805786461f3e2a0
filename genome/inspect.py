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
from genome.phenotype import Phenotype


def _finite(x: float) -> float | None:
    """JSON has no NaN: an undefined measure is null."""
    return x if math.isfinite(x) else None


def weight_stats(t: torch.Tensor) -> dict[str, float]:
    """Mean, std, min, max and the share of entries with |x| < 1e-3, in float64."""
    t = t.detach().double()
    return {
        "mean": t.mean().item(),
        "std": t.std(unbiased=False).item(),
        "min": t.min().item(),
        "max": t.max().item(),
        "frac_near_zero": (t.abs() < 1e-3).double().mean().item(),
    }


def inspect_report(gf: GenomeFile, phenotype: Phenotype, keep: float) -> dict[str, Any]:
    """Everything `inspect` shows about a loaded genome file, as one JSON-able dict."""
    from genome.graph import graph_metrics, to_graph
    from genome.wiring import wiring_cost

    dec = gf.decoder
    metrics = graph_metrics(to_graph(phenotype, 0, keep))
    return {
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
        "layers": [
            {
                "layer": k,
                "shape": list(w.shape[1:]),
                "weights": weight_stats(w[0]),
                "biases": weight_stats(b[0]),
            }
            for k, (w, b) in enumerate(zip(phenotype.weights, phenotype.biases, strict=True))
        ],
        "wiring_cost": wiring_cost(phenotype)[0].item(),
        "graph_keep": keep,
        "graph": {k: _finite(v) if isinstance(v, float) else v for k, v in metrics.items()},
    }


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
