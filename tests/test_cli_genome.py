"""The genome commands of the innate CLI end to end: create, inspect, export."""

from __future__ import annotations

import json

import networkx as nx
import pytest
import torch
from conftest import assert_one_line_error
from safetensors.torch import load_file
from typer.testing import CliRunner

from evo.cli import app
from genome import DECODERS
from genome.files import load_genome

SMALL = ["--input", "6x5", "--hidden", "4", "--output", "3"]
PNG = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def genome_file(tmp_path):
    path = tmp_path / "a.genome"
    res = invoke("create", path, *SMALL, "--setting", "hidden=[3,3]", "--setting", "code=gray")
    assert res.exit_code == 0, res.output
    return path


def test_create_writes_a_loadable_genome(genome_file):
    gf = load_genome(genome_file)
    assert gf.decoder.name == "gnet"
    assert gf.decoder.settings["hidden"] == [3, 3] and gf.decoder.settings["code"] == "gray"
    assert gf.layout.describe() == "6x5 -> 2x2 -> 1x3"
    assert gf.lineage["seed"] == 0


def test_create_is_seeded(tmp_path):
    for name, seed in [("a", 1), ("b", 1), ("c", 2)]:
        assert invoke("create", tmp_path / name, *SMALL, "--seed", seed).exit_code == 0
    a, b, c = (load_genome(tmp_path / n).genome for n in "abc")
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_create_by_compression(tmp_path):
    path = tmp_path / "c.genome"
    res = invoke("create", path, "--input", "12x12", "--hidden", "16", "--compression", 10)
    assert res.exit_code == 0, res.output
    dec = load_genome(path).decoder
    assert dec.compression() >= 10
    wider = type(dec)(
        dec.layout, **{**dec.settings, **type(dec)._with_width(dec.settings["hidden"][0] + 1)}
    )
    assert wider.compression() < 10


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--decoder", "nope"], ["unknown decoder", "gnet"]),
        (["--input", "6"], ["--input"]),
        (["--hidden", "4y"], ["--hidden"]),
        (["--setting", "hidden"], ["key=value"]),
        (["--setting", "hidden=[0]"], ["hidden"]),
        (["--decoder", "direct", "--compression", "10"], ["direct"]),
    ],
)
def test_create_rejects_bad_arguments(tmp_path, args, words):
    assert_one_line_error(invoke("create", tmp_path / "x.genome", *SMALL, *args), *words)


def test_inspect_prints_the_compression(genome_file):
    res = invoke("inspect", genome_file)
    assert res.exit_code == 0, res.output
    comp = load_genome(genome_file).decoder.compression()
    assert "compression" in res.stdout and f"{comp:.1f}x" in res.stdout
    assert "modularity" in res.stdout and "wiring cost" in res.stdout


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_inspect_json(tmp_path, name):
    path = tmp_path / f"{name}.genome"
    assert invoke("create", path, *SMALL, "--decoder", name).exit_code == 0
    res = invoke("inspect", path, "--json", "--keep", "0.5")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    dec = load_genome(path).decoder
    assert doc["decoder"] == name
    assert doc["compression"] == pytest.approx(dec.compression())
    assert doc["genome_length"] == dec.genome_length()
    assert doc["p_network_params"] == dec.layout.n_params
    assert doc["graph"]["n_nodes"] == sum(dec.layout.sizes)
    assert {"density", "modularity", "clustering", "mean_path_length"} <= set(doc["graph"])
    assert len(doc["layers"]) == dec.layout.n_layers and doc["wiring_cost"] > 0


def test_inspect_figures(genome_file, tmp_path):
    out = tmp_path / "figs"
    res = invoke("inspect", genome_file, "--figures", out)
    assert res.exit_code == 0, res.output
    names = ["weights.png", "receptive_fields.png", "wiring.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    for n in names:
        assert (out / n).read_bytes().startswith(PNG) and n in res.stdout


@pytest.mark.parametrize("command", ["inspect", "export"])
@pytest.mark.parametrize("content", [b"", b"garbage" * 40, None])
def test_bad_file_exits_2_with_one_line(tmp_path, command, content):
    path = tmp_path / "bad.genome"
    if content is not None:
        path.write_bytes(content)
    extra = ["--graphml", tmp_path / "g.graphml"] if command == "export" else []
    assert_one_line_error(invoke(command, path, *extra), str(path))


def test_unwritable_output_exits_2(genome_file, tmp_path):
    missing = tmp_path / "no" / "such" / "dir"
    assert_one_line_error(invoke("create", missing / "x.genome", *SMALL), "cannot write")
    res = invoke("export", genome_file, "--graphml", missing / "g.graphml")
    assert_one_line_error(res, "cannot write")


def test_too_large_layout_names_the_option(genome_file):
    assert_one_line_error(invoke("inspect", genome_file, "--max-params", 10), "--max-params")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_export_state_dict_reproduces_the_network(genome_file, tmp_path, suffix):
    out = tmp_path / f"net{suffix}"
    res = invoke("export", genome_file, "--state-dict", out)
    assert res.exit_code == 0, res.output
    sd = load_file(out) if suffix == ".safetensors" else torch.load(out, weights_only=True)
    gf = load_genome(genome_file)
    ph = gf.decoder.decode(gf.genome[None])
    (o0, i0), (o1, i1) = gf.layout.layer_shapes()
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(i0, o0), torch.nn.ReLU(), torch.nn.Linear(i1, o1)
    )
    net.load_state_dict(sd)
    x = torch.randn(5, 6, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(net(x), ph(x)[0])


def test_export_graphml(genome_file, tmp_path):
    out = tmp_path / "g.graphml"
    res = invoke("export", genome_file, "--graphml", out, "--keep", "0.5")
    assert res.exit_code == 0, res.output
    g = nx.read_graphml(out)
    layout = load_genome(genome_file).layout
    assert g.number_of_nodes() == sum(layout.sizes)
    assert g.number_of_edges() == sum(-(-o * i // 2) for o, i in layout.layer_shapes())


@pytest.mark.parametrize(
    ("args", "word"), [([], "--state-dict"), (["--state-dict", "x.bin"], ".pt")]
)
def test_export_needs_a_valid_target(genome_file, args, word):
    assert_one_line_error(invoke("export", genome_file, *args), word)


def test_inspect_faces_tests_every_hidden_unit(tmp_path):
    path = tmp_path / "f.genome"
    assert invoke("create", path, "--input", "12x12", "--hidden", "6").exit_code == 0
    args = ["inspect", path, "--faces", "--per-category", "8", "--top", "3"]
    res = invoke(*args, "--json", "--figures", tmp_path / "figs")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)["faces"]
    assert doc["stimuli"]["faces"] == 8 and doc["stimuli"]["lfw_faces"] == 100
    assert set(doc["tests"]) == {"faces", "lfw_faces"}
    for test in doc["tests"].values():
        assert test["units_per_layer"] == [6] and len(test["units"]) == 3
        assert 0 <= test["share"] <= 1 and test["alpha"] == 0.001
        assert len(test["units"][0]["p"]) == 6  # one test per non-face category
    assert (tmp_path / "figs" / "face_units.png").read_bytes().startswith(b"\x89PNG")
    text = invoke(*args)
    assert text.exit_code == 0, text.output
    assert "face-selective units for 'lfw_faces'" in text.stdout
    assert_one_line_error(
        invoke("inspect", path, "--faces", "--per-category", "1"), "--per-category"
    )
