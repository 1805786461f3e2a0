"""Benchmark: `innate inspect`'s graph metrics against the networkx functions they replace.

`genome.graph.graph_metrics` takes communities from Louvain (networkx, on
neurons numbered in graph order) and computes modularity, weighted
clustering and mean path length on sparse matrices in torch. The baseline,
side by side in one process on the same graph, is what it did before:
networkx's greedy modularity communities, `modularity`,
`average_clustering` and `average_shortest_path_length`. Graphs: the faces
body of `configs/faces.toml` (25x25 -> 64 -> 1, a random 110.9x g-network
genome) at `inspect`'s default keep (0.1) and at 1.0, and hub-shaped `cppn`
bodies of the kind that ran past the genome fuzzer's time guard
(bench/fuzz_genomes.py). The baseline is left out above `--baseline-nodes`
nodes, where it takes minutes.

    python bench/graph_metrics.py [--repeats 3] [--baseline-nodes 5000]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import networkx as nx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evo import build, config
from genome import Layout, make_decoder
from genome.graph import graph_metrics, to_graph

ROOT = Path(__file__).resolve().parents[1]


def baseline(graph: nx.DiGraph) -> dict[str, float]:
    """The measures as computed before, all in networkx."""
    und = graph.to_undirected(as_view=False)
    communities = nx.community.greedy_modularity_communities(und, weight="abs_weight")
    largest = max(nx.weakly_connected_components(graph), key=len)
    core = nx.Graph(und.subgraph(largest))
    return {
        "modularity": nx.community.modularity(und, communities, weight="abs_weight"),
        "clustering": nx.average_clustering(und, weight="abs_weight"),
        "mean_path_length": nx.average_shortest_path_length(core) if len(largest) > 1 else 0,
    }


def best_of(fn, graph: nx.DiGraph, repeats: int) -> tuple[float, dict]:
    times, out = [], {}
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(graph)
        times.append(time.perf_counter() - t)
    return min(times), out


def graphs() -> list[tuple[str, nx.DiGraph]]:
    gen = torch.Generator().manual_seed(0)
    faces = build.build_decoder(config.load(ROOT / "configs" / "faces.toml"))
    phenotype = faces.decode(faces.init(1, gen))
    out = [(f"faces 110.9x, keep {k}", to_graph(phenotype, 0, k)) for k in (0.1, 1.0)]
    for shape, hidden, output in [((64, 64), [(4, 4)], (1, 2)), ((1, 60_000), [], 1)]:
        cppn = make_decoder("cppn", Layout.build(shape, hidden, output))
        body = " -> ".join(
            f"{r}x{c}" for r, c in [shape, *hidden, output if output != 1 else (1, 1)]
        )
        out.append((f"cppn {body}, keep 0.1", to_graph(cppn.decode(cppn.init(1, gen)), 0, 0.1)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-nodes", type=int, default=5000)
    args = parser.parse_args()
    print("| graph | nodes | edges | graph_metrics | networkx before | speed-up |")
    print("|---|---|---|---|---|---|")
    for name, g in graphs():
        t, new = best_of(graph_metrics, g, args.repeats)
        n, m = g.number_of_nodes(), g.number_of_edges()
        if n <= args.baseline_nodes:
            t0, old = best_of(baseline, g, args.repeats)
            # The same clustering and path length; modularity of another partition.
            for key in ("clustering", "mean_path_length"):
                assert math.isclose(new[key], old[key], rel_tol=1e-9, abs_tol=1e-12), key
            before = f"{t0:.3f} s (modularity {old['modularity']:.3f})"
            ratio = f"{t0 / t:.1f}x"
        else:
            before, ratio = "not run", ""
        print(
            f"| {name} | {n:,} | {m:,} | {t:.3f} s (modularity {new['modularity']:.3f}) "
            f"| {before} | {ratio} |"
        )


if __name__ == "__main__":
    main()
