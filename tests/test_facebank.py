"""The face bank: draws are a pure function of (seed, generation), the cache file is checked.

Each test keeps its banks in its own folder (`tasks.facebank.cache_dir` patched,
not $INNATE_CACHE_DIR, which also holds the compiled kernels).
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from conftest import TINY, changed

import tasks.facebank as fb
from evo import config
from evo.driver import new_run, resume_run
from evo.objectives import Faces
from tasks import make_faces
from tasks.seeds import seeded

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def bank_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setattr(fb, "cache_dir", lambda: folder)
    monkeypatch.setattr(fb, "CHUNK", 32)  # several chunks in a small bank
    fb.load_face_bank.cache_clear()
    yield folder
    fb.load_face_bank.cache_clear()


def _same(a: fb.FaceBank, b: fb.FaceBank) -> bool:
    return torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_draws_are_a_pure_function_of_seed_and_generation():
    bank = fb.build_face_bank(3, 96)
    assert bank.images.shape == (96, 25, 25) and int(bank.labels.sum()) == 48
    x, y = bank.draw(40, seeded(3, 2, 7, 0))
    again = fb.build_face_bank(3, 96).draw(40, seeded(3, 2, 7, 0))
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])
    other = bank.draw(40, seeded(3, 2, 8, 0))
    assert not torch.equal(x, other[0])
    assert int(y.sum()) == 20 and y.dtype == torch.long
    # Every image drawn is a bank image with its own label, none twice.
    match = (x.flatten(1)[:, None] == bank.images.flatten(1)[None]).all(-1)
    assert torch.equal(match.sum(1), torch.ones(40, dtype=torch.long))
    assert torch.equal(bank.labels[match.int().argmax(1)], y)
    assert not _same(bank, fb.build_face_bank(4, 96))
    with pytest.raises(ValueError, match="batches of 0 to 96, got 97"):
        bank.draw(97, seeded(0))


def test_a_bank_is_rendered_once_and_read_back_bit_for_bit(bank_dir):
    rendered = fb.build_face_bank(0, 64)
    (path,) = bank_dir.glob("faces/*.safetensors")
    assert path == fb.bank_path(0, 64)
    stamp = path.stat().st_mtime_ns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read = fb.build_face_bank(0, 64)
    assert _same(read, rendered) and path.stat().st_mtime_ns == stamp
    # The same images as make_faces gives chunk by chunk.
    x, y = make_faces(32, seeded(0, fb.BANK_STREAM, 1))
    assert torch.equal(rendered.images[32:], x) and torch.equal(rendered.labels[32:], y)


@pytest.mark.parametrize("other", ["size", "version"])
def test_a_bank_of_another_version_or_size_is_rebuilt_not_misread(monkeypatch, other):
    fb.build_face_bank(0, 64)
    old = fb.bank_path(0, 64)
    if other == "size":
        want, path = (0, 96), fb.bank_path(0, 96)
    else:
        monkeypatch.setattr(fb, "generator_version", lambda: "2-ffffffffffff")
        want, path = (0, 64), fb.bank_path(0, 64)
    assert path != old
    path.write_bytes(old.read_bytes())  # the other bank under this one's name
    with pytest.warns(UserWarning, match="not a usable face bank .*holds the bank"):
        bank = fb.build_face_bank(*want)
    assert _same(bank, fb.FaceBank(*fb.render_face_bank(*want), 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _same(fb.build_face_bank(*want), bank)  # the file was replaced


@pytest.mark.parametrize("damage", ["truncated", "flipped", "garbage"])
def test_a_corrupt_bank_file_is_rebuilt_with_a_warning(damage):
    bank = fb.build_face_bank(1, 64)
    path = fb.bank_path(1, 64)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped":
        data[-100] ^= 0xFF  # one pixel of the last image
    else:
        data = bytearray(b"not a bank")
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=f"{path.name}: not a usable face bank"):
        again = fb.build_face_bank(1, 64)
    assert _same(again, bank)
    assert _same(fb.build_face_bank(1, 64), bank)


def test_a_bank_draw_is_the_same_in_a_fresh_process(bank_dir):
    # What a Ray actor or a resumed run does: load the bank from disk, draw.
    x, _ = fb.build_face_bank(2, 64).draw(16, seeded(2, 2, 5, 0))
    script = (
        "import sys, torch, tasks.facebank as fb\n"
        "from pathlib import Path\n"
        "from tasks.seeds import seeded\n"
        f"fb.cache_dir = lambda: Path({str(bank_dir)!r})\n"
        "fb.CHUNK = 32\n"
        "x, _ = fb.load_face_bank(2, 64).draw(16, seeded(2, 2, 5, 0))\n"
        "torch.save(x, sys.argv[1])\n"
    )
    out = bank_dir / "x.pt"
    subprocess.run([sys.executable, "-c", script, str(out)], cwd=REPO, check=True, timeout=120)
    assert torch.equal(torch.load(out), x)


def test_the_faces_objective_draws_from_the_bank_or_renders_fresh():
    bank = Faces(batch_size=32, bank_size=64, seed=5)
    assert bank.max_batch_size == 64
    x, y = bank.batch(seeded(9))
    want = fb.build_face_bank(5, 64).draw(32, seeded(9))
    assert torch.equal(x, want[0]) and torch.equal(y, want[1])
    fresh = Faces(batch_size=32, data="fresh", seed=5)
    assert fresh.max_batch_size is None
    x, y = fresh.batch(seeded(9))
    want = make_faces(32, seeded(9))
    assert torch.equal(x, want[0]) and torch.equal(y, want[1])
    assert "_data_bank" not in bank.__getstate__()  # Ray actors load their own


FACES = changed(
    TINY,
    seed=3,
    generations=4,
    checkpoint_every=1,
    task__objectives=["faces"],
    objectives={"faces": {"bank_size": 128}},
    layout__hidden=[8],
)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"data": "cached"}, "objectives.faces.data: 'cached' is not valid; valid values: bank"),
        ({"bank_size": 1}, "objectives.faces.bank_size: must be an integer from 2 to"),
        ({"bank_size": 64.5}, "objectives.faces.bank_size: must be an integer"),
    ],
)
def test_bad_bank_settings_are_refused_in_one_line(setting, message):
    raw = changed(FACES, objectives={"faces": setting})
    with pytest.raises(config.ConfigError, match=message) as e:
        config.validate(raw, "test")
    assert "\n" not in str(e.value)


def test_a_batch_larger_than_the_bank_is_refused():
    raw = changed(FACES, batch_size=256)
    with pytest.raises(config.ConfigError, match=r"batch_size: .* 128 examples; valid values: 1"):
        config.resolve(config.validate(raw, "test"), "test")


def test_a_resumed_run_reads_the_bank_from_disk_and_equals_an_uninterrupted_run(tmp_path):
    cfg = config.resolve(config.validate(FACES, "test"), "test")
    assert cfg["objectives"]["faces"] == {"augment": "none", "data": "bank", "bank_size": 128}
    whole = new_run(cfg, tmp_path / "whole", progress=False)
    part = new_run(config.override(cfg, generations=2), tmp_path / "part", progress=False)
    fb.load_face_bank.cache_clear()  # as in a new process: the bank comes from its file
    resumed = resume_run(part.run_dir, progress=False, generations=4)
    assert torch.equal(resumed.best_genome, whole.best_genome)
    assert resumed.best_fitness == whole.best_fitness
    fresh = new_run(
        config.override(cfg, objectives={"faces": {"data": "fresh"}}),
        tmp_path / "fresh",
        progress=False,
    )
    assert fresh.best_fitness != whole.best_fitness


def test_a_run_directory_from_before_the_bank_resumes_on_fresh_data(tmp_path):
    """A saved config without `data` was a fresh-rendering run: a resume must not switch."""
    from evo import config

    path = tmp_path / "config.toml"
    path.write_text('[task]\nobjectives = ["faces"]\n[layout]\nhidden = [8]\n')
    assert config.load(path, saved_run=True)["objectives"]["faces"]["data"] == "fresh"
    assert config.load(path)["objectives"]["faces"]["data"] == "bank"  # a new run: the default
    path.write_text(
        '[task]\nobjectives = ["faces"]\n[objectives.faces]\ndata = "bank"\n[layout]\nhidden = [8]\n'
    )
    assert config.load(path, saved_run=True)["objectives"]["faces"]["data"] == "bank"
