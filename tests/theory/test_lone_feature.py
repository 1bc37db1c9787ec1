"""One feature spread over k units under dropout: the closed-form optimum against sympy, the exact loss,
a global minimisation over all of W and b, and Monte Carlo."""

import numpy as np
import pytest
import sympy as sp

from theory import Setup, expected_loss, minimize_loss, monte_carlo_loss
from theory.lone_feature import lone_feature_optimum, sparse_limit


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


def test_the_sparse_limit_is_the_closed_forms_first_order_term():
    s, p, k = sp.symbols("s p k", positive=True)
    q = p / (k * (1 - p))
    u = 1 - sp.Rational(3, 4) * s
    a, b = u / (u + q), s * q / (2 * (u + q))
    L = b**2 + s * (((1 - a) ** 2 + a**2 * q) / 3 - (1 - a) * b)
    limit = sp.limit(L / s, s, 0)
    values = {p: sp.Rational(2, 5), k: 3}
    assert sp.simplify(limit.subs(values) - sparse_limit(0.4, 3)) == pytest.approx(0, abs=1e-15)
    assert sp.simplify(limit - p / (3 * (k - (k - 1) * p))) == 0


@pytest.mark.parametrize("p", [0.2, 0.5])
@pytest.mark.parametrize("k", [1, 2])
def test_an_antipodal_pair_in_k_units_costs_two_lone_features_to_first_order_and_nothing_does_better(p, k):
    density = 1e-3
    setup = Setup(2, k, sparsity=1 - density, p=p)
    first_order = 2 * density * float(sparse_limit(p, k))
    a = 1 - 3 * float(sparse_limit(p, k))  # a* = 1 / (1 + q) = 1 - q / (1 + q)
    u = np.full((k, 1), np.sqrt(a / k))
    pair = float(expected_loss(setup, np.hstack([u, -u]), np.zeros(2)))
    assert pair == pytest.approx(first_order, rel=5 * density)  # second order in the density
    best = minimize_loss(setup, n_starts=8, seed=3)
    assert best.loss >= first_order * (1 - 5 * density)
    W = np.asarray(best.W)
    assert W[:, 0] @ W[:, 1] / np.prod(np.linalg.norm(W, axis=0)) < -0.99  # antipodal
    assert np.all((W**2).sum(0) ** 2 / (W**4).sum(0) > k - 0.05)  # over every unit


def test_across_two_units_a_pair_costs_one_over_two_minus_p_of_the_pair_on_one():
    p = np.linspace(0.05, 0.9, 12)
    np.testing.assert_allclose(sparse_limit(p, 2) / sparse_limit(p, 1), 1 / (2 - p), rtol=1e-14)
    np.testing.assert_allclose(sparse_limit(p, 1), p / 3, rtol=1e-14)
