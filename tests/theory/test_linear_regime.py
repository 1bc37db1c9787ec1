"""The model where no ReLU clips: its closed-form loss against the exact loss, the bound it gives the ReLU
model, its gradient and bias, and its optimum without dropout."""

import numpy as np
import pytest

from theory import Setup, expected_loss, monte_carlo_loss
from theory.linear_regime import (
    clipping_margin,
    linear_loss,
    linear_loss_and_grad,
    linear_optimum,
    optimal_bias,
)

IMPORTANCE = 0.8 ** np.arange(4)


@pytest.mark.parametrize(("density", "p"), [(1.0, 0.0), (1.0, 0.3), (0.6, 0.3), (0.2, 0.5)])
def test_where_nothing_clips_the_closed_form_is_the_exact_loss(density, p):
    rng = np.random.default_rng(1)
    setup = Setup(4, 2, sparsity=1 - density, importance=IMPORTANCE, p=p)
    for _ in range(3):
        W = 0.15 * rng.normal(size=(2, 4))
        b = optimal_bias(W, density) + rng.uniform(0.05, 0.1, 4)
        assert clipping_margin(W, b, p) >= 0  # the premise
        exact = float(expected_loss(setup, W, b))
        assert linear_loss(W, b, IMPORTANCE, density, p) == pytest.approx(exact, rel=1e-10)


@pytest.mark.parametrize(("density", "p"), [(1.0, 0.0), (1.0, 0.4), (0.5, 0.2)])
def test_the_closed_form_bounds_the_relu_models_loss_from_above(density, p):
    rng = np.random.default_rng(2)
    setup = Setup(4, 2, sparsity=1 - density, importance=IMPORTANCE, p=p)
    for _ in range(5):
        W, b = rng.normal(size=(2, 4)), rng.normal(0, 0.3, 4)
        exact, bound = float(expected_loss(setup, W, b)), linear_loss(W, b, IMPORTANCE, density, p)
        assert exact <= bound + 1e-12
        if clipping_margin(W, b, p) < -0.1:
            assert exact < bound


def test_the_gradient_and_the_bias():
    rng = np.random.default_rng(3)
    W = rng.normal(0, 0.5, (3, 6))
    importance, density, p = 0.9 ** np.arange(6), 0.7, 0.35
    loss, grad = linear_loss_and_grad(W, importance, density, p)
    b = optimal_bias(W, density)
    assert loss == pytest.approx(linear_loss(W, b, importance, density, p), rel=1e-13)
    step = 1e-6
    for index in np.ndindex(W.shape):
        up, down = W.copy(), W.copy()
        up[index] += step
        down[index] -= step
        slope = (
            linear_loss_and_grad(up, importance, density, p)[0]
            - linear_loss_and_grad(down, importance, density, p)[0]
        ) / (2 * step)
        assert grad[index] == pytest.approx(slope, rel=1e-6, abs=1e-9)
    for j in range(6):  # b* minimises the loss in every coordinate
        for delta in (-1e-3, 1e-3):
            moved = b.copy()
            moved[j] += delta
            assert linear_loss(W, moved, importance, density, p) > loss


def test_without_dropout_the_optimum_keeps_the_most_important_features():
    importance, density = 0.7 ** np.arange(8), 0.8
    rng = np.random.default_rng(4)
    best = linear_optimum(importance, 3, density, 0.0, [rng.normal(size=(3, 8)) for _ in range(3)])
    variance = density / 3 - density**2 / 4
    assert best.loss == pytest.approx(variance * importance[3:].sum(), rel=1e-9)
    np.testing.assert_allclose(np.linalg.norm(best.W, axis=0)[:3], 1, atol=1e-5)


def test_at_twenty_in_five_the_dense_dropout_optimum_is_scored_by_monte_carlo_below_its_bound():
    importance, p = 0.7 ** np.arange(20), 0.4
    rng = np.random.default_rng(5)
    best = linear_optimum(importance, 5, 1.0, p, [rng.normal(0, 0.3, (5, 20)) for _ in range(2)])
    # the dropout optimum keeps more than 5 features, the rest at small norms (a mean direction)
    norms = np.linalg.norm(best.W, axis=0)
    assert (norms > 0.5).sum() == 5 and (norms[5:] > 0.03).all()
    setup = Setup(20, 5, sparsity=0.0, importance=importance, p=p)
    mc = monte_carlo_loss(setup, best.W, best.b, n_samples=400_000, seed=7)
    assert mc.mean <= best.loss + 4 * mc.stderr
    assert mc.mean >= best.loss * 0.99  # the ReLU clips rarely: within a per cent of the bound
