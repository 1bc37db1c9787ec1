"""The exact expected loss against independent computations."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import (
    Setup,
    expected_loss,
    expected_loss_and_grad,
    expected_loss_bounds,
    monte_carlo_loss,
)
from theory.testing import check_loss, strategies
from theory.testing.strategies import problems


@settings(max_examples=40)
@given(problems(setup_strategy=strategies.setups(groups=True)), st.integers(0, 2**31))
def test_exact_loss_matches_monte_carlo(problem, seed):
    setup, W, b = problem
    exact = float(expected_loss(setup, W, b))
    mc = monte_carlo_loss(setup, W, b, n_samples=200_000, seed=seed)
    # 4.5 standard errors: with random seeds, a false alarm about once in 4,000 runs of 40 examples.
    # Where every sample's loss is the same (stderr 0), the estimate still carries the rounding of a
    # sum of 200,000 terms, up to about n * eps = 4e-11 relative.
    assert abs(exact - mc.mean) <= 4.5 * mc.stderr + 1e-10 * (1 + abs(exact))


@pytest.mark.parametrize("s", [0.05, 0.3, 0.57, 0.9])
@pytest.mark.parametrize("r", [0.2, 1.0, 3.0])
def test_p0_matches_published_closed_forms(s, r):
    # docs/model.md section 4: 2 features in 1 dim, importances (1, r), density s.
    setup = Setup(2, 1, sparsity=1 - s, importance=[1.0, r])
    drop_first = expected_loss(setup, [[0.0, 1.0]], [s / 2, 0.0])
    drop_extra = expected_loss(setup, [[1.0, 0.0]], [0.0, s / 2])
    antipodal = expected_loss(setup, [[1.0, -1.0]], [0.0, 0.0])
    assert drop_first == pytest.approx(s / 3 - s**2 / 4, rel=1e-12)
    assert drop_extra == pytest.approx(r * (s / 3 - s**2 / 4), rel=1e-12)
    assert antipodal == pytest.approx((1 + r) * s**2 / 6, rel=1e-12)
    wins = antipodal < min(drop_first, drop_extra)
    assert wins == (s < min(4 * r / (2 + 5 * r), 4 / (5 + 2 * r)))


def linear_loss(setup, W, b):
    """E_x E_mask sum_i I_i (x_i - (W^T h)_i - b_i)^2 from the moments of x alone.

    docs/model.md's identity (section 2):
    ||x - b - W^T W x||_I^2 + p/(1-p) sum_k (sum_i I_i W_ki^2)(W_k . x)^2.
    """
    d = setup.density
    weight = np.diag(setup.importance_array)
    mean = d / 2
    second = np.outer(d, d) / 4
    np.fill_diagonal(second, d / 3)
    A = np.eye(setup.n_features) - W.T @ W
    reconstruction = np.trace(weight @ A @ second @ A.T) - 2 * b @ weight @ A @ mean + b @ weight @ b
    weights = (W**2) @ setup.importance_array  # sum_i I_i W_ki^2, per neuron k
    variance = setup.p / (1 - setup.p) * sum(w * (Wk @ second @ Wk) for w, Wk in zip(weights, W, strict=True))
    return reconstruction + variance


def nonnegative_models(setup):
    """Models with W, b >= 0: W^T h + b >= 0 for every x and mask, so the ReLU is the identity."""
    return strategies.models(setup).map(lambda model: (np.abs(model[0]), np.abs(model[1])))


def test_linear_identity_where_relu_never_clips():
    report = check_loss(linear_loss, (2, 4), (1, 3), models=nonnegative_models, examples=60, rel=1e-10)
    assert report.cases == 60


@pytest.mark.parametrize("p", [0.0, 0.15, 0.4, 0.9])
@pytest.mark.parametrize("w", [0.3, 1.0, 1.4])
def test_single_feature_under_dropout_closed_form(p, w):
    # n = m = 1, b = 0: kept, y = w^2 x/(1-p); dropped, y = 0.
    density = 0.37
    setup = Setup(1, 1, sparsity=1 - density, p=p)
    expected = density / 3 * ((1 - p) * (1 - w**2 / (1 - p)) ** 2 + p)
    assert float(expected_loss(setup, [[w]], [0.0])) == pytest.approx(expected, rel=1e-12)


@settings(max_examples=20)
@given(problems(setup_strategy=strategies.setups(groups=True)))
def test_gradient_matches_finite_differences(problem):
    setup, W, b = problem
    # With every neuron dropped or no feature active, y = b: at b_i = 0 the
    # loss has a kink (see expected_loss_and_grad), so keep b_i away from it.
    b = np.where(np.abs(b) < 1e-3, 0.5, b)
    result = expected_loss_and_grad(setup, W, b)

    def central(array, which, index, eps):
        up, down = array.copy(), array.copy()
        up[index] += eps
        down[index] -= eps
        args_up = (up, b) if which == "W" else (W, up)
        args_down = (down, b) if which == "W" else (W, down)
        return (expected_loss(setup, *args_up) - expected_loss(setup, *args_down)) / (2 * eps)

    for array, grad, which in ((W, result.grad_W, "W"), (b, result.grad_b, "b")):
        for index in np.ndindex(array.shape):
            numeric = central(array, which, index, 1e-6)
            # The loss is C^1 and piecewise smooth. Where its second derivative jumps (a ReLU kink at a
            # corner of the cube, which the strategies draw) the difference is off by O(eps), not
            # O(eps^2): allow that error, estimated by halving eps.
            error = abs(numeric - central(array, which, index, 5e-7))
            assert grad[index] == pytest.approx(numeric, abs=2e-6 * (1 + abs(numeric)) + 2 * error)


def test_batched_and_broadcast_evaluation_equals_one_at_a_time():
    rng = np.random.default_rng(0)
    setup = Setup(3, 2, sparsity=[0.2, 0.5, 0.9], importance=[1, 0.5, 2], p=0.3)
    W = rng.normal(size=(4, 5, 2, 3))
    b = rng.normal(size=(5, 3))
    batched = expected_loss(setup, W, b)
    assert batched.shape == (4, 5)
    for i, j in itertools.product(range(4), range(5)):
        assert batched[i, j] == pytest.approx(float(expected_loss(setup, W[i, j], b[j])), rel=1e-13)
    grads = expected_loss_and_grad(setup, W, b)
    assert grads.grad_W.shape == W.shape and grads.grad_b.shape == b.shape
    single = expected_loss_and_grad(setup, W[0, 1], b[1])
    np.testing.assert_allclose(grads.grad_W[0, 1], single.grad_W, rtol=1e-12)
    # b is shared across the first axis, so its gradient sums over it.
    np.testing.assert_allclose(
        grads.grad_b[1],
        sum(expected_loss_and_grad(setup, W[i, 1], b[1]).grad_b for i in range(4)),
        rtol=1e-12,
    )


def test_zero_and_tiny_weights_are_continuous():
    # A catastrophic cancellation in the cube integrals would show up as a jump here.
    setup = Setup(3, 2, sparsity=0.4, importance=[1, 0.8, 0.5], p=0.2)
    W = np.array([[1.0, 0.0, 0.3], [0.0, 0.9, 0.0]])
    b = np.array([0.1, -0.2, 0.05])
    base = float(expected_loss(setup, W, b))
    for tiny in (1e-7, 1e-10, 1e-13):
        W2 = W.copy()
        W2[0, 1] = W2[1, 0] = tiny
        assert float(expected_loss(setup, W2, b)) == pytest.approx(base, abs=10 * tiny)


def test_bounds_bracket_the_exact_loss_and_count_the_omitted_mass():
    rng = np.random.default_rng(3)
    setup = Setup(5, 2, sparsity=[0.1, 0.5, 0.7, 0.9, 0.95], importance=0.9 ** np.arange(5), p=0.4)
    W, b = rng.normal(size=(2, 5)), rng.normal(scale=0.3, size=5)
    exact = float(expected_loss(setup, W, b))
    density = setup.density
    for k in range(6):
        bounds = expected_loss_bounds(setup, W, b, max_active=k)
        assert float(bounds.lower) <= exact + 1e-14 <= float(bounds.upper) + 2e-14
        brute = sum(
            np.prod(np.where(active, density, 1 - density))
            for active in itertools.product([0, 1], repeat=5)
            if sum(active) > k
        )
        assert bounds.omitted_mass == pytest.approx(brute, abs=1e-15)
    full = expected_loss_bounds(setup, W, b, max_active=5)
    assert float(full.lower) == pytest.approx(exact, rel=1e-14) and full.omitted_mass == 0


def test_padded_and_per_size_buckets_agree(monkeypatch):
    import theory.loss

    rng = np.random.default_rng(5)
    setup = Setup(4, 2, sparsity=[0.3, 0.6, 0.0, 0.9], importance=[1, 0.9, 0.8, 0.7], p=0.25)
    W, b = rng.normal(size=(3, 2, 4)), rng.normal(scale=0.2, size=(3, 4))
    padded = expected_loss_and_grad(setup, W, b)
    monkeypatch.setattr(theory.loss, "_PADDED_NODES", 0)
    per_size = expected_loss_and_grad(setup, W, b)
    np.testing.assert_allclose(padded.loss, per_size.loss, rtol=1e-13)
    np.testing.assert_allclose(padded.grad_W, per_size.grad_W, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(padded.grad_b, per_size.grad_b, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize(
    "W, b",
    [
        # found by the strategies: y_0's whole form is about 1e-164 (below 1e-154 its squared pivots
        # underflowed and the loss came out NaN), and a coefficient of 1e-305 beside ones of 1e-4
        ([[1.37145179e-164, 1.0, 1.0, 1.0]], [-1.37145179e-164, 0.0, 0.0, 0.0]),
        ([[1e-4, -1e-4, 1.79160737e-305, 0.0]], [0.0, 0.0, 0.0, 0.0]),
    ],
)
def test_forms_of_tiny_scale_are_finite_and_continuous(W, b):
    setup = Setup(4, 1, sparsity=0.0)
    result = expected_loss_and_grad(setup, W, b)
    assert np.isfinite(result.grad_W).all() and np.isfinite(result.grad_b).all()
    rounded = np.where(np.abs(W) < 1e-100, 0.0, W), np.where(np.abs(b) < 1e-100, 0.0, b)
    assert float(result.loss) == pytest.approx(float(expected_loss(setup, *rounded)), rel=1e-14)


def test_count_tails_are_the_brute_force_sums():
    from theory.loss import _count_tails

    density = np.random.default_rng(8).uniform(0, 1, 5)
    for k in range(5):
        more, one, two = _count_tails(density, k)
        brute = [0.0, np.zeros(5), np.zeros((5, 5))]
        for active in itertools.product([0, 1], repeat=5):
            active = np.array(active)
            if active.sum() > k:
                weight = np.prod(np.where(active, density, 1 - density))
                brute[0] += weight
                brute[1] += weight * active
                brute[2] += weight * np.outer(active, active)
        assert more == pytest.approx(brute[0], abs=1e-15)
        np.testing.assert_allclose(one, brute[1], atol=1e-15)
        np.testing.assert_allclose(two, brute[2], atol=1e-15)


@settings(max_examples=60, deadline=None)
@given(problems((2, 5), (1, 3)), st.integers(0, 4))
def test_bounds_hold_the_exact_loss_on_the_hard_cases(problem, k):
    setup, W, b = problem
    exact = float(expected_loss(setup, W, b))
    bounds = expected_loss_bounds(setup, W, b, max_active=k)
    slack = 1e-12 * (1 + abs(exact))
    assert float(bounds.lower) <= exact + slack and exact <= float(bounds.upper) + slack


def test_bounds_are_tight_where_features_are_sparse():
    # 8 in 3 at density 0.05: the bracket is at most twice what the truncation leaves out (the bound with
    # every feature active would be 57 times it at k = 2)
    rng = np.random.default_rng(7)
    setup = Setup(8, 3, sparsity=0.95, importance=0.9 ** np.arange(8), p=0.4)
    W, b = rng.normal(scale=0.6, size=(3, 8)), rng.normal(scale=0.1, size=8) - 0.1
    exact = float(expected_loss(setup, W, b))
    for k in (1, 2, 3):
        bounds = expected_loss_bounds(setup, W, b, max_active=k)
        missing = exact - float(bounds.lower)
        assert 0 < float(bounds.upper) - float(bounds.lower) < 2 * missing


def test_bounds_hold_where_several_active_features_push_one_output():
    # feature 0 rarely active, features 1-4 always, all writing positively into output 0: what the
    # truncation leaves out is nearly E[(b_0 + sum_j M_0j x_j)^2], cross terms included
    setup = Setup(5, 1, sparsity=[0.999, 0, 0, 0, 0], importance=[1, 1e-3, 1e-3, 1e-3, 1e-3], p=0.0)
    W, b = np.array([[1.0, 0.5, 0.5, 0.5, 0.5]]), np.array([0.01, -1, -1, -1, -1])
    exact = float(expected_loss(setup, W, b))
    for k in range(5):
        bounds = expected_loss_bounds(setup, W, b, max_active=k)
        assert float(bounds.lower) <= exact <= float(bounds.upper)
