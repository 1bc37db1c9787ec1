"""Dropout groups (Setup.dropout_groups): units of one group are dropped together."""

import numpy as np
import pytest

from theory import InputError, Setup, expected_loss, expected_loss_and_grad, metrics, optimal
from theory.compiled_loss import expected_loss_and_grad_compiled
from theory.direct_diagram import direct_diagram
from theory.grid import Grid
from theory.lone_feature import lone_feature_optimum
from theory.montecarlo import monte_carlo_loss


def test_groups_are_validated_and_stored_canonically():
    assert Setup(3, 4, dropout_groups=[7, 7, 2, 2]).dropout_groups == (0, 0, 1, 1)
    assert Setup(3, 4, dropout_groups=np.array([5, 1, 5, 1])).dropout_groups == (0, 1, 0, 1)
    # every unit its own group is today's dropout, whatever the labels
    assert Setup(3, 2, dropout_groups=[4, 9]) == Setup(3, 2)
    assert Setup(3, 2, dropout_groups=[4, 9]).dropout_groups is None
    setup = Setup(3, 4, dropout_groups=[1, 0, 1, 2])
    assert setup.n_groups == 3
    np.testing.assert_array_equal(setup.unit_groups, [0, 1, 0, 2])
    np.testing.assert_array_equal(setup.group_leaders, [0, 1, 0, 3])
    assert setup.to_dict()["dropout_groups"] == [0, 1, 0, 2]
    assert "dropout_groups" not in Setup(3, 2).to_dict()
    assert Setup(**setup.to_dict()) == setup
    for bad, message in (
        ([0, 1], "needs one per hidden unit"),
        ([0.5, 0, 1, 1], "must be integers"),
        ([True, 0, 1, 1], "must be integers"),
        ("0011", "one integer label per hidden unit"),
        (3, "one integer label per hidden unit"),
    ):
        with pytest.raises(InputError, match=message):
            Setup(3, 4, dropout_groups=bad)


def _random_model(setup, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.7, (setup.n_hidden, setup.n_features)), rng.normal(0, 0.15, setup.n_features)


GROUPED = [
    Setup(3, 2, sparsity=0.4, importance=[1.0, 0.8, 0.5], p=0.3, dropout_groups=[0, 0]),
    Setup(4, 4, sparsity=0.7, p=0.45, dropout_groups=[0, 0, 1, 1]),
    Setup(4, 3, sparsity=[0.2, 0.5, 0.9, 0.95], p=0.2, dropout_groups=[0, 1, 0]),
    Setup(5, 4, sparsity=0.9, importance=0.9 ** np.arange(5), p=0.6, dropout_groups=[2, 2, 2, 0]),
]


@pytest.mark.parametrize("setup", GROUPED)
def test_grouped_loss_matches_monte_carlo_and_differs_from_independent_dropout(setup):
    W, b = _random_model(setup, setup.n_hidden)
    exact = float(expected_loss(setup, W, b))
    mc = monte_carlo_loss(setup, W, b, n_samples=1_000_000, seed=3)
    assert abs(exact - mc.mean) <= 5 * mc.stderr
    independent = float(expected_loss(setup.with_(dropout_groups=None), W, b))
    assert abs(independent - mc.mean) > 10 * mc.stderr  # the check can tell the two laws apart


