"""The compiled exact loss against theory.expected_loss (torch), the reference."""

import numpy as np
import pytest
from hypothesis import example, given, settings

from theory import InputError, Setup, expected_loss, expected_loss_and_grad, expected_loss_bounds
from theory.compiled_loss import (
    expected_loss_and_grad_compiled,
    expected_loss_and_grad_many_compiled,
    expected_loss_bounds_compiled,
    expected_loss_compiled,
    expected_loss_many_compiled,
)
from theory.testing import check_loss
from theory.testing.loss_check import loss_scale
from theory.testing.strategies import problems, setups


def test_compiled_loss_is_the_exact_loss_on_the_hard_cases():
    # tiny, zero and large weights, tied columns, biases at ReLU kinks, density 0 and 1, p up to 0.95
    report = check_loss(
        lambda setup, W, b: float(expected_loss_compiled(setup, W, b)),
        (1, 4),
        (1, 3),
        examples=150,
        rel=1e-12,
    )
    assert report.cases == 150


def test_each_model_at_its_own_setup():
    rng = np.random.default_rng(1)
    setups = [
        Setup(3, 2, sparsity=rng.uniform(0, 1, 3), importance=rng.uniform(0.1, 2, 3), p=p)
        for p in (0.0, 0.15, 0.4, 0.9)
    ]
    W, b = rng.normal(size=(4, 2, 3)), rng.normal(scale=0.3, size=(4, 3))
    many = expected_loss_many_compiled(setups, W, b)
    one_by_one = [float(expected_loss(s, W[k], b[k])) for k, s in enumerate(setups)]
    np.testing.assert_allclose(many, one_by_one, rtol=1e-13)
    batched = expected_loss_compiled(setups[1], W, b[0])  # b broadcast against W's batch
    np.testing.assert_allclose(batched, expected_loss(setups[1], W, b[0]), rtol=1e-13)


def test_forms_of_tiny_scale_as_the_reference():
    setup = Setup(4, 1, sparsity=0.0)
    for W, b in (
        ([[1.37145179e-164, 1.0, 1.0, 1.0]], [-1.37145179e-164, 0.0, 0.0, 0.0]),
        ([[1e-40, 1.0, 1.0, 1.0]], [-1e-40, 0.0, 0.0, 0.0]),  # rescaled below 1e-30
        ([[1e-4, -1e-4, 1.79160737e-305, 0.0]], [0.0, 0.0, 0.0, 0.0]),
    ):
        assert float(expected_loss_compiled(setup, W, b)) == pytest.approx(
            float(expected_loss(setup, W, b)), rel=1e-14
        )


def test_bad_input_is_one_clear_error():
    setup = Setup(2, 1, sparsity=0.5)
    with pytest.raises(InputError, match="W has shape"):
        expected_loss_compiled(setup, [[1.0, 2.0, 3.0]], [0.0, 0.0])
    with pytest.raises(InputError, match="too large for the exact loss"):
        expected_loss_compiled(Setup(13, 1), np.zeros((1, 13)), np.zeros(13))
    with pytest.raises(InputError, match="different shapes"):
        expected_loss_many_compiled([setup, Setup(3, 1)], np.zeros((2, 1, 2)), np.zeros((2, 2)))


@settings(max_examples=150)
@given(problems(setup_strategy=setups((1, 4), (1, 3), groups=True)))
@example(  # three pivots of 1.7e-108 in a row: the reference's derivatives once chained 1 / pivot^3 (NaN)
    (
        Setup(4, 1, sparsity=0.0),
        np.array([[1.0, 1.68143656e-108, 1.68143656e-108, 1.68143656e-108]]),
        np.array([-1.68143656e-108, 0.0, 0.0, 0.0]),
    )
)
def test_compiled_gradient_is_the_exact_gradient_on_the_hard_cases(problem):
    setup, W, b = problem
    reference = expected_loss_and_grad(setup, W, b)
    compiled = expected_loss_and_grad_compiled(setup, W, b)
    assert float(compiled.loss) == pytest.approx(
        float(reference.loss), rel=1e-12, abs=1e-14 * (1 + loss_scale(setup))
    )
    size = 1 + max(np.abs(reference.grad_W).max(), np.abs(reference.grad_b).max())
    np.testing.assert_allclose(compiled.grad_W, reference.grad_W, rtol=0, atol=1e-11 * size)
    np.testing.assert_allclose(compiled.grad_b, reference.grad_b, rtol=0, atol=1e-11 * size)


