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


def _offset_model_loss(a, b, c, density, p, k, relu=True):
    """E[(ReLU(b + G (x - c)) - x)^2] by summing over the kept units N ~ Binomial(k, 1 - p) and
    integrating over x (an atom at 0, uniform on [0, 1] with weight density): independent of the
    closed form's algebra."""
    from scipy.integrate import quad
    from scipy.stats import binom

    def out(x, gain):
        y = b + gain * (x - c)
        return max(y, 0.0) if relu else y

    total = 0.0
    for n in range(k + 1):
        gain = a / k * n / (1 - p)
        kink = [c - b / gain] if gain > 0 and 0 < c - b / gain < 1 else None

        def square(x, g=gain):
            return (out(x, g) - x) ** 2

        inside = quad(square, 0, 1, points=kink, epsabs=1e-14, epsrel=1e-12)[0]
        total += binom.pmf(n, k, 1 - p) * ((1 - density) * out(0.0, gain) ** 2 + density * inside)
    return total


def test_with_a_hidden_offset_the_optimum_centres_the_input_symbolically():
    """L = E[(b + G (x - c) - x)^2] expanded from the moments E G = a, E G^2 = a^2 (1 + q), E x = s / 2,
    E x^2 = s / 3 is the closed form; for any a its (b, c) optimum is b = c = s / 2, then a = 1 / (1 + q),
    and the least loss is sigma^2 q / (1 + q)."""
    from theory.lone_feature import lone_feature_offset_optimum, offset_loss

    a, b, c, s, q = sp.symbols("a b c s q", positive=True)
    G, x = sp.symbols("G x")
    expanded = sp.expand((b + G * (x - c) - x) ** 2)
    moments = {G**2: a**2 * (1 + q), x**2: s / 3}
    L = expanded.subs(moments).subs({G: a, x: s / 2})  # G and x independent: E[G^i x^j] = E G^i E x^j
    beta = b - a * c  # the module docstring's form
    written = (
        beta**2 + a**2 * q * c**2 + s * beta * (a - 1) - s * a**2 * q * c + s * ((1 - a) ** 2 + a**2 * q) / 3
    )
    assert sp.simplify(written - L) == 0
    point = {a: 0.8, b: 0.3, c: 0.1, s: 0.6, q: 0.25 / (2 * 0.75)}  # p = 0.25, k = 2
    assert float(offset_loss(0.8, 0.3, 0.1, 0.6, 0.25, 2)) == pytest.approx(float(L.subs(point)), rel=1e-13)
    inner = sp.solve([sp.diff(L, b), sp.diff(L, c)], [b, c], dict=True)
    assert len(inner) == 1 and sp.simplify(inner[0][b] - s / 2) == 0 and sp.simplify(inner[0][c] - s / 2) == 0
    La = L.subs(inner[0])
    assert sp.solve(sp.diff(La, a), a) == [1 / (1 + q)]
    sigma2 = s / 3 - s**2 / 4
    assert sp.simplify(La.subs(a, 1 / (1 + q)) - sigma2 * q / (1 + q)) == 0
    opt = lone_feature_offset_optimum(0.4, 0.25, 3)
    qv = 0.25 / (3 * 0.75)
    assert float(opt.loss) == pytest.approx((0.4 / 3 - 0.04) * qv / (1 + qv), rel=1e-14)


@pytest.mark.parametrize("density", [0.1, 0.6, 1.0])
@pytest.mark.parametrize("p", [0.15, 0.4])
def test_the_hidden_offset_closed_form_against_quadrature_and_the_no_offset_optimum(density, p):
    from theory.lone_feature import lone_feature_offset_optimum, offset_loss

    rng = np.random.default_rng(int(100 * density + 10 * p))
    for k in (1, 2, 3):
        # away from the optimum, nothing clipping (b and c small, G x - G c + b >= 0 needs b >= G c)
        a, c = rng.uniform(0.5, 1.2), rng.uniform(0.0, 0.1)
        b = a / (1 - p) * c + rng.uniform(0.0, 0.2)
        exact = _offset_model_loss(a, b, c, density, p, k, relu=False)
        assert float(offset_loss(a, b, c, density, p, k)) == pytest.approx(exact, rel=1e-10)
        opt = lone_feature_offset_optimum(density, p, k)
        relu = _offset_model_loss(opt.norm_squared, opt.bias, opt.offset, density, p, k)
        if k == 1:  # G is 0 or exactly 1: nothing clips, the closed form is the ReLU model's loss p sigma^2
            assert relu == pytest.approx(float(opt.loss), rel=1e-10)
            assert float(opt.loss) == pytest.approx(p * (density / 3 - density**2 / 4), rel=1e-12)
        else:  # the ReLU clips inactive outputs mu (1 - G) < 0 towards 0: an upper bound
            assert relu <= float(opt.loss) * (1 + 1e-12)
        without = lone_feature_optimum(density, p, k)
        u, q = 1 - 0.75 * density, float(without.noise)
        assert float(opt.loss) == pytest.approx(float(without.loss) * (u + q) / (1 + q), rel=1e-12)


def test_the_hidden_offset_optimum_against_monte_carlo():
    """The ReLU model with the offset, sampled: k = 1 at the closed form (exact there), k = 3 below it."""
    from theory.lone_feature import lone_feature_offset_optimum

    rng = np.random.default_rng(7)
    density, p, n = 0.7, 0.3, 1_000_000
    for k in (1, 3):
        opt = lone_feature_offset_optimum(density, p, k)
        x = rng.random(n) * (rng.random(n) < density)
        G = float(opt.norm_squared) / k * rng.binomial(k, 1 - p, n) / (1 - p)
        err = (np.maximum(float(opt.bias) + G * (x - float(opt.offset)), 0) - x) ** 2
        mean, se = err.mean(), err.std() / np.sqrt(n)
        if k == 1:
            assert abs(mean - float(opt.loss)) < 4 * se
        else:
            assert mean < float(opt.loss) + 4 * se
            assert mean == pytest.approx(
                _offset_model_loss(opt.norm_squared, opt.bias, opt.offset, density, p, k), abs=4 * se
            )