@pytest.mark.parametrize("setup", GROUPED)
def test_compiled_grouped_loss_and_gradient_are_the_reference(setup):
    W, b = _random_model(setup, 1)
    reference = expected_loss_and_grad(setup, W, b)
    compiled = expected_loss_and_grad_compiled(setup, W, b)
    assert float(compiled.loss) == pytest.approx(float(reference.loss), rel=1e-12)
    np.testing.assert_allclose(compiled.grad_W, reference.grad_W, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(compiled.grad_b, reference.grad_b, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_one_group_is_a_mixture_of_the_whole_layer_kept_and_dropped(p):
    """With every unit in one group: L = (1 - p) L_0(W / sqrt(1 - p), b) + p sum_i I_i E(x_i - b_i+)^2."""
    importance = np.array([1.0, 0.6, 0.3])
    setup = Setup(3, 2, sparsity=[0.3, 0.6, 0.8], importance=importance, p=p, dropout_groups=[0, 0])
    W, b = _random_model(setup, 7)
    b[0] = 0.2  # one positive bias: the dropped layer's output
    kept = float(expected_loss(setup.with_(p=0.0, dropout_groups=None), W / np.sqrt(1 - p), b))
    d, bias = setup.density, np.maximum(b, 0)
    dropped = float(importance @ (d / 3 - d * bias + bias**2))
    assert float(expected_loss(setup, W, b)) == pytest.approx((1 - p) * kept + p * dropped, rel=1e-12)


def test_group_metrics_on_known_matrices():
    W = np.array([[1.0, 0.0, 0.6], [0.0, 1.0, 0.0], [0.0, 0.0, 0.8], [0.0, 0.0, 0.0]])
    groups = [0, 0, 1, 1]
    np.testing.assert_allclose(metrics.group_norms_squared(W, groups), [[1, 1, 0.36], [0, 0, 0.64]])
    per_feature = metrics.groups_per_feature(W, groups)
    np.testing.assert_allclose(per_feature, [1.0, 1.0, 1.0 / (0.36**2 + 0.64**2)])
    np.testing.assert_allclose(metrics.group_dimensions_per_feature(W, groups), [2 / 2.36, 2 / 0.64])
    assert np.isnan(metrics.groups_per_feature(np.zeros((4, 1)), groups)).all()


def test_closed_forms_refuse_groups_and_geometries_fit_on_the_exact_loss():
    setup = Setup(3, 2, sparsity=0.8, p=0.3, dropout_groups=[0, 0])
    from theory.geometries import setup_args

    with pytest.raises(InputError, match="dropout_groups"):
        setup_args(setup)
    found = optimal(setup)
    assert found.loss == pytest.approx(found.fitted_loss, rel=1e-9)  # fitted on the grouped exact loss
    assert found.loss == pytest.approx(float(expected_loss(setup, found.W, found.b)), rel=1e-12)


def test_grid_reads_groups_from_a_config(tmp_path):
    path = tmp_path / "groups.toml"
    model = "[model]\nn_features = 5\nn_hidden = 4\n"
    path.write_text(model + "dropout_groups = [3, 3, 1, 1]\n[grid]\np = [0.2]\n")
    grid = Grid.from_toml(path)
    assert grid.dropout_groups == (0, 0, 1, 1)
    assert grid.setups()[0, 0, 0].dropout_groups == (0, 0, 1, 1)
    assert Grid(**grid.to_dict()) == grid
    path.write_text(model + "dropout_groups = [0, 1]\n")
    with pytest.raises(InputError, match="model.dropout_groups has 2 labels"):
        Grid.from_toml(path)
    path.write_text(model + 'dropout_groups = "a"\n')
    with pytest.raises(InputError, match="list of integers"):
        Grid.from_toml(path)


def test_direct_diagram_finds_the_turned_pair_and_checks_itself():
    """2 features in 2 units, sparse, p = 0.3: dropped one unit at a time, the optimum over all W, b writes
    both features into both units (an antipodal pair along a diagonal: each survives either unit's loss),
    the catalogue's turned pair, below two dedicated features; dropped together, nothing is gained by
    spreading."""
    sparsity = (0.95, 0.5)
    one_each = direct_diagram(Grid(2, 2, sparsity, p=(0.3,)), n_starts=6, progress=False)
    together = direct_diagram(Grid(2, 2, sparsity, (0.3,), dropout_groups=(0, 0)), n_starts=6, progress=False)
    for ds in (one_each, together):
        z = (ds.monte_carlo - ds.optimal_loss) / ds.monte_carlo_stderr
        assert (abs(z) < 5).all()
    sparse = dict(p=0.3, sparsity=0.95)
    catalogue = optimal(Setup(2, 2, sparsity=0.95, p=0.3))
    assert catalogue.name == "turned pair" and catalogue.runner_up == "2 dedicated"
    assert float(one_each.optimal_loss.sel(**sparse)) == pytest.approx(catalogue.loss, rel=1e-6)
    assert catalogue.loss < 0.8 * catalogue.runner_up_loss
    np.testing.assert_allclose(one_each.groups_per_feature.sel(**sparse), 2.0, atol=0.05)
    # Dropped together, spreading buys nothing (the loss is rotation-invariant), and two orthogonal
    # dedicated features (each the lone feature's optimum) lose the same whether their units fail together
    # or apart; the grouped optimum is within 0.1% of them (0.03% below: a slight negative overlap)
    lone = lone_feature_optimum(0.05, 0.3)
    W, b = np.sqrt(lone.norm_squared) * np.eye(2), np.full(2, float(lone.bias))
    dedicated = float(expected_loss(Setup(2, 2, sparsity=0.95, p=0.3), W, b))
    assert dedicated == pytest.approx(catalogue.runner_up_loss, rel=1e-9)
    grouped = float(expected_loss(Setup(2, 2, sparsity=0.95, p=0.3, dropout_groups=[0, 0]), W, b))
    assert grouped == pytest.approx(dedicated, rel=1e-12)
    together_loss = float(together.optimal_loss.sel(**sparse))
    assert dedicated * 0.999 < together_loss <= dedicated


def test_direct_diagram_refuses_what_it_cannot_do():
    with pytest.raises(InputError, match="exact loss"):
        direct_diagram(Grid(13, 2, (0.9,)))
    with pytest.raises(InputError, match="n_starts"):
        direct_diagram(Grid(2, 2, (0.9,)), n_starts=0)


def test_direct_diagram_minimises_every_cell_on_its_own_setup():
    """Cells of several p are minimised in one batch: each optimum's loss is its own cell's exact loss."""
    grid = Grid(2, 2, (0.9,), p=(0.0, 0.4), dropout_groups=(0, 0))
    ds = direct_diagram(grid, n_starts=2, samples=1 << 14, progress=False)
    for p in grid.p:
        cell = ds.sel(p=p).isel(sparsity=0)
        W, b = cell.W.transpose("hidden", "feature").values, cell.b.values
        exact = float(expected_loss(grid.setup(p, None, 0.9), W, b))
        assert float(cell.optimal_loss) == pytest.approx(exact, rel=1e-9, abs=1e-15)
