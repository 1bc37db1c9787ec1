"""theory.testing, the public derivation checker: it passes right claims and catches planted errors."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import find, given, settings
from hypothesis import strategies as st

from theory import InputError, Setup, expected_loss, optimal
from theory.blocks import dedicated
from theory.geometries import Geometry
from theory.testing import (
    LossMismatch,
    OptimumRejected,
    check_geometry_loss,
    check_loss,
    check_optimum,
    strategies,
    symbols,
)
from theory.testing.loss_check import loss_scale

from .test_loss import linear_loss, nonnegative_models


def dedicated_loss(setup, W, b, scale_by_keep=True):
    """One feature on one neuron, bias beta >= 0 (then ReLU never clips): kept, y = beta + w^2 u / (1 - p)."""
    d, p, importance = setup.density[0], setup.p, setup.importance[0]
    w, beta = W[0, 0], b[0]
    a = 1 - w**2 / (1 - p) if scale_by_keep else 1 - w**2
    kept = a**2 / 3 - a * beta + beta**2  # E (a u - beta)^2
    dropped = 1 / 3 - beta + beta**2
    return importance * (d * ((1 - p) * kept + p * dropped) + (1 - d) * beta**2)


def nonnegative(setup, W, b):
    return b[0] >= 0


def test_a_right_closed_form_passes_inside_its_assumptions():
    report = check_loss(dedicated_loss, 1, 1, where=nonnegative, examples=60)
    assert report.cases == 60 and report.rejected > 0
    assert report.worst_relative_error < 1e-12
    assert "60 cases agree with theory.expected_loss" in str(report)


def test_a_missing_one_over_one_minus_p_is_caught_at_a_runnable_small_case():
    def wrong(setup, W, b):
        return dedicated_loss(setup, W, b, scale_by_keep=False)

    with pytest.raises(LossMismatch) as caught:
        check_loss(wrong, 1, 1, where=nonnegative)
    message = str(caught.value)
    assert "setup, W, b = Setup(" in message and "np.array(" in message
    # the printed line rebuilds the case, and the case shows the error: p > 0, and it disagrees
    namespace = {"np": np}
    exec("from theory import Setup\n" + caught.value.case.code(), namespace)
    setup, W, b = namespace["setup"], namespace["W"], namespace["b"]
    assert setup.p > 0 and W[0, 0] != 0
    exact = float(expected_loss(setup, W, b))
    assert abs(wrong(setup, W, b) - exact) > 1e-3 * exact
    assert repr(exact) in message


def test_the_same_formula_fails_outside_its_assumptions():
    # with beta < 0 the ReLU clips; the formula does not hold there, and the shrunk case shows it
    with pytest.raises(LossMismatch) as caught:
        check_loss(dedicated_loss, 1, 1)
    assert caught.value.case.b[0] < 0


def test_a_claim_that_raises_is_reported_at_its_case():
    def divides(setup, W, b):
        return 1.0 / float(W[0, 0])  # a Python float: 0 raises ZeroDivisionError

    with pytest.raises(LossMismatch, match="raised ZeroDivisionError") as caught:
        check_loss(divides, 1, 1, examples=20)
    assert "W, b = " in str(caught.value)


def test_assumptions_that_reject_nearly_everything_are_one_clear_error():
    with pytest.raises(InputError, match="`where` rejected almost every drawn case"):
        check_loss(dedicated_loss, 1, 1, where=lambda setup, W, b: b[0] == 0.123456, examples=20)
    with pytest.raises(InputError, match="examples = 0"):
        check_loss(dedicated_loss, 1, 1, examples=0)
    with pytest.raises(InputError, match="at most 12 features"):
        check_loss(dedicated_loss, 13, 1)


def test_a_sympy_loss_is_checked_in_the_geometry_parameters():
    geometry = Geometry("dedicated", 1, 1, (dedicated(0, 0),))
    s = symbols(geometry)
    assert list(s) == ["w_0", "b_0", "density_0", "importance_0", "p"]
    w, beta, d, importance, p = s.values()
    a = 1 - w**2 / (1 - p)
    third = sp.Rational(1, 3)
    loss = importance * (
        d * ((1 - p) * (a**2 * third - a * beta + beta**2) + p * (third - beta + beta**2)) + (1 - d) * beta**2
    )
    assert check_geometry_loss(loss, geometry, where=beta >= 0, examples=40).cases == 40
    # the user's own symbols are matched by name, whatever their assumptions
    plain = loss.subs(w, sp.Symbol("w_0"))
    assert check_geometry_loss(plain, geometry, where=beta >= 0, examples=10).cases == 10
    with pytest.raises(LossMismatch, match="'dedicated' at w_0 = "):
        check_geometry_loss(loss.subs(p, 0), geometry, where=beta >= 0)
    with pytest.raises(InputError, match="uses q, not a symbol of geometry 'dedicated'"):
        check_geometry_loss(loss + sp.Symbol("q"), geometry)


def test_monte_carlo_is_the_reference_beyond_the_exact_loss():
    report = check_loss(linear_loss, 13, 2, models=nonnegative_models, monte_carlo=20_000, examples=4)
    assert report.monte_carlo_cases == 4 and report.reference == "Monte Carlo"
    with pytest.raises(LossMismatch, match="standard errors from a Monte Carlo estimate"):
        check_loss(
            lambda setup, W, b: 1.01 * linear_loss(setup, W, b) + 0.01,
            13,
            2,
            models=nonnegative_models,
            monte_carlo=20_000,
            examples=4,
        )


def test_check_optimum_accepts_the_catalogue_optimum_and_rejects_a_perturbed_one():
    setup = Setup(2, 1, sparsity=0.9, importance=[1.0, 0.7], p=0.15)
    best = optimal(setup)
    report = check_optimum(setup, best.W, best.b)
    assert report.ok and report.slope < 1e-8
    moved = best.W + np.array([[0.02, -0.01]])
    with pytest.raises(OptimumRejected) as caught:
        check_optimum(setup, moved, best.b)
    rejected = caught.value.report
    assert not rejected.stationary
    assert rejected.beaten_by[0].loss == pytest.approx(best.loss, rel=1e-9)
    assert "beaten by local descent from the claim" in str(caught.value)


def test_check_optimum_rejects_a_stationary_point_that_is_not_a_minimum():
    # W = 0 with each bias at its feature's mean: the gradient is zero (L depends on W through W^T W),
    # but representing the features is far better at this density
    setup = Setup(2, 1, sparsity=0.9, importance=[1.0, 0.7], p=0.15)
    with pytest.raises(OptimumRejected) as caught:
        check_optimum(setup, np.zeros((1, 2)), setup.density / 2)
    report = caught.value.report
    assert report.stationary and report.beaten_by
    assert any("catalogue" in better.source for better in report.beaten_by)


def test_the_one_sided_slope_at_the_bias_kink():
    # a dedicated feature with b = 0 under dropout: left and right derivatives in b differ, and the
    # right one slopes down (the optimum has b > 0), which the slope reports
    setup = Setup(1, 1, sparsity=0.5, p=0.4)
    best = optimal(setup)
    with pytest.raises(OptimumRejected) as caught:
        check_optimum(setup, best.W, [0.0], catalogue=False, starts=0)
    assert caught.value.report.slope > 1e-3


@settings(max_examples=30)
@given(strategies.problems())
def test_drawn_problems_are_valid_and_finite(problem):
    setup, W, b = problem
    assert W.shape == (setup.n_hidden, setup.n_features) and b.shape == (setup.n_features,)
    assert np.isfinite(float(expected_loss(setup, W, b)))
    assert loss_scale(setup) >= 0


def test_the_hard_cases_are_drawn():
    setup = Setup(3, 2, sparsity=0.5, p=0.4)
    models = strategies.models(setup)
    tied = find(models, lambda m: np.array_equal(m[0][:, 0], m[0][:, 1]) and np.any(m[0][:, 0]))
    assert np.array_equal(tied[0][:, 0], tied[0][:, 1])
    opposite = find(models, lambda m: np.array_equal(m[0][:, 1], -m[0][:, 2]) and np.any(m[0][:, 1]))
    assert np.any(opposite[0][:, 1])
    corner = lambda m: m[0].T @ m[0] / (1 - setup.p)  # noqa: E731
    kink = find(models, lambda m: m[1][0] != 0 and np.isclose(-m[1][0], corner(m)[0]).any())
    assert kink[1][0] != 0
    tiny = find(models, lambda m: 0 < np.abs(m[0][m[0] != 0]).min() < 1e-6 if np.any(m[0]) else False)
    assert np.any(tiny[0])
    dense_and_off = find(strategies.setups(), lambda s: 1.0 in s.density and 0.0 in s.density)
    assert dense_and_off.n_features >= 2


@settings(max_examples=15)
@given(st.data())
def test_geometry_models_are_the_geometry_at_its_parameters(data):
    shape = data.draw(st.sampled_from([(2, 1), (3, 2), (4, 3)]))
    geometry = data.draw(strategies.geometries(*shape))
    model = data.draw(strategies.geometry_models(geometry))
    W, b = geometry.matrices()
    values = {t: model.params[t.name] for t in geometry.parameters()}
    np.testing.assert_allclose(model.W, np.array(W.subs(values), dtype=float), atol=1e-15)
    np.testing.assert_allclose(model.b, np.array(b.subs(values), dtype=float).ravel(), atol=1e-15)


def test_a_printed_case_rebuilds_exactly():
    case = find(strategies.problems(), lambda problem: problem[0].p > 0.3 and np.any(problem[1]))
    from theory.testing import Case

    printed = Case(*case).code()
    namespace = {"np": np, "Setup": Setup}
    exec(printed, namespace)
    assert namespace["setup"] == case[0]
    assert np.array_equal(namespace["W"], case[1]) and np.array_equal(namespace["b"], case[2])
