"""theory.cube against an independent 60-digit inclusion-exclusion evaluation."""

import itertools

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.cube import ZERO_SCALE, truncated_power_moment
from theory.testing.strategies import signed_magnitudes


def reference(b, c, q):
    """E[(b + c.u)_+^q] by the textbook inclusion-exclusion formula in high precision.

    Zero coefficients are dropped; the working precision grows with the
    smallest coefficient, which the formula divides by and cancels against.
    """
    c = [mpmath.mpf(x) for x in c if x != 0]
    b = mpmath.mpf(b)
    k = len(c)
    if k == 0:
        return max(b, 0) ** q
    scale = abs(b) + sum(abs(x) for x in c)
    digits = max(mpmath.mp.dps, 40) + k * int(mpmath.ceil(mpmath.log10(scale / min(abs(x) for x in c))))
    with mpmath.workdps(digits):
        total = mpmath.mpf(0)
        for subset in itertools.product([0, 1], repeat=k):
            y = b + sum(ci for ci, si in zip(c, subset, strict=True) if si)
            total += (-1) ** (k - sum(subset)) * max(y, 0) ** (q + k)
        return +(total * mpmath.factorial(q) / mpmath.factorial(q + k) / mpmath.fprod(c))


def J(b, c, q):
    return truncated_power_moment(
        torch.tensor(b, dtype=torch.float64), torch.tensor(c, dtype=torch.float64), q
    ).item()


@settings(max_examples=150)
@given(
    b=st.floats(-3, 3, allow_nan=False),
    # at least two non-zero coefficients, magnitudes from 1e-14 to 1e2, zeros among them
    c=st.tuples(
        st.lists(signed_magnitudes(-14, 2, zero=False), min_size=2, max_size=5),
        st.lists(st.just(0.0), max_size=2),
    ).map(lambda parts: parts[0] + parts[1]),
    q=st.integers(1, 3),
)
def test_truncated_power_moment_matches_high_precision_reference(b, c, q):
    exact = reference(b, c, q)
    scale = (abs(b) + sum(abs(x) for x in c)) ** q
    # Relative to the value, with an absolute floor far below any loss term.
    assert abs(J(b, c, q) - float(exact)) <= 1e-11 * abs(float(exact)) + 1e-15 * scale


def test_tiny_coefficients_do_not_cancel():
    # The textbook formula loses ~10 digits per coefficient of 1e-10 here.
    b, c = 0.7, [1e-10, -3e-11, 2e-12]
    assert abs(J(b, c, 2) - float(reference(b, c, 2))) < 1e-15 * float(reference(b, c, 2))


@given(
    b=st.floats(-2, 2, allow_nan=False),
    c=st.lists(st.floats(-2, 2, allow_nan=False), min_size=1, max_size=4),
    j=st.integers(0, 3),
)
def test_derivative_in_a_coefficient_is_the_moment_with_that_variable(b, c, j):
    # dJ_2/dc_j = 2 E[u_j y_+]; the right side by the reference at q = 1 over a
    # finite difference in 60-digit arithmetic.
    j = j % len(c)
    coef = torch.tensor(c, dtype=torch.float64, requires_grad=True)
    value = truncated_power_moment(torch.tensor(b, dtype=torch.float64), coef, 2)
    (grad,) = torch.autograd.grad(value, coef)
    with mpmath.workdps(400):
        h = mpmath.mpf("1e-60")
        up = [mpmath.mpf(x) for x in c]
        down = list(up)
        up[j] += h
        down[j] -= h
        numeric = (reference(b, up, 2) - reference(b, down, 2)) / (2 * h)
    assert abs(grad[j].item() - float(numeric)) <= 1e-9 * (1 + abs(float(numeric)))


def test_batched_evaluation_equals_one_at_a_time():
    rng = np.random.default_rng(0)
    b = rng.normal(size=(7, 3))
    c = rng.normal(size=(7, 3, 4))
    batched = truncated_power_moment(torch.tensor(b), torch.tensor(c), 2).numpy()
    single = np.array([[J(b[i, j], c[i, j], 2) for j in range(3)] for i in range(7)])
    np.testing.assert_allclose(batched, single, rtol=1e-14, atol=0)


def _value_and_second_derivative(b: float, c: list[float]) -> tuple[float, float, float]:
    """J_2, dJ_2/db and d2J_2/db2 by autograd (the exact loss differentiates J_2 twice)."""
    offset = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    value = truncated_power_moment(offset, torch.tensor(c, dtype=torch.float64), 2)
    (first,) = torch.autograd.grad(value, offset, create_graph=True)
    (second,) = torch.autograd.grad(first, offset)
    return float(value.detach()), float(first.detach()), float(second)


@settings(max_examples=80)
@given(
    b=st.floats(-2, 2, allow_nan=False),
    c=st.lists(signed_magnitudes(-3, 0.5), min_size=1, max_size=4),
    exponent=st.floats(-200, 0),
)
def test_homogeneous_down_to_tiny_scales_with_finite_derivatives(b, c, exponent):
    # J_2(s b, s c) = s^2 J_2(b, c): its first derivative has degree 1, its second degree 0. Without
    # rescaling, a scale below ~1e-154 squared to 0 in the derivatives of the divided differences (0/0).
    s = 10.0**exponent
    value, first, second = _value_and_second_derivative(b, c)
    small = _value_and_second_derivative(s * b, [s * x for x in c])
    assert all(np.isfinite(small))
    if s * max(abs(b), *map(abs, c)) < ZERO_SCALE:  # within 1e-100 of the kink: 0, the left derivative
        assert small == (0.0, 0.0, 0.0)
        return
    # scaling rounds b and c, so compare to rounding of the form's own size (a value far below it is a
    # cancellation that rounding of the inputs moves), as in the high-precision test above
    size = abs(b) + sum(map(abs, c))
    assert small[0] == pytest.approx(s**2 * value, rel=1e-9, abs=1e-13 * (s * size) ** 2)
    assert small[1] == pytest.approx(s * first, rel=1e-9, abs=1e-13 * s * size)
    assert small[2] == pytest.approx(second, rel=1e-9, abs=1e-12)


def test_forms_within_1e_100_of_the_kink_are_zero_with_the_left_derivative():
    for s in (1e-101, 1e-160, 1e-300, 5e-324):
        assert _value_and_second_derivative(-s, [s, s, s]) == (0.0, 0.0, 0.0)
