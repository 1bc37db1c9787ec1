"""scripts/hidden_offset.py: its scorer of a model with its unrepresented inputs replaced."""

import importlib.util
import sys
from pathlib import Path

import numpy as np

from theory import Setup, expected_loss

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "hidden_offset.py"
_SPEC = importlib.util.spec_from_file_location("hidden_offset", _PATH)
script = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = script  # its dataclass looks its module up
_SPEC.loader.exec_module(script)


def _model(p):
    setup = Setup(4, 2, sparsity=[0.6, 0.7, 0.5, 0.8], importance=[1.0, 0.8, 0.6, 0.4], p=p)
    rng = np.random.default_rng(1)
    W = rng.normal(0, 0.6, (2, 4))
    W[:, 3] = [0.4, -0.3]  # the feature whose input is replaced
    return setup, W, rng.normal(0, 0.2, 4), np.array([False, False, False, True])


def test_the_model_as_trained_scores_its_exact_loss():
    setup, W, b, rest = _model(0.3)
    scored = script.variant_losses(setup, W, b, rest, n_samples=400_000, seed=0)
    exact = float(expected_loss(setup, W, b))
    assert abs(scored.mean[0] - exact) < 4 * scored.stderr[0], (scored, exact)


def test_each_variant_is_the_model_written_out_sample_by_sample():
    """The same draws, one sample at a time: h = D W x / keep with x_3 as drawn, x_3 at its mean, or its
    mean's column added after the mask."""
    setup, W, b, rest = _model(0.3)
    scored = script.variant_losses(setup, W, b, rest, n_samples=2000, seed=5)
    rng = np.random.default_rng(5)
    density, keep = setup.density, 1.0 - setup.p
    x = rng.random((2000, 4)) * (rng.random((2000, 4)) < density)
    mask = (rng.random((2000, setup.n_groups)) < keep)[:, setup.unit_groups] / keep
    totals = np.zeros(3)
    for s in range(2000):
        mean_input = x[s].copy()
        mean_input[3] = density[3] / 2
        drawn = mask[s] * (W @ x[s])
        at_mean = mask[s] * (W @ mean_input)
        undropped = mask[s] * (W[:, :3] @ x[s, :3]) + W[:, 3] * density[3] / 2
        for v, h in enumerate((drawn, at_mean, undropped)):
            out = np.maximum(W.T @ h + b, 0.0)
            totals[v] += float(setup.importance_array @ (x[s] - out) ** 2)
    np.testing.assert_allclose(scored.mean, totals / 2000, rtol=1e-12)
    assert len(set(np.round(totals, 9))) == 3  # three different models under dropout


def test_without_dropout_the_offset_is_the_same_dropped_or_not():
    setup, W, b, rest = _model(0.0)
    scored = script.variant_losses(setup, W, b, rest, n_samples=100_000, seed=0)
    np.testing.assert_allclose(scored.mean[2], scored.mean[1], rtol=1e-13)
    assert abs(scored.mean[0] - float(expected_loss(setup, W, b))) < 4 * scored.stderr[0]
