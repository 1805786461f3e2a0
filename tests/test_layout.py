"""Layouts: positions, identity codes, resampling, serialisation."""

from __future__ import annotations

import pytest
import torch

from genome import Layout
from genome.layout import grid_for


def test_build_places_sheets_in_space():
    layout = Layout.build((25, 25), [64], 1)
    assert layout.sizes == [625, 64, 1]
    assert layout.layer_shapes() == [(64, 625), (1, 64)]
    assert layout.n_params == 625 * 64 + 64 + 64 + 1
    pos = layout.positions()
    assert [p.shape for p in pos] == [(625, 3), (64, 3), (1, 3)]
    assert pos[0][:, 2].eq(0).all() and pos[1][:, 2].eq(1).all() and pos[2][:, 2].eq(2).all()
    assert pos[0][:, :2].min() == -1 and pos[0][:, :2].max() == 1
    # Row-major: neuron 1 is one column to the right of neuron 0.
    assert pos[0][1, 0] > pos[0][0, 0] and pos[0][1, 1] == pos[0][0, 1]


@pytest.mark.parametrize("n,grid", [(64, (8, 8)), (800, (25, 32)), (10, (2, 5)), (7, (1, 7))])
def test_grid_is_most_square(n, grid):
    assert grid_for(n) == grid


@pytest.mark.parametrize("code", ["binary", "gray", "onehot", "coords"])
def test_codes_name_every_neuron_uniquely(code):
    layout = Layout.build((5, 6), [(3, 4)], 3)
    for sheet, codes in zip(layout.sheets, layout.codes(code), strict=True):
        assert codes.shape == (sheet.size, sheet.code_dim(code))
        assert len({tuple(c.tolist()) for c in codes}) == sheet.size


def test_binary_and_gray_codes():
    sheet = Layout.build((4, 4), [], 1).sheets[0]
    binary, gray = sheet.codes("binary"), sheet.codes("gray")
    assert binary.shape == (16, 4) and set(binary.unique().tolist()) == {-1.0, 1.0}
    # Neuron (row 2, col 3) is 10 ++ 11 in binary.
    assert binary[2 * 4 + 3].tolist() == [1, -1, 1, 1]
    # Horizontal neighbours differ in exactly one Gray bit.
    for r in range(4):
        for c in range(3):
            assert (gray[r * 4 + c] != gray[r * 4 + c + 1]).sum() == 1


def test_resample_keeps_the_plan():
    layout = Layout.build((28, 28), [800], 10)
    big = layout.resample(2.0)
    assert big.sizes == [56 * 56, 50 * 64, 10]
    assert big.resample(0.5) == layout
    with pytest.raises(ValueError, match="positive finite"):
        layout.resample(0)


def test_dict_round_trip_and_errors():
    layout = Layout.build((25, 25), [64, (4, 4)], 2)
    assert Layout.from_dict(layout.to_dict()) == layout
    with pytest.raises(ValueError, match="'sheets' list"):
        Layout.from_dict({"rows": 3})
    with pytest.raises(ValueError, match=r"sheets\[1\] must be \[rows, cols\]"):
        Layout.from_dict({"sheets": [[2, 2], [0, 3]]})
    with pytest.raises(ValueError, match="at least 2"):
        Layout.from_dict({"sheets": [[2, 2]]})
    with pytest.raises(ValueError, match="input_shape"):
        Layout.build((25,), [], 1)
    with pytest.raises(ValueError, match="at least 1 neuron"):
        Layout.build((5, 5), [0], 1)


def test_codes_follow_the_requested_dtype():
    layout = Layout.build((3, 3), [], 2)
    assert layout.codes("binary", torch.float64)[0].dtype == torch.float64
    with pytest.raises(ValueError, match="valid codes"):
        layout.codes("morse")
