"""Genome files: exact round trip, atomic writes, one clear error per bad file."""

from __future__ import annotations

import contextlib
import json
import os
import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as st_save

from genome import DECODERS, Layout, make_decoder
from genome.files import GenomeFileError, load_genome, save_genome

LAYOUT = Layout.build((6, 5), [4], 3)
NAMES = sorted(DECODERS)
# Non-default settings, so that a round trip that dropped them would show.
SETTINGS = {
    "gnet": {"hidden": [3, 5], "code": "gray"},
    "connectome": {"genes": 3, "code": "onehot"},
    "cppn": {"hidden": [4], "activations": ["sin", "tanh"]},
    "direct": {},
}


def decoder_and_genome(name="gnet", seed=0):
    dec = make_decoder(name, LAYOUT, **SETTINGS.get(name, {}))
    pop = dec.init(8, torch.Generator().manual_seed(seed))
    return dec, pop[3]


@pytest.fixture
def valid(tmp_path):
    dec, genome = decoder_and_genome()
    path = save_genome(tmp_path / "a.genome", genome, dec, fitness={"faces": 0.75})
    return path, dec, genome


def read_meta(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    return json.loads(header["__metadata__"]["innate"])


def rewrite(path, genome, meta):
    """A file with the given tensor and metadata, bypassing save_genome's checks."""
    path.write_bytes(st_save({"genome": genome}, metadata={"innate": json.dumps(meta)}))
    return path


def expect_error(path, *words, **kw):
    with pytest.raises(GenomeFileError) as info:
        load_genome(path, **kw)
    msg = str(info.value)
    assert str(path) in msg
    for w in words:
        assert w in msg, msg
    return msg


# --- round trip -------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_round_trip_is_exact(tmp_path, name):
    dec, genome = decoder_and_genome(name)
    lineage = {"run": "faces__gnet__0", "generation": 12, "seed": 0, "objectives": ["faces"]}
    fitness = {"faces": 0.875, "wiring": -3.25}
    path = save_genome(tmp_path / "x.genome", genome, dec, fitness=fitness, lineage=lineage)
    gf = load_genome(path)
    assert gf.genome.dtype == torch.float32 and gf.genome.shape == genome.shape
    assert torch.equal(gf.genome, genome)
    assert gf.decoder.name == dec.name
    assert gf.decoder.settings == dec.settings
    assert gf.layout == LAYOUT
    assert gf.fitness == fitness and gf.lineage == lineage
    assert gf.metadata["compression"] == dec.compression()
    assert gf.metadata["genome_length"] == dec.genome_length()
    a, b = dec.decode(genome[None]), gf.decoder.decode(gf.genome[None])
    for x, y in zip(a.weights + a.biases, b.weights + b.biases, strict=True):
        assert torch.equal(x, y)


def test_float64_genome_is_stored_as_float32(tmp_path):
    dec, genome = decoder_and_genome()
    gf = load_genome(save_genome(tmp_path / "x.genome", genome.double(), dec))
    assert gf.genome.dtype == torch.float32 and torch.equal(gf.genome, genome)


@pytest.mark.parametrize(
    ("genome", "kw", "word"),
    [
        (torch.zeros(3), {}, "genes"),
        (torch.zeros(2, 3), {}, "1-D"),
        (None, {"fitness": {"faces": float("nan")}}, "finite"),
        (None, {"lineage": {"x": object()}}, "JSON"),
        (None, {"lineage": [1]}, "dict"),
    ],
)
def test_save_refuses_bad_input(tmp_path, genome, kw, word):
    dec, good = decoder_and_genome()
    with pytest.raises(ValueError, match=word):
        save_genome(tmp_path / "x.genome", good if genome is None else genome, dec, **kw)
    assert not list(tmp_path.iterdir())


def test_save_refuses_nan_genome(tmp_path):
    dec, genome = decoder_and_genome()
    genome[0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        save_genome(tmp_path / "x.genome", genome, dec)


# --- atomic writes ------------------------------------------------------------
@pytest.mark.parametrize("fault", ["replace", "fsync"])
def test_failed_save_leaves_old_file_and_no_temp(valid, monkeypatch, fault):
    path, dec, genome = valid
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("simulated crash")

    monkeypatch.setattr(os, fault, crash)
    with pytest.raises(OSError, match="simulated"):
        save_genome(path, genome * 2, dec)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert torch.equal(load_genome(path).genome, genome)


# --- bad files ------------------------------------------------------------------
def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.genome", "no such file")


def test_truncated_file(valid):
    path = valid[0]
    raw = path.read_bytes()
    path.write_bytes(raw[:-3])
    expect_error(path, "truncated")
    path.write_bytes(raw[:5])
    expect_error(path, "truncated")


def test_random_bytes(tmp_path):
    path = tmp_path / "r.genome"
    path.write_bytes(
        torch.randint(0, 256, (300,), generator=torch.Generator().manual_seed(1))
        .to(torch.uint8)
        .numpy()
        .tobytes()
    )
    expect_error(path)


def test_header_not_json(tmp_path):
    path = tmp_path / "h.genome"
    path.write_bytes(struct.pack("<Q", 9) + b"{not json")
    expect_error(path, "not valid JSON")


def test_huge_header_length(tmp_path):
    path = tmp_path / "h.genome"
    path.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    expect_error(path, "header length", "limit")


def test_missing_metadata(valid):
    path, _, genome = valid
    path.write_bytes(st_save({"genome": genome}))
    expect_error(path, "missing 'innate' metadata")


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("format_version", 2, ["format_version 2", "versions 1"]),
        ("decoder", "hypernet", ["unknown decoder 'hypernet'", "gnet"]),
        ("settings", {"hidden": [0]}, ["invalid settings", "hidden"]),
        ("settings", {"nope": 1}, ["invalid settings", "nope"]),
        ("settings", [1], ["settings must be an object"]),
        ("layout", {"sheets": [[0, 3]]}, ["invalid layout"]),
        ("layout", "6x5", ["invalid layout"]),
        ("compression", 3.0, ["compression 3.0", "disagrees"]),
        ("genome_length", 7, ["genome_length 7", "disagrees"]),
        ("p_network_params", 1, ["p_network_params 1", "disagrees"]),
        ("fitness", {"faces": "high"}, ["fitness"]),
        ("lineage", [1, 2], ["lineage"]),
    ],
)
def test_bad_metadata(valid, field, value, words):
    path, _, genome = valid
    meta = read_meta(path)
    meta[field] = value
    expect_error(rewrite(path, genome, meta), *words)


