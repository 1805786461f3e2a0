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
    Communities are Louvain's (Blondel et al. 2008; networkx, seed 0, on
    neurons numbered in the graph's order, so the same graph gives the same
    partition in every process); clustering (Onnela's weighted form, as
    networkx's `average_clustering`), modularity and path length are computed
    on sparse matrices, equal to networkx's. A measure that is undefined for
    the graph (no edges, zero total weight) is NaN.
    """
    n, m = graph.number_of_nodes(), graph.number_of_edges()
    # Neurons as integers (a set of names iterates in an order that changes from process
    # to process, and Louvain's result with it), and only the weight (to_undirected
    # deep-copies every attribute).
    index = {v: k for k, v in enumerate(graph)}
    und = nx.Graph()
    und.add_nodes_from(range(n))
    und.add_weighted_edges_from(
        ((index[u], index[v], w) for u, v, w in graph.edges(data="abs_weight", default=0.0)),
        weight="abs_weight",
    )
    total = sum(w for _, _, w in und.edges(data="abs_weight"))
    if m and total > 0:
        # An isolated neuron is a community of its own and adds nothing to modularity;
        # leaving them out spares Louvain most of a thresholded hub's nodes.
        linked = und
        if any(d == 0 for _, d in und.degree()):
            linked = nx.Graph(und.subgraph([v for v, d in und.degree() if d > 0]))
        communities = nx.community.louvain_communities(linked, weight="abs_weight", seed=0)
        modularity = weighted_modularity(linked, communities)
        n_communities = len(communities) + (n - linked.number_of_nodes())
        clustering = average_clustering(und)
    else:
        modularity, n_communities, clustering = math.nan, n, math.nan
    if n:
        largest = max(nx.connected_components(und), key=len)
        path = _mean_path_length(*_edges(und), nodes=largest) if len(largest) > 1 else math.nan
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


def _edges(graph: nx.Graph, weight: str | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Both directions of every edge of an undirected graph, self-loops dropped.

    Returns indices [2, 2m] (row, column), float64 values [2m] (the edge's
    `weight`, or 1) and the number of nodes, in the graph's node order.
    """
    index = {v: k for k, v in enumerate(graph)}
    rows, cols, vals = [], [], []
    for u, v, w in graph.edges(data=weight, default=1.0):
        if u != v:
            rows.append(index[u])
            cols.append(index[v])
            vals.append(1.0 if weight is None else float(w))
    r = torch.tensor(rows + cols, dtype=torch.int64)
    c = torch.tensor(cols + rows, dtype=torch.int64)
    return torch.stack([r, c]), torch.tensor(vals + vals, dtype=torch.float64), len(index)


def _sparse(indices: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    # The indices come from a graph's edges, in range: no invariant checks needed.
    a = torch.sparse_coo_tensor(indices, values, (n, n), check_invariants=False)
    return a.coalesce()


# Dense [block, n] rows (sources, or rows of A) held at once: about 2^22 numbers.
def _block(n: int) -> int:
    return max(1, min(256, (1 << 22) // max(n, 1)))


def average_clustering(graph: nx.Graph, weight: str = "abs_weight") -> float:
    """Onnela's weighted clustering averaged over every node, as `nx.average_clustering`.

    With A the weights over the largest weight, cube-rooted, node i's
    clustering is (A^3)_ii / (d_i (d_i - 1)), d_i its degree (0 below degree 2).
    """
    indices, values, n = _edges(graph, weight)
    if n == 0:
        return math.nan
    if values.numel() == 0:
        return 0.0
    values = (values / values.max()).pow(1 / 3)
    a = _sparse(indices, values, n)
    degree = torch.bincount(indices[0], minlength=n).double()
    # Only a node with two neighbours or more can close a triangle.
    nodes = torch.nonzero(degree >= 2)[:, 0]
    position = torch.full((n,), -1, dtype=torch.long)
    position[nodes] = torch.arange(len(nodes))
    row_of = position[indices[0]]
    triangles = torch.zeros(n, dtype=torch.float64)
    step = _block(n)
    for s in range(0, len(nodes), step):
        # Rows of A, dense; A symmetric, so (A^3)_ii = sum_j A_ij (A @ A[rows].T)_ji.
        e = min(s + step, len(nodes))
        inside = (row_of >= s) & (row_of < e)
        rows = torch.zeros(e - s, n, dtype=torch.float64)
        rows[row_of[inside] - s, indices[1][inside]] = values[inside]
        triangles[nodes[s:e]] = (rows * torch.sparse.mm(a, rows.T).T).sum(dim=1)
    pairs = degree * (degree - 1)
    c = torch.where(pairs > 0, triangles / pairs.clamp(min=1), 0.0)
    return float(c.mean())


def weighted_modularity(graph: nx.Graph, communities: list[set]) -> float:
    """Newman's modularity of a partition, weighted by abs_weight, as `nx.community.modularity`.

    Q = sum over communities c of L_c / W - (D_c / 2W)^2: W the total weight,
    L_c the weight inside c, D_c the weighted degree of c's nodes.
    """
    index = {v: k for k, v in enumerate(graph)}
    label = torch.empty(len(index), dtype=torch.int64)
    for c, members in enumerate(communities):
        label[[index[v] for v in members]] = c
    indices, values, _ = _edges(graph, "abs_weight")
    src, dst = label[indices[0]], label[indices[1]]
    total = values.sum() / 2
    inside = (values * (src == dst)).sum() / 2
    degree = torch.bincount(src, weights=values, minlength=len(communities))
    return float(inside / total - ((degree / (2 * total)) ** 2).sum())


def mean_path_length(graph: nx.Graph) -> float:
    """The mean shortest-path length in hops over ordered pairs of a connected graph.

    As `nx.average_shortest_path_length` (unweighted): breadth-first search from
    a block of sources at once, each level one sparse-by-dense product.
    """
    return _mean_path_length(*_edges(graph))


def _mean_path_length(
    indices: torch.Tensor, values: torch.Tensor, n: int, nodes: set[int] | None = None
) -> float:
    """`mean_path_length` of the graph of `_edges`, or of its subgraph on `nodes` (indices)."""
    if nodes is not None:
        # The subgraph's edges, renumbered: cheaper than iterating a networkx subgraph view.
        keep = torch.zeros(n, dtype=torch.bool)
        keep[torch.tensor(sorted(nodes), dtype=torch.long)] = True
        inside = keep[indices[0]] & keep[indices[1]]
        position = torch.cumsum(keep, 0) - 1
        indices, values, n = position[indices[:, inside]], values[inside], int(keep.sum())
    if n < 2:
        return math.nan
    a = _sparse(indices, torch.ones_like(values, dtype=torch.float32), n)
    total, step = 0, _block(n)
    for s in range(0, n, step):
        b = min(s + step, n) - s
        seen = torch.zeros(n, b, dtype=torch.bool)
        seen[torch.arange(s, s + b), torch.arange(b)] = True
        frontier, hops, reached = seen.float(), 0, b
        while True:
            hops += 1
            new = (torch.sparse.mm(a, frontier) > 0) & ~seen
            k = int(new.sum())
            if k == 0:
                break
            total, reached = total + hops * k, reached + k
            seen |= new
            frontier = new.float()
        if reached != n * b:
            raise ValueError("mean_path_length needs a connected graph")
    return total / (n * (n - 1))


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
