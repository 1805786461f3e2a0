"""Hostile genome files: refused in one line before anything large is built, printed safely."""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error
from safetensors.torch import save as st_save
from typer.testing import CliRunner

from evo.cli import app
from genome import Layout, make_decoder
from genome.files import GenomeFileError, load_genome, save_genome
from genome.inspect import weight_stats, wiring_length
from genome.limits import MAX_CODE_ELEMENTS, MAX_GRAPH_EDGES, MAX_NEURONS
from genome.wiring import wiring_cost

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def base(tmp_path):
    """(path, genome, metadata) of a real genome file with fitness and lineage."""
    dec = make_decoder("gnet", Layout.build((6, 5), [4], 3), hidden=[3, 3])
    genome = dec.init(1, torch.Generator().manual_seed(0))[0]
    path = save_genome(tmp_path / "a.genome", genome, dec, fitness={"faces": 0.5}, lineage={})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return path, genome, json.loads(json.loads(raw[8 : 8 + n])["__metadata__"]["innate"])


def with_text(path, genome, text):
    """A genome file whose metadata is exactly this JSON text."""
    path.write_bytes(st_save({"genome": genome}, metadata={"innate": text}))
    return path


def refused(path, *words):
    with pytest.raises(GenomeFileError) as info:
        load_genome(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    for w in words:
        assert w in msg, msg
    return msg


@pytest.mark.parametrize("field", ["fitness", "compression"])
def test_integers_past_the_float_range_are_refused(base, field):
    path, genome, meta = base
    meta[field] = {"faces": 10**309} if field == "fitness" else 10**309
    msg = refused(with_text(path, genome, json.dumps(meta)), field, "2**64")
    assert len(msg) < 300  # the 310-digit number is described, not printed


def test_1e999_is_refused_not_read_as_infinity(base):
    path, genome, meta = base
    text = json.dumps(meta).replace('"lineage": {}', '"lineage": {"x": 1e999}')
    refused(with_text(path, genome, text), "1e999", "float range")


@pytest.mark.parametrize("where", ['"lineage": {"\\ud800": 1}', '"lineage": {"k": "a\\udfff"}'])
def test_lone_surrogates_are_refused(base, where):
    path, genome, meta = base
    text = json.dumps(meta).replace('"lineage": {}', where)
    refused(with_text(path, genome, text), "lineage", "surrogate" if "k" in where else "UTF-8")


def test_deep_nesting_is_refused(base):
    path, genome, meta = base
    meta["lineage"] = {"x": json.loads("[" * 40 + "]" * 40)}
    refused(with_text(path, genome, json.dumps(meta)), "nests deeper")


@pytest.mark.parametrize(
    ("sheets", "settings", "words"),
    [
        ([[3000, 3000], [2, 2], [1, 3]], {"hidden": [3, 3]}, ["neurons", str(MAX_NEURONS)]),
        ([[1, 1]] * 300, {"hidden": [3, 3]}, ["300 sheets"]),
        ([[1, 60000], [1, 1], [1, 1]], {"hidden": [1], "code": "onehot"}, ["onehot codes"]),
    ],
)
def test_huge_bodies_are_refused_before_anything_is_built(
    base, monkeypatch, sheets, settings, words
):
    path, _, meta = base
    # The file's genome length matches the decoder, so only the size bound can refuse it.
    layout = Layout.from_dict({"sheets": sheets})
    dec = make_decoder("gnet", layout, **settings)
    meta |= {"layout": layout.to_dict(), "settings": dec.settings}
    meta |= {"genome_length": dec.genome_length(), "compression": dec.compression()}
    meta["p_network_params"] = layout.n_params
    assert layout.n_params < 2**28  # under max_params: the old loader built these

    def no_codes(*args, **kwargs):
        raise AssertionError("codes were built for a refused file")

    monkeypatch.setattr(Layout, "codes", no_codes)
    monkeypatch.setattr(Layout, "positions", no_codes)
    refused(with_text(path, torch.zeros(dec.genome_length()), json.dumps(meta)), *words)


def test_onehot_bound_leaves_real_bodies_a_wide_margin():
    digits = Layout.build((28, 28), [800], 10)
    faces = Layout.build((25, 25), [64], 1)
    for layout in (digits, faces):
        assert sum(layout.sizes) * 10 < MAX_NEURONS
        codes = sum(s.size * s.code_dim("onehot") for s in layout.sheets)
        assert codes * 100 < MAX_CODE_ELEMENTS
    assert digits.n_weights // 10 * 8 < MAX_GRAPH_EDGES


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("text", ["[/bold]", "[red]x[/blue]", "\x1b[2J\x1b[31mred", "a\u202eb"])
def test_lineage_text_is_printed_plainly(tmp_path, text):
    dec = make_decoder("gnet", Layout.build((6, 5), [4], 3), hidden=[3, 3])
    genome = dec.init(1, torch.Generator().manual_seed(0))[0]
    path = save_genome(tmp_path / "a.genome", genome, dec, lineage={text: text})
    res = invoke("inspect", path)
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.stdout and "\u202e" not in res.stdout
    shown = text.encode("unicode_escape").decode() if not text.isprintable() else text
    assert f"lineage {shown}" in res.stdout


def test_error_line_shows_escapes_in_the_path(tmp_path):
    res = invoke("inspect", tmp_path / "\x1b[31mred.genome")
    assert_one_line_error(res, "\\x1b[31mred.genome", "no such file")
    assert "\x1b" not in res.stderr


def test_inspect_json_is_strict_even_when_measures_overflow(tmp_path):
    # Genes near the float32 maximum: the direct decoder's weights are finite,
    # their float32 wiring cost is not.
    dec = make_decoder("direct", Layout.build((6, 5), [4], 3))
    genome = torch.full((dec.genome_length(),), 3.0e38)
    path = save_genome(tmp_path / "big.genome", genome, dec)
    ph = dec.decode(genome[None])
    assert not torch.isfinite(wiring_cost(ph)).all()
    res = invoke("inspect", path, "--json")
    assert res.exit_code == 0, res.output

    def strict(name):
        raise AssertionError(f"{name} in --json output")

    doc = json.loads(res.stdout, parse_constant=strict)
    assert doc["layers"][0]["weights"]["max"] > 1e37
    assert doc["wiring_cost"] > 1e38  # float64 holds what float32 overflowed


def test_weight_stats_agree_with_float64_and_null_non_finite():
    t = torch.randn(700, 900, generator=torch.Generator().manual_seed(0))
    s, d = weight_stats(t), t.double()
    assert s["mean"] == pytest.approx(d.mean().item(), abs=1e-12)
    assert s["std"] == pytest.approx(d.std(unbiased=False).item(), rel=1e-12)
    assert (s["min"], s["max"]) == (d.min().item(), d.max().item())
    assert s["frac_near_zero"] == (d.abs() < 1e-3).double().mean().item()
    t[3, 4] = float("nan")
    bad = weight_stats(t)
    assert bad["non_finite"] == 1 and bad["mean"] is None and bad["std"] is None


def test_wiring_length_matches_wiring_cost():
    dec = make_decoder("gnet", Layout.build((9, 7), [12], 4), hidden=[4, 4])
    ph = dec.decode(dec.init(1, torch.Generator().manual_seed(1)))
    assert wiring_length(ph) == pytest.approx(wiring_cost(ph)[0].item(), rel=1e-5)


def test_inspect_memory_is_bounded_by_the_graph_it_keeps(tmp_path, monkeypatch):
    # A valid body under max_params whose graph at keep=1 would be 1.6M edges:
    # refused before decoding; at a small keep it is inspected.
    dec = make_decoder("cppn", Layout.build((40, 40), [1000], 1), hidden=[4])
    path = save_genome(tmp_path / "c.genome", dec.init(1)[0], dec)
    called = []
    monkeypatch.setattr(type(dec), "decode", lambda *a, **k: called.append(1))
    res = invoke("inspect", path, "--keep", "1")
    assert_one_line_error(res, "--keep", str(MAX_GRAPH_EDGES))
    assert not called


def load_fuzzer():
    spec = importlib.util.spec_from_file_location("fuzz_genomes", ROOT / "bench/fuzz_genomes.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_genomes"] = module
    spec.loader.exec_module(module)
    return module


def test_fuzz_smoke_has_no_crashes(tmp_path):
    fuzz = load_fuzzer()
    records = fuzz.fuzz(200, seed=7, workers=0, folder=tmp_path, guard=False)
    assert len(records) == 200
    crashes = [r for r in records if r["outcome"] not in ("refused", "loaded", "inspect_refused")]
    assert not crashes, crashes[:3]
    outcomes = {r["outcome"] for r in records}
    assert {"refused", "loaded"} <= outcomes  # the generator makes both kinds


def test_fuzz_files_are_a_function_of_seed_and_index(tmp_path):
    fuzz = load_fuzzer()
    bases = fuzz.write_bases(tmp_path)
    assert fuzz.hostile_file(bases, 3, 11) == fuzz.hostile_file(bases, 3, 11)
    assert fuzz.hostile_file(bases, 3, 11) != fuzz.hostile_file(bases, 3, 12)
