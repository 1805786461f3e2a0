"""`innate fewshot` end to end: the table, JSON with the same numbers, figures, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error
from typer.testing import CliRunner

from evo.cli import app

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"
QUICK = ["--data", "digits", "--episodes", "6", "--query", "3", "--pretrain-steps", "5"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def genome_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fewshot") / "digits.genome"
    res = invoke("create", path, "--input", "8x8", "--hidden", "12", "--output", "10")
    assert res.exit_code == 0, res.output
    return path


def test_fewshot_prints_the_genome_against_every_baseline(genome_file):
    res = invoke("fewshot", genome_file, *QUICK)
    assert res.exit_code == 0, res.output
    for name in ("digits.genome", "pixel prototype", "Kaiming init", "random genome", "background"):
        assert name in res.stdout, res.stdout
    assert "5-way 1-shot, 6 episodes of digits" in " ".join(res.stdout.split())


def test_json_parses_and_holds_the_same_numbers_as_a_second_run(genome_file):
    args = ["fewshot", genome_file, *QUICK, "--rule", "fa", "--head", "all", "--json"]
    first, second = invoke(*args), invoke(*args)
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert json.loads(second.stdout)["methods"] == doc["methods"]
    assert doc["rule"]["rule"] == "fa" and doc["episodes"] == 6
    assert set(doc["methods"]) == {"digits.genome", "pixel", "kaiming", "random", "pretrained"}
    for name, row in doc["methods"].items():
        assert 0 <= row["mean"] <= 1 and row["n"] == 6
        assert ("vs_reference" in row) == (name != "digits.genome")


def test_figures_draw_episodes(genome_file, tmp_path):
    res = invoke(
        "fewshot",
        genome_file,
        *QUICK,
        "--baselines",
        "none",
        "--head",
        "prototype",
        "--figures",
        tmp_path / "figs",
    )
    assert res.exit_code == 0, res.output
    pngs = sorted((tmp_path / "figs").glob("episode_*.png"))
    assert len(pngs) == 3 and all(p.read_bytes().startswith(PNG) for p in pngs)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--rule", "magic"], ["unknown rule", "sgd"]),
        (["--head", "tail"], ["unknown head", "linear"]),
        (["--setting", "beta=-1", "--rule", "eqprop"], ["beta"]),
        (["--lr", "-1"], ["lr must be"]),
        (["--data", "glyphs2"], ["unknown data", "npz"]),
        (["--way", "7"], ["7 classes"]),
        (["--split", "validation"], ["valid splits"]),
        (["--baselines", "pixel,oracle"], ["oracle"]),
        (["--device", "nodevice"], ["--device"]),
    ],
)
def test_bad_options_exit_2_with_one_line(genome_file, extra, words):
    assert_one_line_error(invoke("fewshot", genome_file, *QUICK, *extra), *words)


def test_a_bad_genome_or_data_file_exits_2_with_one_line(genome_file, tmp_path):
    junk = tmp_path / "junk.genome"
    junk.write_bytes(b"\x00" * 20)
    assert_one_line_error(invoke("fewshot", junk, *QUICK), "junk.genome")
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((4, 8, 8)), labels=np.zeros(3))
    args = ["--data", bad, "--episodes", "2"]
    assert_one_line_error(invoke("fewshot", genome_file, *args), "bad.npz", "one per image")


def test_a_users_npz_serves_episodes(genome_file, tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    np.savez(path, images=rng.random((60, 12, 12)), labels=np.repeat(np.arange(6), 10))
    res = invoke(
        "fewshot",
        genome_file,
        "--data",
        path,
        "--episodes",
        "4",
        "--query",
        "5",
        "--baselines",
        "pixel",
        "--json",
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["methods"]["pixel"]["n"] == 4


def test_eqprop_on_a_deep_body_is_refused_in_one_line(tmp_path):
    path = tmp_path / "deep.genome"
    res = invoke(
        "create", path, "--input", "8x8", "--hidden", "12", "--hidden", "12", "--output", "10"
    )
    assert res.exit_code == 0, res.output
    res = invoke("fewshot", path, *QUICK, "--rule", "eqprop", "--head", "all")
    assert_one_line_error(res, "at most one hidden layer", "linear")


@pytest.mark.parametrize("head", ["prototype", "linear"])
def test_samples_reproduce_a_runs_test_score(tmp_path, head):
    # A run's few-shot test picks its episodes among `samples` glyphs drawn once per
    # character (seed 0): `--samples` draws the same set, so the genome scores the same.
    from evo.objectives import FewShot
    from genome.files import load_genome

    path = tmp_path / "glyphs.genome"
    res = invoke("create", path, "--input", "12x12", "--hidden", "16", "--output", "5")
    assert res.exit_code == 0, res.output
    settings = {"data": "glyphs", "size": 12, "way": 5, "shot": 1, "query": 2}
    obj = FewShot(**settings, samples=3, test_episodes=5, head=head, rule="sgd")
    gf = load_genome(path)
    want = float(obj.test(gf.decoder.decode(gf.genome[None]))["acc"][0])
    common = ["--query", "2", "--episodes", "5", "--head", head, "--rule", "sgd"]
    common += ["--baselines", "none"]
    got = {}
    for samples in (3, 0):
        res = invoke("fewshot", path, *common, "--samples", samples, "--json")
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)
        assert doc["samples"] == samples
        got[samples] = doc["methods"]["glyphs.genome"]["mean"]
    assert got[3] == pytest.approx(want, abs=1e-6)  # the objective reports float32
    assert got[0] != got[3]  # fresh distortions: other images, another score


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--samples", "2"], ["--samples 2", "shot + --query = 4", "0"]),
        (["--samples", "999"], ["--samples 999", "200"]),
        (["--samples", "5", "--data", "digits"], ["glyph", "digits"]),
    ],
)
def test_bad_samples_exit_2_with_one_line(genome_file, extra, words):
    args = ["--query", "3", "--episodes", "2", "--baselines", "none", *extra]
    assert_one_line_error(invoke("fewshot", genome_file, *args), *words)
