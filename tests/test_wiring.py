"""Wiring cost, graphs and figures of a grown network, checked against plain references."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import networkx as nx
import pytest
import torch

from genome import DECODERS, Layout, Phenotype, make_decoder
from genome.figures import plot_receptive_fields, plot_weights, plot_wiring
from genome.graph import (
    average_clustering,
    graph_metrics,
    mean_path_length,
    to_graph,
    weighted_modularity,
    write_graphml,
)
from genome.wiring import distances, wiring_cost

LAYOUT = Layout.build((6, 5), [4], 3)
NAMES = sorted(DECODERS)
PNG = b"\x89PNG\r\n\x1a\n"


def phenotype(name="gnet", n=8, seed=0):
    dec = make_decoder(name, LAYOUT)
    return dec.decode(dec.init(n, torch.Generator().manual_seed(seed)))


def hand_phenotype():
    """Inputs at x = -1, 1 (z=0), hidden at x = -1, 1 (z=1), one output at the origin (z=2)."""
    layout = Layout.build((1, 2), [(1, 2)], 1)
    w0 = torch.tensor([[[1.0, -2.0], [0.5, 3.0]]])
    w1 = torch.tensor([[[4.0, -1.0]]])
    return Phenotype([w0, w1], [torch.tensor([[0.1, -0.2]]), torch.tensor([[0.3]])], layout)


# --- distances and wiring cost ----------------------------------------------------
def test_distances_hand_case():
    d0, d1 = distances(hand_phenotype().layout, dtype=torch.float64)
    s5, s2 = math.sqrt(5), math.sqrt(2)
    torch.testing.assert_close(d0, torch.tensor([[1.0, s5], [s5, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(d1, torch.tensor([[s2, s2]], dtype=torch.float64))


def test_distances_keep_device_and_dtype():
    d = distances(LAYOUT, torch.device("cpu"), torch.float64)
    assert [tuple(x.shape) for x in d] == LAYOUT.layer_shapes()
    assert all(x.dtype == torch.float64 for x in d)


def test_wiring_cost_hand_case():
    expected = 1 + 2 * math.sqrt(5) + 0.5 * math.sqrt(5) + 3 + 4 * math.sqrt(2) + math.sqrt(2)
    assert wiring_cost(hand_phenotype()).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_wiring_cost_equals_loop_reference(name):
    ph = phenotype(name)
    pos = [p.double() for p in LAYOUT.positions(torch.float64)]
    ref = torch.zeros(ph.population_size, dtype=torch.float64)
    for i in range(ph.population_size):
        for k, w in enumerate(ph.weights):
            for post in range(w.shape[1]):
                for pre in range(w.shape[2]):
                    d = torch.linalg.vector_norm(pos[k + 1][post] - pos[k][pre])
                    ref[i] += abs(float(w[i, post, pre])) * d
    got = wiring_cost(ph)
    assert got.shape == (8,) and got.dtype == ph.dtype
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-6)


def test_scale_free_cost_ignores_gains_but_not_wiring():
    ph = phenotype("gnet")
    scaled = Phenotype([w * 7.0 for w in ph.weights], ph.biases, ph.layout)
    torch.testing.assert_close(
        wiring_cost(scaled, scale_free=True), wiring_cost(ph, scale_free=True)
    )
    torch.testing.assert_close(wiring_cost(scaled), 7.0 * wiring_cost(ph))
    # Reference: every unit's weights rescaled to RMS sqrt(2 / fan_in), then sum |w| d.
    d = distances(LAYOUT, dtype=ph.dtype)
    ref = torch.zeros(ph.population_size, dtype=ph.dtype)
    for i in range(ph.population_size):
        for w, dist in zip(ph.weights, d, strict=True):
            for post in range(w.shape[1]):
                row = w[i, post]
                unit = row / row.square().mean().sqrt() * math.sqrt(2 / row.numel())
                ref[i] += (unit.abs() * dist[post]).sum()
    torch.testing.assert_close(wiring_cost(ph, scale_free=True), ref, rtol=1e-5, atol=1e-6)


# --- graph ----------------------------------------------------------------------------
def test_to_graph_nodes_edges_and_attributes():
    ph = phenotype("cppn")
    g = to_graph(ph, 2)
    assert g.number_of_nodes() == sum(LAYOUT.sizes)
    assert g.number_of_edges() == LAYOUT.n_weights
    pos = LAYOUT.positions(torch.float64)
    node = g.nodes["L1:3"]
    assert (node["layer"], node["index"]) == (1, 3)
    assert node["pos"] == pytest.approx(tuple(pos[1][3].tolist()))
    assert node["bias"] == pytest.approx(ph.biases[0][2, 3].item())
    assert g.nodes["L0:0"]["bias"] == 0.0
    edge = g.edges["L0:7", "L1:3"]
    assert edge["weight"] == pytest.approx(ph.weights[0][2, 3, 7].item())
    assert edge["abs_weight"] == pytest.approx(abs(edge["weight"]))
    assert edge["distance"] == pytest.approx(torch.dist(pos[1][3], pos[0][7]).item())


@pytest.mark.parametrize("keep", [0.1, 0.5])
def test_keep_retains_the_strongest_edges_per_layer(keep):
    ph = phenotype()
    g = to_graph(ph, 0, keep)
    for k, w in enumerate(ph.weights):
        mags = w[0].abs().reshape(-1)
        n = math.ceil(keep * mags.numel())
        kept = [d["abs_weight"] for a, _, d in g.edges(data=True) if a.startswith(f"L{k}:")]
        assert len(kept) == n
        assert min(kept) == pytest.approx(mags.sort(descending=True).values[n - 1].item())


@pytest.mark.parametrize(("i", "keep"), [(8, 1.0), (-9, 1.0), (0, 0.0), (0, 1.5)])
def test_to_graph_rejects_bad_arguments(i, keep):
    with pytest.raises((IndexError, ValueError), match=r"individual|keep"):
        to_graph(phenotype(), i, keep)


def test_graph_metrics_hand_case():
    g = to_graph(hand_phenotype())
    m = graph_metrics(g)
    assert (m["n_nodes"], m["n_edges"]) == (5, 6)
    assert m["density"] == pytest.approx(6 / (5 * 4))
    assert m["mean_degree"] == pytest.approx(2 * 6 / 5)
    assert m["clustering"] == 0.0  # a layered graph has no triangles
    # Undirected hops: 6 neighbouring pairs at 1; both pairs within a sheet and the
    # two input-output pairs at 2: (6 + 4 * 2) / 10.
    assert m["mean_path_length"] == pytest.approx(14 / 10)
    assert m["largest_component"] == 5
    wl = 1 + 2.5 * math.sqrt(5) + 3 + 5 * math.sqrt(2)
    assert m["wiring_length"] == pytest.approx(wl)
    und = nx.convert_node_labels_to_integers(g.to_undirected())  # neurons in graph order
    comms = nx.community.louvain_communities(und, weight="abs_weight", seed=0)
    assert m["n_communities"] == len(comms)
    assert m["modularity"] == pytest.approx(
        nx.community.modularity(und, comms, weight="abs_weight")
    )


def test_graph_metrics_match_networkx_on_a_decoded_network():
    g = to_graph(phenotype("connectome"), 1, keep=0.3)
    m = graph_metrics(g)
    und = g.to_undirected()
    assert m["density"] == pytest.approx(nx.density(g))
    assert m["clustering"] == pytest.approx(nx.average_clustering(und, weight="abs_weight"))
    core = und.subgraph(max(nx.connected_components(und), key=len))
    assert m["mean_path_length"] == pytest.approx(nx.average_shortest_path_length(core))


@pytest.mark.parametrize("seed", range(3))
def test_sparse_clustering_and_path_length_equal_networkx(seed):
    # A graph with triangles, uneven weights, an isolated node and a degree-1 node.
    g = nx.gnm_random_graph(40, 160, seed=seed)
    rng = torch.Generator().manual_seed(seed)
    for (u, v), w in zip(g.edges, torch.rand(g.number_of_edges(), generator=rng), strict=True):
        g[u][v]["abs_weight"] = float(w)
    g.add_edge(40, 0, abs_weight=0.5)
    g.add_node(41)
    assert average_clustering(g) == pytest.approx(nx.average_clustering(g, weight="abs_weight"))
    assert average_clustering(g) > 0
    core = g.subgraph(max(nx.connected_components(g), key=len))
    assert mean_path_length(core) == pytest.approx(nx.average_shortest_path_length(core))
    with pytest.raises(ValueError, match="connected"):
        mean_path_length(g)
    linked = nx.Graph(g.subgraph(range(41)))
    parts = nx.community.louvain_communities(linked, weight="abs_weight", seed=seed)
    assert len(parts) > 1
    assert weighted_modularity(linked, parts) == pytest.approx(
        nx.community.modularity(linked, parts, weight="abs_weight")
    )


def test_graph_metrics_are_the_same_in_every_process():
    # Louvain's partition depends on the order sets iterate in, which for names
    # changes with the process's hash seed; the metrics must not. Most neurons are
    # isolated at this keep (networkx then iterates a subgraph's nodes as a set).
    code = (
        "import json, torch\n"
        "from genome import Layout, make_decoder\n"
        "from genome.graph import graph_metrics, to_graph\n"
        "d = make_decoder('connectome', Layout.build((16, 16), [24], 2))\n"
        "g = d.init(1, torch.Generator().manual_seed(3))\n"
        "print(json.dumps(graph_metrics(to_graph(d.decode(g), 0, keep=0.05))))\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": str(h)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for h in (1, 2, 3)
    ]
    assert runs[0] == runs[1] == runs[2]
    assert json.loads(runs[0])["n_communities"] > 1


def test_graph_metrics_of_an_edgeless_graph_are_nan_not_errors():
    g = nx.DiGraph()
    g.add_nodes_from(["a", "b"])
    m = graph_metrics(g)
    assert m["n_edges"] == 0 and math.isnan(m["modularity"]) and math.isnan(m["mean_path_length"])


def test_graphml_round_trip(tmp_path):
    g = to_graph(phenotype(), 0, keep=0.5)
    path = write_graphml(g, tmp_path / "g.graphml")
    back = nx.read_graphml(path)
    assert back.is_directed()
    assert set(back.nodes) == set(g.nodes) and set(back.edges) == set(g.edges)
    a = back.nodes["L1:2"]
    assert (a["x"], a["y"], a["z"]) == pytest.approx(g.nodes["L1:2"]["pos"])
    assert a["layer"] == 1 and "pos" not in a
    u, v = next(iter(g.edges))
    assert back.edges[u, v]["weight"] == pytest.approx(g.edges[u, v]["weight"])
    assert "pos" in g.nodes["L1:2"]  # the caller's graph is left as it was


# --- figures ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("plot", "kw"),
    [(plot_weights, {}), (plot_receptive_fields, {"max_units": 3}), (plot_wiring, {"keep": 0.2})],
)
def test_figures_write_png(tmp_path, plot, kw):
    path = plot(phenotype(), 1, tmp_path / "f.png", **kw)
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]
