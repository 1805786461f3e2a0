"""Face-selective units: the rank-sum test, the selectivity of hand-built units, the stimuli."""

from __future__ import annotations

import json

import pytest
import scipy.stats
import torch

from genome import Layout
from genome.figures import plot_face_units
from genome.phenotype import Phenotype
from genome.selectivity import face_selectivity, rank_sum, ranked_units, selectivity_report
from tasks.stimuli import FACE_CATEGORIES, NON_FACE_CATEGORIES, face_stimuli

PNG = b"\x89PNG\r\n\x1a\n"


def test_rank_sum_matches_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 30, generator=g).relu()  # many exact zeros: ties
    b = (torch.randn(4, 45, generator=g) - 0.4).relu().round(decimals=1)
    u, p = rank_sum(a, b)
    for k in range(4):
        ref = scipy.stats.mannwhitneyu(
            a[k].numpy(), b[k].numpy(), method="asymptotic", alternative="two-sided"
        )
        assert float(u[k]) == pytest.approx(ref.statistic, abs=1e-9)
        assert float(p[k]) == pytest.approx(ref.pvalue, rel=1e-6)


def test_rank_sum_of_identical_samples_is_not_significant():
    u, p = rank_sum(torch.zeros(2, 5), torch.zeros(2, 7))
    assert torch.equal(p, torch.ones(2, dtype=torch.float64))
    assert torch.equal(u, torch.full((2,), 17.5, dtype=torch.float64))


def hand_built() -> tuple[Phenotype, dict[str, torch.Tensor]]:
    """Three units on 2x2 images: one sees pixel 0 (lit in faces), one pixel 1 (lit in
    textures), one nothing; categories differ only in which pixel is lit."""
    layout = Layout.build((2, 2), [3], 1)
    w0 = torch.zeros(1, 3, 4)
    w0[0, 0, 0] = 1.0
    w0[0, 1, 1] = 1.0
    phenotype = Phenotype([w0, torch.ones(1, 1, 3)], [torch.zeros(1, 3), torch.zeros(1, 1)], layout)
    g = torch.Generator().manual_seed(1)

    def lit(pixel: int) -> torch.Tensor:
        x = torch.rand(40, 2, 2, generator=g) * 0.1
        x.view(40, 4)[:, pixel] += 1.0
        return x

    stimuli = {"faces": lit(0), "textures": lit(1), "natural": lit(2), "blank": lit(3)}
    return phenotype, stimuli


def test_a_unit_that_sees_what_only_faces_have_is_face_selective():
    phenotype, stimuli = hand_built()
    sel = face_selectivity(phenotype, stimuli, "faces", ("textures", "natural", "blank"))
    assert sel.selective[0][0].tolist() == [True, False, False]
    assert float(sel.fsi[0][0, 0]) > 0.8 and float(sel.fsi[0][0, 1]) < 0
    assert float(sel.fsi[0][0, 2]) == 0.0  # silent on everything
    assert float(sel.share()[0]) == pytest.approx(1 / 3)
    assert ranked_units(sel, 0)[0] == (0, 0)
    report = selectivity_report(sel, 0, top=2)
    json.dumps(report, allow_nan=False)
    assert report["selective_per_layer"] == [1] and len(report["units"]) == 2
    assert report["units"][0]["p"]["textures"] < 1e-6


def test_a_unit_that_also_likes_one_non_face_category_is_not_face_selective():
    phenotype, stimuli = hand_built()
    stimuli["natural"] = stimuli["faces"].clone()  # a category that looks like the faces
    sel = face_selectivity(phenotype, stimuli, "faces", ("textures", "natural", "blank"))
    assert not sel.selective[0].any()


@pytest.mark.parametrize(
    ("face", "non_faces", "words"),
    [
        ("eyes", ("textures",), "unknown categories"),
        ("faces", ("faces",), "exclude"),
        ("faces", (), "must be given"),
    ],
)
def test_bad_categories_are_named(face, non_faces, words):
    phenotype, stimuli = hand_built()
    with pytest.raises(ValueError, match=words):
        face_selectivity(phenotype, stimuli, face, non_faces)


def test_face_stimuli_are_a_pure_function_of_seed_and_size():
    a = face_stimuli(4, seed=3, size=(12, 12))
    b = face_stimuli(4, seed=3, size=(12, 12))
    c = face_stimuli(4, seed=4, size=(12, 12))
    assert tuple(a) == (*FACE_CATEGORIES, *NON_FACE_CATEGORIES)
    for name in a:
        assert torch.equal(a[name], b[name])
        assert a[name].shape[1:] == (12, 12)
    assert len(a["faces"]) == 4 and len(a["lfw_faces"]) == 100
    assert not torch.equal(a["faces"], c["faces"])
    assert torch.equal(a["lfw_faces"], c["lfw_faces"])  # the real images do not change
    with pytest.raises(ValueError, match="per_category"):
        face_stimuli(1)


def test_the_face_units_figure_is_drawn(tmp_path):
    phenotype, stimuli = hand_built()
    sel = face_selectivity(phenotype, stimuli, "faces", ("textures", "natural", "blank"))
    path = plot_face_units(phenotype, 0, sel, stimuli, tmp_path / "units.png", top=2, k=3)
    assert path.read_bytes().startswith(PNG)
