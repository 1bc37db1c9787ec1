"""The regular k-gon turned in two neurons under dropout: the first-order closed form against sympy, the exact
loss and its symmetry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from theory import Setup
from theory.compiled_loss import expected_loss_compiled
from theory.errors import InputError
from theory.turned_polygon import (
    first_order_loss,
    first_order_optimum,
    other_term,
    own_term,
    polygon_W,
    rotation_period,
)


def exact(k, p, density, r, b, phi):
    return float(
        expected_loss_compiled(Setup(k, 2, sparsity=1 - density, p=p), polygon_W(r, phi, k), np.full(k, b))
    )


@pytest.mark.parametrize(
    "a, b",
    [
        ("3/2", "-1/4"),
        ("1/3", "-1/2"),
        ("2", "0"),
        ("-1/2", "-1/5"),
        ("0", "-1/3"),
        ("7/10", "-9/10"),
        ("5", "-1/7"),
    ],
)
def test_the_ramp_integrals_are_sympys(a, b):
    x = sp.symbols("x", real=True)
    A, B = sp.Rational(a), sp.Rational(b)
    ramp = sp.Max(0, A * x + B)
    own = sp.integrate(sp.expand((x - ramp) ** 2).rewrite(sp.Piecewise), (x, 0, 1))
    other = sp.integrate((ramp**2).rewrite(sp.Piecewise), (x, 0, 1))
    assert float(own_term(float(A), float(B))) == pytest.approx(float(own), rel=1e-13, abs=1e-15)
    assert float(other_term(float(A), float(B))) == pytest.approx(float(other), rel=1e-13, abs=1e-15)


@pytest.mark.parametrize(
    "k, p, r, b, phi",
    [(5, 0.4, 0.9, -0.2, 0.1), (3, 0.2, 1.1, -0.05, 0.3), (8, 0.3, 1.2, -0.6, 0.05), (6, 0.1, 1.0, 0.0, 0.7)],
)
def test_the_first_order_loss_is_the_exact_losss_slope_at_zero_density(k, p, r, b, phi):
    """L(s) / s - L1 is second order: it shrinks tenfold from density 1e-3 to 1e-4."""
    limit = float(first_order_loss(r, b, phi, p, k))
    rest = [exact(k, p, s, r, b, phi) / s - limit for s in (1e-3, 1e-4)]
    assert abs(rest[1]) < 2e-3 * limit
    assert 8 < rest[0] / rest[1] < 12


def test_the_exact_loss_is_even_in_the_turn_with_period_two_pi_over_lcm_k_4():
    assert [round(math.degrees(rotation_period(k)), 9) for k in (2, 3, 4, 5, 6, 8)] == [
        90,
        30,
        90,
        18,
        30,
        45,
    ]
    for k, p, r, b, phi in [(5, 0.3, 0.9, -0.1, 0.1), (3, 0.4, 1.0, 0.05, 0.2), (6, 0.2, 1.1, -0.3, 0.4)]:
        T = rotation_period(k)
        value = exact(k, p, 0.3, r, b, phi)
        for moved in (phi + T, -phi, phi - 3 * T):
            assert exact(k, p, 0.3, r, b, moved) == pytest.approx(value, rel=1e-12)
        assert abs(exact(k, p, 0.3, r, b, phi + T / 2) / value - 1) > 1e-6  # no shorter period
        assert exact(k, 0.0, 0.3, r, b, phi + T / 2) == pytest.approx(
            exact(k, 0.0, 0.3, r, b, phi), rel=1e-12
        )


def test_the_square_at_zero_bias_does_not_depend_on_its_turn_at_first_order():
    """Symbolically, for 0 < phi < pi / 2 (where every gain keeps its sign)."""
    r, p, phi = sp.symbols("r p phi", positive=True)
    theta = [phi + i * sp.pi / 2 for i in range(4)]
    total = 0
    for kept, weight in [
        ((1, 1), (1 - p) ** 2),
        ((1, 0), p * (1 - p)),
        ((0, 1), p * (1 - p)),
        ((0, 0), p**2),
    ]:
        for i in range(4):
            for j in range(4):
                gain = (
                    r**2
                    * (
                        kept[0] * sp.cos(theta[i]) * sp.cos(theta[j])
                        + kept[1] * sp.sin(theta[i]) * sp.sin(theta[j])
                    )
                    / (1 - p)
                )
                if i == j:
                    total += weight * (1 - gain) ** 2 / 3  # F(a, 0) = (1 - a)^2 / 3 for a >= 0
                elif gain.subs({phi: sp.Rational(3, 10), r: 1, p: sp.Rational(1, 3)}) > 0:
                    total += weight * gain**2 / 3  # H(c, 0) = c^2 / 3 for c > 0
    assert sp.simplify(sp.diff(total, phi)) == 0
    for value in (0.2, 0.7, 1.3):
        numeric = float(total.subs({phi: value, r: 0.9, p: sp.Rational(2, 5)}))
        assert float(first_order_loss(0.9, 0.0, value, 0.4, 4)) == pytest.approx(numeric, rel=1e-13)


def test_without_dropout_the_first_order_loss_does_not_depend_on_the_turn():
    phis = np.linspace(0, 2, 7)
    for k in (3, 5, 7):
        values = first_order_loss(1.1, -0.3, phis, 0.0, k)
        assert np.ptp(values) < 1e-13 * values.max()


def test_two_vertices_are_the_antipodal_pair_on_one_neuron_and_turned_across_both():
    for p in (0.1, 0.4):
        aligned, turned = first_order_optimum(0.0, p, 2), first_order_optimum(math.pi / 4, p, 2)
        assert aligned.loss == pytest.approx(2 * p / 3, rel=1e-9)
        assert turned.loss / aligned.loss == pytest.approx(1 / (2 - p), rel=1e-8)


@pytest.mark.parametrize("k, best", [(5, 0.0), (8, 0.5)])
def test_the_turn_fitted_on_the_exact_loss_is_the_first_order_optimums(k, best):
    """Under dropout p = 0.4 the pentagon prefers a vertex on a neuron, the octagon half a period off it; a
    fit of r, b and phi on the exact loss at density 1e-4, from both ends, agrees."""
    from scipy.optimize import minimize

    T = rotation_period(k)
    ends = [first_order_optimum(t * T, 0.4, k) for t in (0.0, 0.5)]
    assert (ends[1].loss > ends[0].loss) == (best == 0.0)
    assert abs(ends[1].loss / ends[0].loss - 1) > 0.005

    fits = [
        minimize(
            lambda z: exact(k, 0.4, 1e-4, z[0], z[1], z[2]) / 1e-4,
            [e.norm, e.bias, e.phi],
            method="Nelder-Mead",
            options={"xatol": 1e-7, "fatol": 1e-12, "maxiter": 3000},
        )
        for e in ends
    ]
    fit = min(fits, key=lambda f: f.fun)
    turn = (fit.x[2] / T) % 1
    assert min(turn, 1 - turn) == pytest.approx(best, abs=0.02)
    assert fit.fun == pytest.approx(min(e.loss for e in ends), rel=2e-3)
    assert fit.fun <= min(e.loss for e in ends) * (1 + 1e-3)


def test_bad_inputs_are_refused():
    with pytest.raises(InputError, match="b <= 0"):
        first_order_loss(1.0, 0.1, 0.0, 0.2, 5)
    with pytest.raises(InputError, match="vertices"):
        rotation_period(1)
    with pytest.raises(InputError, match="p = 1.0"):
        first_order_optimum(0.0, 1.0, 5)
