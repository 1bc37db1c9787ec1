"""theory.tail_offset: a free head and the other features along one shared direction, on the sampled loss."""

import numpy as np
import pytest

from theory import InputError, Setup, expected_loss
from theory.sampled import SampledLoss
from theory.tail_offset import TailOffset, minimize_tail_offset


def _setup(n=6, m=3, p=0.3, density=0.6):
    return Setup(n, m, sparsity=1 - density, importance=0.8 ** np.arange(n), p=p)


@pytest.mark.parametrize("equal_tail", [False, True])
def test_the_tail_is_one_direction_and_the_gradient_is_the_chain_rule(equal_tail):
    setup = _setup()
    structure = TailOffset(6, 3, head=2, equal_tail=equal_tail)
    rng = np.random.default_rng(0)
    theta = rng.normal(0, 0.4, structure.size)
    theta[3 * 2 + 3 : 3 * 2 + 3 + structure.tail] = np.abs(theta[3 * 2 + 3 : 3 * 2 + 3 + structure.tail])
    W, b = structure.matrices(theta)
    assert np.linalg.matrix_rank(W[:, 2:]) == 1
    if equal_tail:
        np.testing.assert_allclose(np.linalg.norm(W[:, 2:], axis=0), np.linalg.norm(W[:, 2]), rtol=1e-12)
    objective = SampledLoss.draw(setup, 4000, seed=1)

    def f(x):
        return objective.loss_and_grad(*structure.matrices(x))[0]

    grad = structure.pull_back(theta, *objective.loss_and_grad(W, b)[1:])
    h = 1e-6
    numeric = np.array([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in np.eye(structure.size)])
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def test_the_nearest_structure_to_a_structured_model_is_itself():
    structure = TailOffset(6, 3, head=2)
    rng = np.random.default_rng(2)
    H, v = rng.normal(size=(3, 2)), rng.normal(size=3)
    v /= np.linalg.norm(v)
    W = np.concatenate([H, np.outer(v, [0.3, 0.1, 0.2, 0.05])], axis=1)
    b = rng.normal(size=6)
    back = structure.matrices(structure.theta_of(W, b))
    np.testing.assert_allclose(back[0], W, atol=1e-12)
    np.testing.assert_allclose(back[1], b)


def test_the_fit_is_scored_on_the_models_own_loss_and_improves_on_its_start():
    """At 6 in 3 the exact loss reaches: the end point's Monte Carlo score is its exact loss, and the fit
    ends below the structure nearest its start."""
    setup = _setup()
    rng = np.random.default_rng(3)
    start = (rng.normal(0, 0.5, (3, 6)), np.zeros(6))
    options = {"maxiter": 100, "ftol": 1e-10, "gtol": 1e-8}
    fit = minimize_tail_offset(setup, 2, [start], random_starts=1, seed=4, rescore=400_000, options=options)
    exact = float(expected_loss(setup, fit.W, fit.b))
    assert abs(fit.monte_carlo - exact) < 4 * fit.monte_carlo_stderr
    structure = TailOffset(6, 3, head=2)
    assert exact < float(expected_loss(setup, *structure.matrices(structure.theta_of(*start))))
    assert np.linalg.matrix_rank(fit.W[:, 2:], tol=1e-9) <= 1
    assert len(fit.start_losses) == 2


def test_bad_input_is_refused_with_a_message():
    with pytest.raises(InputError, match="head"):
        TailOffset(6, 3, head=6)
    with pytest.raises(InputError, match="decreasing"):
        minimize_tail_offset(Setup(3, 2, sparsity=0.5, importance=[0.5, 1.0, 0.2]), 1)
    with pytest.raises(InputError, match="no start"):
        minimize_tail_offset(_setup(), 2, random_starts=0)
