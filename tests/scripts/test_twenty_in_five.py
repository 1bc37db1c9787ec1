"""scripts/twenty_in_five.py: what it says about a trained model's shape."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from theory.tail_offset import TAILS

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "twenty_in_five.py"
_SPEC = importlib.util.spec_from_file_location("twenty_in_five", _PATH)
script = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(script)


def test_a_simplex_of_six_features_in_five_dims_has_mean_cosine_minus_one_fifth():
    vertices = np.eye(6) - 1 / 6  # a regular simplex in the plane sum = 0 of R^6
    basis = np.linalg.svd(vertices)[2][:5]  # its 5-dimensional span
    W = basis @ vertices.T
    W = W / np.linalg.norm(W, axis=0) * 0.9
    shape = script.describe(np.concatenate([W, 0.1 * np.eye(5)[:, :2]], axis=1), np.zeros(8), 0.5)
    assert shape["represented"] == 6  # the two columns of norm 0.1 are not
    assert shape["mean_cosine"] == pytest.approx(-0.2)
    assert shape["overlapping"] == 6
    # the two short columns at their mean inputs 0.25: offset 0.025 (e_0 + e_1), orthogonal to each other
    assert shape["offset_norm"] == pytest.approx(0.025 * np.sqrt(2))
    assert shape["tail_cosine"] == pytest.approx(0.0)


def test_profiles_are_named_in_words():
    assert script.profile("importance_decay", 1.0) == "uniform importance"
    assert script.profile("importance_decay", 0.7) == "importance 0.7**i"
    assert script.profile("r", 2.0) == "r = 2"


_ROTATION = Path(__file__).resolve().parents[2] / "scripts" / "neuron_rotation.py"
_SPEC_ROTATION = importlib.util.spec_from_file_location("neuron_rotation", _ROTATION)
rotation_script = importlib.util.module_from_spec(_SPEC_ROTATION)
_SPEC_ROTATION.loader.exec_module(rotation_script)


def test_aligning_rotation_puts_each_factor_back_on_its_own_neurons():
    from theory import Setup, metrics
    from theory.compiled_loss import expected_loss_compiled

    # a triangle on neurons 0-1, antipodal pairs on neurons 2 and 3, spread by a random rotation
    angles = 2 * np.pi * np.arange(3) / 3
    aligned = np.zeros((4, 7))
    aligned[0, :3], aligned[1, :3] = np.cos(angles), np.sin(angles)
    aligned[2, 3:5] = [0.9, -0.8]
    aligned[3, 5:7] = [0.7, -0.7]
    spin = np.linalg.qr(np.random.default_rng(3).normal(size=(4, 4)))[0]
    W = spin @ aligned
    factors = metrics.tegum_factors(W)
    assert [f.kind for f in factors] == ["triangle", "antipodal pair", "antipodal pair"]
    assert min(f.neurons for f in factors[1:]) > 1.5  # spread by the rotation
    Q = rotation_script.aligning_rotation(W, factors)
    np.testing.assert_allclose(Q.T @ Q, np.eye(4), atol=1e-12)
    back = metrics.tegum_factors(Q.T @ W)
    np.testing.assert_allclose([f.neurons for f in back], [2.0, 1.0, 1.0], atol=1e-9)
    # the exact loss does not see the rotation without dropout, and does with it
    b = np.full(7, -0.05)
    for p, same in ((0.0, True), (0.3, False)):
        setup = Setup(7, 4, sparsity=0.9, p=p)
        spread, back_on = (float(expected_loss_compiled(setup, x, b)) for x in (W, Q.T @ W))
        assert (spread == pytest.approx(back_on, rel=1e-12)) is same
    # one factor over every neuron: nothing to align
    simplex = np.eye(5) - 1 / 5
    full = np.linalg.svd(simplex)[2][:4] @ simplex.T
    assert rotation_script.aligning_rotation(full, metrics.tegum_factors(full)) is None


def test_the_head_and_tail_table_has_a_row_per_fitted_cell_and_the_worst_ratio_where_the_tail_works():
    dims = ("p", "importance_decay", "sparsity")
    head = np.full((2, 1, 3), -1)
    head[1, 0] = [5, 6, 9]  # three fitted cells at p = 0.4, the sparsest one quiet
    ratio = np.full((2, 1, 3, 2), np.nan)
    ratio[1, 0] = [[1.0012, 1.0031], [1.0005, 1.0040], [1.02, 1.03]]
    frame = np.full((2, 1, 3), np.nan)
    frame[1, 0, 0] = 1.0033  # the tilted frame at the head of 5 only
    ds = xr.Dataset(
        {
            "search_loss": (dims, np.full((2, 1, 3), 0.1)),
            "structure_stderr": (dims + ("tail",), np.full((2, 1, 3, 2), 1e-5)),
            "ratio": (dims + ("tail",), ratio),
            "head_size": (dims, head),
            "offset_norm": (dims, np.array([[[0.0, 0.0, 0.0]], [[0.7, 0.3, 0.01]]])),
            "frame_ratio": (dims, frame),
            "frame_tilt": (dims, np.where(np.isnan(frame), np.nan, 0.4)),
            "frame_head_cosine": (dims, np.where(np.isnan(frame), np.nan, -0.05)),
        },
        coords={
            "p": [0.0, 0.4],
            "importance_decay": [0.7],
            "sparsity": [0.0, 0.5, 0.9],
            "density": ("sparsity", [1.0, 0.5, 0.1]),
            "tail": list(TAILS),
        },
        attrs={"quiet_offset": 0.05},
    )
    text = script.head_and_tail_table(ds)
    rows = [line for line in text.splitlines() if line.startswith("| 0.4")]
    assert rows == [
        "| 0.4 | importance 0.7**i | 1 | 5 | 0.10000 | 1.0012; 1.0031 (0.0001) | 1.0033 (0.400, -0.050) "
        "| 0.700 |",
        "| 0.4 | importance 0.7**i | 0.5 | 6 | 0.10000 | 1.0005; 1.0040 (0.0001) | - | 0.300 |",
        "| 0.4 | importance 0.7**i | 0.1 | 9 | 0.10000 | 1.0200; 1.0300 (0.0001) | - | 0.010 (quiet) |",
    ], text
    assert (
        "- p = 0.4: at the 2 cells with a hidden offset of norm >= 0.05, structure / search at most: "
        "a norm each 1.0012, one norm 1.0040; the tilted frame at 1 of them, at most 1.0033" in text
    )
    empty = script.head_and_tail_table(ds.assign(head_size=ds.head_size * 0 - 1))
    assert "no cell where the search is the optimum" in empty