def test_compiled_gradient_many_setups_and_finite_differences():
    rng = np.random.default_rng(2)
    setups = [
        Setup(3, 2, sparsity=rng.uniform(0, 1, 3), importance=rng.uniform(0.1, 2, 3), p=p) for p in (0.0, 0.4)
    ]
    W, b = rng.normal(size=(2, 2, 3)), rng.normal(scale=0.3, size=(2, 3))
    many = expected_loss_and_grad_many_compiled(setups, W, b)
    for k, setup in enumerate(setups):
        one = expected_loss_and_grad(setup, W[k], b[k])
        np.testing.assert_allclose(many.grad_W[k], one.grad_W, atol=1e-13)
        np.testing.assert_allclose(many.grad_b[k], one.grad_b, atol=1e-13)
        eps = 1e-6
        up, down = W[k].copy(), W[k].copy()
        up[1, 2] += eps
        down[1, 2] -= eps
        numeric = (expected_loss_compiled(setup, up, b[k]) - expected_loss_compiled(setup, down, b[k])) / (
            2 * eps
        )
        assert many.grad_W[k, 1, 2] == pytest.approx(float(numeric), rel=1e-6, abs=1e-9)


def test_truncated_loss_is_the_torch_truncated_loss_and_its_bracket():
    rng = np.random.default_rng(4)
    setup = Setup(6, 3, sparsity=[0.1, 0.5, 0.7, 0.9, 0.95, 0.8], importance=0.9 ** np.arange(6), p=0.3)
    W, b = rng.normal(size=(4, 3, 6)), rng.normal(scale=0.3, size=(4, 6))
    exact = expected_loss(setup, W, b)
    for k in range(7):
        compiled, reference = (
            f(setup, W, b, max_active=k) for f in (expected_loss_bounds_compiled, expected_loss_bounds)
        )
        np.testing.assert_allclose(compiled.lower, reference.lower, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(compiled.upper, reference.upper, rtol=1e-12)
        assert compiled.omitted_mass == reference.omitted_mass and compiled.max_active == k
        assert np.all(compiled.lower <= exact + 1e-14) and np.all(exact <= compiled.upper + 1e-14)
    np.testing.assert_allclose(
        expected_loss_bounds_compiled(setup, W, b, max_active=6).lower, exact, rtol=1e-14
    )
    # its gradient: the truncated sum's, against central differences
    many = expected_loss_and_grad_many_compiled([setup] * 4, W, b, max_active=2)
    np.testing.assert_allclose(many.loss, expected_loss_bounds(setup, W, b, max_active=2).lower, rtol=1e-12)
    eps = 1e-6
    for index in ((1, 2, 3), (3, 0, 5)):
        up, down = W.copy(), W.copy()
        up[index] += eps
        down[index] -= eps
        numeric = (
            expected_loss_bounds_compiled(setup, up, b, max_active=2).lower
            - expected_loss_bounds_compiled(setup, down, b, max_active=2).lower
        )[index[0]] / (2 * eps)
        assert many.grad_W[index] == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_truncated_loss_reaches_twenty_features():
    # 20 in 5 at density 0.05: at most 3 active of 20, against the torch truncation and Monte Carlo
    rng = np.random.default_rng(5)
    setup = Setup(20, 5, sparsity=0.95, importance=0.9 ** np.arange(20), p=0.4)
    W, b = rng.normal(scale=0.5, size=(5, 20)), rng.normal(scale=0.1, size=20) - 0.1
    compiled = expected_loss_bounds_compiled(setup, W, b, max_active=3)
    reference = expected_loss_bounds(setup, W, b, max_active=3)
    assert float(compiled.lower) == pytest.approx(float(reference.lower), rel=1e-12)
    assert compiled.omitted_mass == pytest.approx(0.0159, abs=1e-4)  # P(Binomial(20, 0.05) > 3)
    with pytest.raises(InputError, match="too large for the exact loss"):
        expected_loss_compiled(setup, W, b)
    with pytest.raises(InputError, match="max_active = 13 is too large"):
        expected_loss_bounds_compiled(setup, W, b, max_active=13)


@pytest.mark.parametrize("groups", [None, [0, 0, 1]])
def test_one_thread_per_dropout_mask_sums_what_one_thread_per_model_does(groups):
    """A bracket of fewer models than threads runs one thread per (model, mask); on any machine both
    paths are forced here and agree to rounding, for every truncation, with and without groups."""
    from theory.compiled_loss import _run

    rng = np.random.default_rng(6)
    setups = [
        Setup(6, 3, sparsity=0.8, importance=0.9 ** np.arange(6), p=p, dropout_groups=groups)
        for p in (0.0, 0.3, 0.9)
    ]
    W, b = rng.normal(size=(3, 3, 6)), rng.normal(scale=0.3, size=(3, 6))
    for k in (1, 3, 6):
        by_model = _run(setups, W, b, False, k, by_mask=False)[0]
        by_mask = _run(setups, W, b, False, k, by_mask=True)[0]
        np.testing.assert_allclose(by_mask, by_model, rtol=1e-14)
        single = [_run([s], w[None], c[None], False, k)[0][0] for s, w, c in zip(setups, W, b, strict=True)]
        np.testing.assert_allclose(single, by_model, rtol=1e-14)
    with pytest.raises(InputError, match="no gradient"):
        _run(setups, W, b, True, 3, by_mask=True)
