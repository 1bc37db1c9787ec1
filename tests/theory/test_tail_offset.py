"""theory.tail_offset: a free head and the other features along one shared direction, on the sampled loss."""

import numpy as np
import pytest

from theory import Grid, InputError, Setup, expected_loss, phase_diagram
from theory.candidates import catalogue
from theory.diagram import flat_cell
from theory.montecarlo import monte_carlo_loss
from theory.sampled import RESCORE_SAMPLES, SampledLoss
from theory.tail_offset import FRAME_RANDOM_STARTS, TAILS, TailOffset, minimize_tail_offset, search_structures


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


def test_a_head_named_by_index_is_free_and_the_rest_one_direction():
    """A head of features 1 and 4 (not the first two): their columns free, the others along v, the
    gradient the chain rule, and the nearest structure to a structured model itself."""
    setup = _setup()
    structure = TailOffset(6, 3, head=[4, 1])
    assert list(structure.head_features) == [1, 4] and list(structure.tail_features) == [0, 2, 3, 5]
    rng = np.random.default_rng(5)
    theta = rng.normal(0, 0.4, structure.size)
    theta[3 * 2 + 3 : 3 * 2 + 3 + 4] = np.abs(theta[3 * 2 + 3 : 3 * 2 + 3 + 4])
    W, b = structure.matrices(theta)
    H, v, t, _ = structure.unpack(theta)
    np.testing.assert_array_equal(W[:, [1, 4]], H)
    np.testing.assert_allclose(W[:, [0, 2, 3, 5]], np.outer(v, t), rtol=1e-15)
    objective = SampledLoss.draw(setup, 4000, seed=1)
    grad = structure.pull_back(theta, *objective.loss_and_grad(W, b)[1:])
    h = 1e-6
    numeric = [
        (objective.loss_and_grad(*structure.matrices(theta + h * e))[0]
         - objective.loss_and_grad(*structure.matrices(theta - h * e))[0]) / (2 * h)
        for e in np.eye(structure.size)
    ]  # fmt: skip
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
    v = v / np.linalg.norm(v)
    W = np.zeros((3, 6))
    W[:, [1, 4]] = H
    W[:, [0, 2, 3, 5]] = np.outer(v, [0.3, 0.1, 0.2, 0.05])
    np.testing.assert_allclose(structure.matrices(structure.theta_of(W, b))[0], W, atol=1e-12)


def test_a_head_by_index_needs_no_order_of_importance():
    """Importances out of order are refused for a counted head, not for one named by index; the fit
    keeps the named head's columns free and the rest along one direction."""
    setup = Setup(5, 2, sparsity=0.4, importance=[0.5, 1.0, 0.2, 0.3, 0.1], p=0.2)
    options = {"maxiter": 60, "ftol": 1e-10, "gtol": 1e-8}
    fit = minimize_tail_offset(setup, [1], random_starts=2, seed=1, rescore=100_000, options=options)
    assert list(fit.head) == [1]
    assert np.linalg.matrix_rank(fit.W[:, [0, 2, 3, 4]], tol=1e-9) <= 1
    for bad in ([1, 1], [5], [0, 1, 2, 3, 4], [[0]], [0.5]):
        with pytest.raises(InputError, match="head"):
            TailOffset(5, 2, head=bad)