def test_missing_field(valid):
    path, _, genome = valid
    meta = read_meta(path)
    del meta["decoder"]
    expect_error(rewrite(path, genome, meta), "lacks", "decoder")


def test_too_large_layout_is_refused_before_building_the_decoder(valid):
    path, _, genome = valid
    meta = read_meta(path)
    # Under 2**18 neurons (the most a file may have) but 2**34 weights: max_params refuses it.
    meta["layout"] = {"format": 1, "sheets": [[256, 512], [255, 512], [1, 1]]}
    meta["settings"] = {"hidden": "not even valid"}
    expect_error(rewrite(path, genome, meta), "over the limit", "max_params")
    path2 = valid[0]
    rewrite(path2, genome, read_meta(path2) | {"layout": LAYOUT.to_dict()})
    expect_error(path2, "over the limit", "2", max_params=10)


def test_wrong_length(valid):
    path, dec, genome = valid
    meta = read_meta(path)
    msg = expect_error(rewrite(path, torch.cat([genome, genome[:1]]), meta), "genes")
    assert str(dec.genome_length()) in msg and str(dec.genome_length() + 1) in msg


def test_nan_genome(valid):
    path, _, genome = valid
    bad = genome.clone()
    bad[[0, 2]] = float("nan")
    bad[1] = float("inf")
    expect_error(rewrite(path, bad, read_meta(path)), "3 non-finite")


@pytest.mark.parametrize("kind", ["float64", "2d", "int"])
def test_wrong_dtype_or_shape(valid, kind):
    path, _, genome = valid
    t = {"float64": genome.double(), "2d": genome[None], "int": genome.int()}[kind]
    expect_error(rewrite(path, t, read_meta(path)), "1-D float32")


def test_extra_tensor(valid):
    path, _, genome = valid
    meta = json.dumps(read_meta(path))
    path.write_bytes(st_save({"genome": genome, "x": genome.clone()}, metadata={"innate": meta}))
    expect_error(path, "unexpected tensors")


def test_directory(tmp_path):
    expect_error(tmp_path, "not a regular file")


# --- fuzzing -----------------------------------------------------------------------
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def load_or_genome_error(path):
    with contextlib.suppress(GenomeFileError):
        load_genome(path)


@FUZZ
@given(data=st.binary(max_size=400))
def test_fuzz_random_bytes(tmp_path, data):
    path = tmp_path / "f.genome"
    path.write_bytes(data)
    load_or_genome_error(path)


@FUZZ
@given(
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
    cut=st.none() | st.integers(0, 10**6),
)
def test_fuzz_mutated_bytes(valid, flips, cut):
    path = valid[0]
    raw = bytearray(save_genome(path, valid[2], valid[1]).read_bytes())
    for pos, byte in flips:
        raw[pos % len(raw)] = byte
    if cut is not None:
        raw = raw[: cut % (len(raw) + 1)]
    path.write_bytes(bytes(raw))
    load_or_genome_error(path)


@FUZZ
@given(
    key=st.sampled_from(
        [
            "format_version",
            "decoder",
            "settings",
            "layout",
            "genome_length",
            "compression",
            "p_network_params",
            "fitness",
            "lineage",
            "other",
        ]
    ),
    value=JSON,
    nested=st.booleans(),
    drop=st.booleans(),
)
def test_fuzz_mutated_metadata(valid, key, value, nested, drop):
    path, _, genome = valid
    meta = read_meta(path)
    if drop:
        meta.pop(key, None)
    elif nested and isinstance(meta.get(key), dict) and isinstance(value, dict):
        meta[key] = meta[key] | value
    else:
        meta[key] = value
    load_or_genome_error(rewrite(path, genome, meta))


@FUZZ
@given(
    header=JSON
    | st.fixed_dictionaries(
        {
            "genome": st.dictionaries(st.sampled_from(["dtype", "shape", "data_offsets"]), JSON),
            "__metadata__": st.dictionaries(st.just("innate"), st.text(max_size=20) | JSON),
        }
    ),
    pad=st.binary(max_size=16),
)
def test_fuzz_forged_header(tmp_path, header, pad):
    text = json.dumps(header).encode()
    path = tmp_path / "h.genome"
    path.write_bytes(struct.pack("<Q", len(text)) + text + pad)
    load_or_genome_error(path)
