"""One grown network as a graph: nodes in space, weighted edges, network metrics.

The phenotype of individual i becomes a networkx DiGraph whose nodes are
neurons at their layout positions and whose edges are connections with their
weight and length, so that the grown wiring can be compared with brain
networks by the measures used for them (density, degree, clustering,
modularity, path length; Rubinov and Sporns, NeuroImage 2010) and with the
wiring cost of seRNN (Achterberg et al., Nat Mach Intell 2023). A grown
network is dense, so `keep` retains only the strongest fraction of each
layer's connections, as connectomes are thresholded before such measures.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import networkx as nx
import torch

from genome.files import write_atomic
from genome.phenotype import Phenotype


def node_name(layer: int, index: int) -> str:
    return f"L{layer}:{index}"


def _check(phenotype: Phenotype, i: int, keep: float) -> int:
    p = phenotype.population_size
    if not (isinstance(i, int) and -p <= i < p):
        raise IndexError(f"individual {i!r} out of range for population {p}")
    if not (isinstance(keep, int | float) and 0 < keep <= 1):
        raise ValueError(f"keep must be a fraction in (0, 1], got {keep!r}")
    return i % p


def strongest_edges(
    phenotype: Phenotype, i: int = 0, keep: float = 1.0
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per layer, (post, pre, weight) of individual i's strongest ceil(keep * n) edges by |w|.

    Tensors on the CPU, ordered by decreasing |w|.
    """
    i = _check(phenotype, i, keep)
    out = []
    for w in phenotype.weights:
        flat = w[i].detach().reshape(-1)
        k = max(1, math.ceil(keep * flat.numel()))
        order = torch.topk(flat.abs(), k).indices if k < flat.numel() else None
        if order is None:
            order = torch.argsort(flat.abs(), descending=True)
        n_in = w.shape[2]
        out.append(((order // n_in).cpu(), (order % n_in).cpu(), flat[order].cpu()))
    return out


def to_graph(phenotype: Phenotype, i: int = 0, keep: float = 1.0) -> nx.DiGraph:
    """Individual i's network: nodes "L{layer}:{index}", edges pre -> post.

    Node attributes: layer, index, pos (x, y, z), bias (0.0 on the input
    sheet, which has none). Edge attributes: weight, abs_weight, distance.
    `keep` in (0, 1] keeps the strongest fraction of each layer's edges by |w|.
    """
    i = _check(phenotype, i, keep)
    layout = phenotype.layout
    g = nx.DiGraph()
    positions = layout.positions(torch.float64)
    for s, pos in enumerate(positions):
        bias = [0.0] * pos.shape[0] if s == 0 else phenotype.biases[s - 1][i].tolist()
        g.add_nodes_from(
            (
                node_name(s, j),
                {"layer": s, "index": j, "pos": tuple(xyz), "bias": float(bias[j])},
            )
            for j, xyz in enumerate(pos.tolist())
        )
    for k, (post, pre, w) in enumerate(strongest_edges(phenotype, i, keep)):
        # Lengths of the kept edges only: the full [out, in] matrix would cost
        # 8 bytes per weight, however few edges the graph keeps.
        d = (positions[k + 1][post] - positions[k][pre]).norm(dim=1).tolist()
        g.add_edges_from(
            (
                node_name(k, a),
                node_name(k + 1, b),
                {"weight": x, "abs_weight": abs(x), "distance": y},
            )
            for b, a, x, y in zip(post.tolist(), pre.tolist(), w.double().tolist(), d, strict=True)
        )
    return g


def graph_metrics(graph: nx.DiGraph) -> dict[str, Any]:
    """Network measures of a graph from `to_graph`.

    Clustering, modularity and path length are taken on the undirected graph;
    clustering and modularity are weighted by abs_weight, path length is
    unweighted and measured on the largest weakly connected component.
    A measure that is undefined for the graph (no edges, zero total weight) is NaN.
    """
    n, m = graph.number_of_nodes(), graph.number_of_edges()
    und = graph.to_undirected(as_view=False)
    total = sum(w for _, _, w in und.edges(data="abs_weight", default=0.0))
    if m and total > 0:
        communities = nx.community.greedy_modularity_communities(und, weight="abs_weight")
        modularity = nx.community.modularity(und, communities, weight="abs_weight")
        n_communities = len(communities)
        clustering = nx.average_clustering(und, weight="abs_weight") if n else math.nan
    else:
        modularity, n_communities, clustering = math.nan, n, math.nan
    if n:
        largest = max(nx.weakly_connected_components(graph), key=len)
        # A copy, not a view: BFS over a subgraph view is several times slower.
        core = nx.Graph(und.subgraph(largest))
        path = nx.average_shortest_path_length(core) if len(largest) > 1 else math.nan
    else:
        largest, path = set(), math.nan
    wiring = sum(d["abs_weight"] * d["distance"] for _, _, d in graph.edges(data=True))
    return {
        "n_nodes": n,
        "n_edges": m,
        "density": nx.density(graph),
        "mean_degree": 2 * m / n if n else math.nan,
        "clustering": float(clustering),
        "modularity": float(modularity),
        "n_communities": n_communities,
        "wiring_length": float(wiring),
        "largest_component": len(largest),
        "mean_path_length": float(path),
    }


def write_graphml(graph: nx.DiGraph, path: str | os.PathLike) -> Path:
    """Write the graph as GraphML, atomically; node pos becomes x, y, z attributes."""
    flat = graph.copy()
    for _, data in flat.nodes(data=True):
        pos = data.pop("pos", None)
        if pos is not None:
            data["x"], data["y"], data["z"] = (float(v) for v in pos)
    buf = io.BytesIO()
    nx.write_graphml(flat, buf)
    return write_atomic(path, buf.getvalue())
