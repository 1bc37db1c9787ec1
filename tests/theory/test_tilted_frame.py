"""theory.tilted_frame: the head of the head + tail structure at one angle about the tail's direction."""

import numpy as np
import pytest

from theory import InputError, Setup, expected_loss
from theory.compiled_loss import expected_loss_and_grad_compiled, expected_loss_compiled
from theory.tilted_frame import TiltedFrame, head_cosine, minimize_tilted_frame, simplex_vertices


def _setup(n=6, m=3, p=0.3, density=0.6):
    return Setup(n, m, sparsity=1 - density, importance=0.8 ** np.arange(n), p=p)


def _theta(structure, setup, seed=0, alpha=0.3):
    rng = np.random.default_rng(seed)
    theta = structure.random_theta(setup, rng)
    theta[0] = alpha
    head = slice(1 + structure.turns, 1 + structure.turns + structure.m)
    theta[head] = rng.uniform(0.5, 1.2, structure.m)
    theta[head.stop : head.stop + structure.n - structure.m] = rng.uniform(
        0.05, 0.4, structure.n - structure.m
    )
    theta[-structure.n :] = rng.normal(0, 0.2, structure.n)
    return theta


@pytest.mark.parametrize("m", [2, 3, 5, 6])
def test_simplex_vertices_are_unit_centred_and_equiangular(m):
    vertices = simplex_vertices(m)
    assert vertices.shape == (m - 1, m)
    np.testing.assert_allclose(np.linalg.norm(vertices, axis=0), 1.0, atol=1e-12)
    np.testing.assert_allclose(vertices.sum(axis=1), 0.0, atol=1e-12)
    gram = vertices.T @ vertices
    np.testing.assert_allclose(gram[~np.eye(m, dtype=bool)], -1 / (m - 1), atol=1e-12)


@pytest.mark.parametrize(("n", "m", "head"), [(6, 3, [0, 2, 5]), (20, 5, [0, 1, 2, 3, 4])])
def test_the_head_is_at_one_angle_about_the_one_tail_direction(n, m, head):
    structure = TiltedFrame(n, m, head)
    setup = Setup(n, m, sparsity=0.4, importance=np.ones(n), p=0.2)
    alpha = 0.35
    W, _ = structure.matrices(_theta(structure, setup, alpha=alpha))
    U = W[:, head] / np.linalg.norm(W[:, head], axis=0)
    tail = W[:, structure.tail_features]
    assert np.linalg.matrix_rank(tail, tol=1e-10) == 1
    v = tail[:, 0] / np.linalg.norm(tail[:, 0])
    np.testing.assert_allclose(v @ U, -alpha, atol=1e-12)
    gram = U.T @ U
    np.testing.assert_allclose(gram[~np.eye(m, dtype=bool)], head_cosine(alpha, m), atol=1e-12)
    assert abs(head_cosine(1 / np.sqrt(m), m)) < 1e-12  # the orthonormal frame


def test_the_gradient_is_the_chain_rule():
    """Against central differences of the exact loss (compiled; smooth, unlike a sampled loss with its
    kinks)."""
    setup = _setup()
    structure = TiltedFrame(6, 3, [0, 2, 5])
    theta = _theta(structure, setup)
    exact = expected_loss_and_grad_compiled(setup, *structure.matrices(theta))
    grad = structure.pull_back(theta, np.asarray(exact.grad_W), np.asarray(exact.grad_b))

    def f(x):
        return float(expected_loss_compiled(setup, *structure.matrices(x)))

    h = 1e-6
    numeric = np.array([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in np.eye(structure.size)])
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_the_nearest_structure_to_a_structured_model_is_itself_or_its_mirror():
    """A model of the structure comes back as itself; its mirror image in the first unit (no rotation
    reaches it from the unturned frame) comes back as the model, with the same W^T W and loss."""
    setup = _setup()
    structure = TiltedFrame(6, 3, [1, 3, 4])
    W, b = structure.matrices(_theta(structure, setup, seed=2))
    back = structure.matrices(structure.theta_of(W, b))
    np.testing.assert_allclose(back[0], W, atol=1e-10)
    np.testing.assert_allclose(back[1], b)
    mirrored = W.copy()
    mirrored[0] *= -1
    again, _ = structure.matrices(structure.theta_of(mirrored, b))
    np.testing.assert_allclose(again, W, atol=1e-10)
    np.testing.assert_allclose(expected_loss(setup, again, b), expected_loss(setup, mirrored, b), rtol=1e-12)


def test_the_fit_is_scored_on_the_models_own_loss_and_improves_on_its_start():
    """At 6 in 3 the exact loss reaches: the end point's Monte Carlo score is its exact loss, it has the
    structure's shape, and it ends below the structure nearest its start."""
    setup = _setup()
    rng = np.random.default_rng(3)
    start = (rng.normal(0, 0.5, (3, 6)), np.zeros(6))
    options = {"maxiter": 100, "ftol": 1e-10, "gtol": 1e-8}
    fit = minimize_tilted_frame(
        setup, [0, 1, 2], [start], random_starts=1, seed=4, rescore=400_000, options=options
    )
    exact = float(expected_loss(setup, fit.W, fit.b))
    assert abs(fit.monte_carlo - exact) < 4 * fit.monte_carlo_stderr
    structure = TiltedFrame(6, 3, [0, 1, 2])
    nearest = structure.matrices(structure.theta_of(*start))
    assert exact < float(expected_loss(setup, *nearest))
    assert len(fit.start_losses) == 2 and fit.best_start == int(np.argmin(fit.start_losses))
    U = fit.W[:, :3] / np.linalg.norm(fit.W[:, :3], axis=0)
    np.testing.assert_allclose((U.T @ U)[np.triu_indices(3, 1)], head_cosine(fit.tilt, 3), atol=1e-9)


@pytest.mark.parametrize(
    ("n", "m", "head"),
    [
        (6, 3, [0, 1]),
        (6, 3, [0, 1, 1]),
        (6, 3, [0, 1, 6]),
        (3, 3, [0, 1, 2]),
        (4, 1, [0]),
        (6, 3, [0.0, 1, 2]),
    ],
)
def test_bad_heads_are_refused(n, m, head):
    with pytest.raises(InputError, match="tilted frame"):
        TiltedFrame(n, m, head)


def test_bad_fits_are_refused():
    with pytest.raises(InputError, match="no start"):
        minimize_tilted_frame(_setup(), [0, 1, 2], random_starts=0)
    with pytest.raises(InputError, match="theory.Setup"):
        minimize_tilted_frame("setup", [0, 1, 2])
