"""One feature spread over k units under dropout: the closed-form optimum against sympy, the exact loss,
a global minimisation over all of W and b, and Monte Carlo."""

import numpy as np
import pytest
import sympy as sp

from theory import Setup, expected_loss, minimize_loss, monte_carlo_loss
from theory.lone_feature import lone_feature_optimum


def test_the_optimum_solves_the_stationarity_equations_symbolically():
    a, b, s, p, k = sp.symbols("a b s p k", positive=True)
    q = p / (k * (1 - p))
    L = b**2 + s * (((1 - a) ** 2 + a**2 * q) / 3 - (1 - a) * b)
    solution = sp.solve([sp.diff(L, a), sp.diff(L, b)], [a, b], dict=True)
    assert len(solution) == 1
    u = 1 - sp.Rational(3, 4) * s
    assert sp.simplify(solution[0][a] - u / (u + q)) == 0
    assert sp.simplify(solution[0][b] - s * q / (2 * (u + q))) == 0


@pytest.mark.parametrize("density", [0.05, 0.4, 1.0])
@pytest.mark.parametrize("p", [0.0, 0.2, 0.5])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_closed_form_is_the_exact_loss_and_the_global_optimum(density, p, k):
    setup = Setup(1, k, sparsity=1 - density, p=p)
    opt = lone_feature_optimum(density, p, k)
    W, b = opt.weights(k), np.array([float(opt.bias)])
    assert float(expected_loss(setup, W, b)) == pytest.approx(float(opt.loss), rel=1e-10, abs=1e-15)
    best = minimize_loss(setup, n_starts=6, seed=1)
    # Nothing over all of W and b (unequal weights, negative bias, clipping) beats it.
    assert best.loss >= float(opt.loss) * (1 - 1e-7) - 1e-14
    assert best.loss <= float(opt.loss) * (1 + 1e-6) + 1e-12


def test_closed_form_against_monte_carlo():
    opt = lone_feature_optimum(0.5, 0.3, 2)
    setup = Setup(1, 2, sparsity=0.5, p=0.3)
    mc = monte_carlo_loss(setup, opt.weights(2), [float(opt.bias)], n_samples=400_000, seed=5)
    assert abs(mc.mean - float(opt.loss)) <= 4.5 * mc.stderr


def test_spreading_lowers_the_loss_and_the_bias_grows_with_p_and_density():
    k = np.arange(1, 6)
    assert np.all(np.diff(lone_feature_optimum(0.7, 0.3, k).loss) < 0)
    assert np.all(np.diff(lone_feature_optimum(0.7, np.linspace(0, 0.6, 7)).bias) > 0)
    assert np.all(np.diff(lone_feature_optimum(np.linspace(0.1, 1, 7), 0.3).bias) > 0)
    p0 = lone_feature_optimum(np.linspace(0.1, 1, 5), 0.0)
    np.testing.assert_allclose(p0.norm_squared, 1)
    np.testing.assert_allclose(p0.loss, 0, atol=1e-15)
