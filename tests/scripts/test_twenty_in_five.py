"""scripts/twenty_in_five.py: what it says about a trained model's shape."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "twenty_in_five.py"
_SPEC = importlib.util.spec_from_file_location("twenty_in_five", _PATH)
script = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(script)


def test_a_simplex_of_six_features_in_five_dims_has_mean_cosine_minus_one_fifth():
    vertices = np.eye(6) - 1 / 6  # a regular simplex in the plane sum = 0 of R^6
    basis = np.linalg.svd(vertices)[2][:5]  # its 5-dimensional span
    W = basis @ vertices.T
    W = W / np.linalg.norm(W, axis=0) * 0.9
    shape = script.describe(np.concatenate([W, 0.1 * np.eye(5)[:, :2]], axis=1), np.zeros(8))
    assert shape["represented"] == 6  # the two columns of norm 0.1 are not
    assert shape["mean_cosine"] == pytest.approx(-0.2)
    assert shape["overlapping"] == 6


def test_profiles_are_named_in_words():
    assert script.profile("importance_decay", 1.0) == "uniform importance"
    assert script.profile("importance_decay", 0.7) == "importance 0.7**i"
    assert script.profile("r", 2.0) == "r = 2"
