"""theory.montecarlo: several models scored on the same samples, and the standard error of a difference."""

import numpy as np
import pytest

from theory import InputError, Setup
from theory.montecarlo import monte_carlo_loss, monte_carlo_losses


def _models(setup, count, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.normal(0, 0.6, (count, setup.n_hidden, setup.n_features))
    return W, rng.normal(0, 0.2, (count, setup.n_features))


@pytest.mark.parametrize(
    "setup",
    [
        Setup(6, 3, sparsity=0.7, importance=0.8 ** np.arange(6), p=0.3),
        Setup(4, 2, sparsity=[0.1, 0.5, 0.7, 0.9], p=0.5, dropout_groups=[0, 0]),
    ],
)
def test_each_model_is_scored_on_the_samples_monte_carlo_loss_draws(setup):
    W, b = _models(setup, 3)
    both = monte_carlo_losses(setup, W, b, n_samples=50_001, seed=5, chunk=20_000)
    for k in range(3):
        one = monte_carlo_loss(setup, W[k], b[k], n_samples=50_001, seed=5, chunk=20_000)
        assert both.mean[k] == pytest.approx(one.mean, rel=1e-12)
        assert both.stderr[k] == pytest.approx(one.stderr, rel=1e-9)


def test_the_difference_standard_error_is_the_spread_of_the_difference_over_seeds():
    """Two nearby models: the difference of their estimates varies over seeds as difference_stderr says,
    far less than either estimate does."""
    setup = Setup(6, 3, sparsity=0.6, importance=0.8 ** np.arange(6), p=0.2)
    W, b = _models(setup, 1)
    W = np.concatenate([W, W + 0.02 * np.random.default_rng(1).normal(size=W.shape)])
    b = np.concatenate([b, b])
    runs = [monte_carlo_losses(setup, W, b, n_samples=4000, seed=s) for s in range(60)]
    differences = np.array([r.mean[0] - r.mean[1] for r in runs])
    predicted = np.median([r.difference_stderr(0, 1) for r in runs])
    assert 0.7 < differences.std(ddof=1) / predicted < 1.4
    assert predicted < 0.3 * np.median([r.stderr[0] for r in runs])
    assert runs[0].difference_stderr(0, 0) == 0.0


def test_bad_models_are_refused():
    setup = Setup(3, 2, sparsity=0.5)
    with pytest.raises(InputError, match="K >= 1"):
        monte_carlo_losses(setup, np.zeros((2, 3)), np.zeros(3))
    with pytest.raises(InputError, match="n_samples"):
        monte_carlo_losses(setup, np.zeros((1, 2, 3)), np.zeros((1, 3)), n_samples=1)