@pytest.mark.slow  # 12 s: a diagram with its search, 16 fits, each re-scored on 2^21 samples
def test_the_structure_is_fitted_where_the_search_wins_and_scored_on_its_stream():
    """5 features in 2 dims, two p, two importance profiles and two densities, the search taken as the
    optimum at every cell: the head is what the search represents, the tail one direction (with one
    norm, one norm), the Monte Carlo score the structure's exact loss, and the search's own score is
    reproduced from the last cell's seed (the structure's stream). A diagram without a search has no
    cell to fit."""
    grid = Grid(n_features=5, n_hidden=2, sparsity=[0.0, 0.4], p=[0.2, 0.4], importance_decay=[0.5, 0.7])
    diagram = phase_diagram(grid, catalogue(5, 2)[:3], search=True, progress=False)
    diagram["search_wins"][:] = True
    options = {"maxiter": 40, "ftol": 1e-10, "gtol": 1e-8}
    ds = search_structures(diagram, progress=False, options=options)
    assert set(ds.head_size.dims) == {"p", "importance_decay", "sparsity"}
    assert ((ds.head_size >= 1) & (ds.head_size < 5)).all()
    frames = 0
    for k, a, i in np.ndindex(len(grid.p), len(grid.labels), len(grid.sparsity)):
        cell = {"p": k, "importance_decay": a, "sparsity": i}
        setup = grid.setup(grid.p[k], grid.labels[a], grid.sparsity[i])
        W = diagram.search_W[cell].transpose("hidden", "feature").values
        head = np.linalg.norm(W, axis=0) > 0.5
        assert int(ds.head_size[cell]) == head.sum()
        for t, equal in enumerate(TAILS.values()):
            fitted_W = ds.structure_W[cell].isel(tail=t).transpose("hidden", "feature").values
            tail = fitted_W[:, ~head]
            assert np.linalg.matrix_rank(tail, tol=1e-9) <= 1
            if equal:
                np.testing.assert_allclose(
                    np.linalg.norm(tail, axis=0), np.linalg.norm(tail[:, 0]), rtol=1e-9
                )
            exact = float(expected_loss(setup, fitted_W, ds.structure_b[cell].isel(tail=t).values))
            score = float(ds.structure_loss[cell].isel(tail=t))
            assert abs(score - exact) < 4 * float(ds.structure_stderr[cell].isel(tail=t)), (score, exact)
        if head.sum() != 2:  # the tilted frame only where the head has one feature per unit
            assert np.isnan(float(ds.frame_loss[cell])) and int(ds.frame_best_start[cell]) == -1
            continue
        frames += 1
        frame_W = ds.frame_W[cell].transpose("hidden", "feature").values
        U = frame_W[:, head] / np.linalg.norm(frame_W[:, head], axis=0)
        v = frame_W[:, ~head].sum(1) / np.linalg.norm(frame_W[:, ~head].sum(1))
        np.testing.assert_allclose(v @ U, -float(ds.frame_tilt[cell]), atol=1e-9)
        np.testing.assert_allclose(U[:, 0] @ U[:, 1], float(ds.frame_head_cosine[cell]), atol=1e-9)
        exact = float(expected_loss(setup, frame_W, ds.frame_b[cell].values))
        assert abs(float(ds.frame_loss[cell]) - exact) < 4 * float(ds.frame_stderr[cell])
        assert float(ds.frame_ratio[cell]) == float(ds.frame_loss[cell]) / float(ds.search_loss[cell])
        assert 0 <= int(ds.frame_best_start[cell]) <= FRAME_RANDOM_STARTS
    assert frames
    assert ds.attrs["frame_random_starts"] == FRAME_RANDOM_STARTS
    again = monte_carlo_loss(
        setup, W, diagram.search_b[cell].values, n_samples=RESCORE_SAMPLES, seed=flat_cell(grid, k, a, i) + 2
    )
    assert again.mean == float(diagram.search_loss[cell])
    fitted = ds.isel(cell | {"tail": 0})
    same_stream = monte_carlo_loss(
        setup,
        fitted.structure_W.transpose("hidden", "feature").values,
        fitted.structure_b.values,
        n_samples=RESCORE_SAMPLES,
        seed=flat_cell(grid, k, a, i) + 2,
    )
    assert same_stream.mean == float(fitted.structure_loss)
    unsearched = diagram.drop_vars([name for name in diagram.data_vars if name.startswith("search_")])
    none = search_structures(unsearched)
    assert (none.head_size == -1).all() and none.structure_loss.isnull().all()
    assert none.frame_loss.isnull().all() and (none.frame_best_start == -1).all()
