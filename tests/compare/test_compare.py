"""compare.phases and `tms-dropout compare phases`: the comparison Dataset, its summary and figures."""

import numpy as np
import pytest

from compare.phases import (
    check_config,
    compare_phases,
    load_comparison,
    near_boundary,
    shape_family,
    structure,
    summary,
)
from sim.config import TrainConfig
from sim.sweep import initial_weights
from tests.cli_helpers import run_cli
from tests.theory.diagrams import diagram
from theory import InputError, catalogue
from theory.metrics import superposition_onset

CONFIG = """
[model]
n_features = 2
n_hidden = 1

[grid]
sparsity = { density = [0.05, 1.0, 4] }
r = [0.5, 2.0]
p = [0.0, 0.4]
seeds = [0, 1]

[train]
steps = 2000
"""


def test_near_boundary_marks_both_sides_within_one_step():
    phase = np.array([[0, 0, 0, 1, 1], [0, 0, 0, 0, 1]])
    near = near_boundary(phase)
    expected = np.array([[0, 0, 1, 1, 1], [0, 0, 1, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(near, expected)
    assert not near_boundary(np.zeros((3, 3), dtype=int)).any()


def test_edge_is_the_largest_superposed_density():
    density = np.array([0.1, 0.3, 1.0])
    sup = np.array([[True, True, False], [False, False, False], [True, False, True]])
    edge = superposition_onset(density, sup)
    assert edge[0] == 0.3 and np.isnan(edge[1]) and edge[2] == 1.0


def test_config_must_match_the_analytic_grid():
    base = dict(n_features=2, n_hidden=1, importance=(1.0, 1.0), sparsity=(0.5,), p=(0.0,))
    with pytest.raises(InputError, match="needs an importance axis"):
        check_config(TrainConfig(**base))
    assert check_config(TrainConfig(**{**base, "importance_decay": (0.9,)})) == "importance_decay"
    with pytest.raises(InputError, match="grid.r sets the importance to"):
        check_config(TrainConfig(**{**base, "importance": (1.0, 0.5), "r": (1.0,)}))
    with pytest.raises(InputError, match="no catalogue"):
        check_config(
            TrainConfig(**{**base, "n_features": 4, "n_hidden": 3, "importance": (1.0,) * 4, "r": (1.0,)})
        )


def test_compare_phases_end_to_end(tmp_path, capsys):
    config = tmp_path / "two.toml"
    config.write_text(CONFIG)
    out = tmp_path / "cmp.nc"
    result = run_cli(capsys, "compare", "phases", str(config), "--out", str(out))
    assert result.returncode == 0, result.stderr
    for path in (
        out,
        tmp_path / "cmp.png",
        tmp_path / "cmp-edge.png",
        tmp_path / "cmp.md",
        tmp_path / "cmp-runs.nc",
    ):
        assert path.exists(), path
    ds = load_comparison(out)
    assert dict(ds.sizes)["seed"] == 2 and dict(ds.sizes)["sparsity"] == 4 and dict(ds.sizes)["r"] == 2
    labels = list(ds.label.values)
    assert labels[-1] == "unclassified" and "antipodal" in labels
    # The empirical optimum is the lowest-loss seed, and its gap is computed from it.
    best = ds.seed_loss.min("seed")
    np.testing.assert_allclose(ds.loss_gap, (best - ds.analytic_loss) / ds.analytic_loss)
    assert (ds.seed_loss_gap >= -1e-6).all()  # no trained model beats theory's optimum
    # The empirical phase is the label of the lowest-loss seed, and agreement is equality with theory's.
    chosen = ds.seed_label.isel(seed=ds.seed_loss.argmin("seed"))
    np.testing.assert_array_equal(ds.empirical_phase.values, chosen.values)
    np.testing.assert_array_equal(
        ds.agree_empirical.values, ds.empirical_phase.values == ds.analytic_phase.values
    )
    # The stored starting W is the sweep's: cell 1 is (seed 0, p 0, r 0.5, the second density).
    cfg = TrainConfig.from_toml(config)
    np.testing.assert_array_equal(ds.seed_init_W.values[0, 0, 0, 1], initial_weights(cfg, [1])[0])
    np.testing.assert_array_equal(
        ds.seed_init_W.values[1, 1, 1, 3], initial_weights(cfg, [cfg.n_cells - 1])[0]
    )
    rows = summary(ds)
    assert [r["p"] for r in rows] == [0.0, 0.4]
    for row in rows:
        agree = (ds.empirical_phase == ds.analytic_phase).sel(p=row["p"]).values
        assert row["agree_all"] == pytest.approx(agree.mean()) and row["cells"] == agree.size
    text = (tmp_path / "cmp.md").read_text()
    assert "| 0.4 |" in text and "empirical agrees" in text and "same shape" in text
    # 2 in 1 has no polygons: one shape per label, so shape agreement is label agreement
    np.testing.assert_array_equal(ds.agree_structure.values, ds.agree_empirical.values)
    # At p = 0.4 theory says antipodal on this whole grid, and training finds it.
    assert rows[1]["agree_all"] >= 0.75


def test_compare_phases_refuses_a_grid_without_r(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text(CONFIG.replace("r = [0.5, 2.0]\n", ""))
    result = run_cli(capsys, "compare", "phases", str(config), "--out", str(tmp_path / "x.nc"))
    assert result.returncode == 2
    assert "needs an importance axis" in result.stderr
    with pytest.raises(InputError, match="does not exist"):
        load_comparison(tmp_path / "nothing.nc")


THREE_IN_TWO = """
[model]
n_features = 3
n_hidden = 2

[grid]
sparsity = { density = [0.05, 0.3, 2] }
r = [0.5, 2.0]
p = [0.0]
seeds = [0, 1]

[train]
steps = 4000
"""


@pytest.mark.slow
def test_three_in_two_with_the_triangle_fitted_on_the_exact_loss(tmp_path):
    """3 in 2 has a polygon (the triangle): theory's side is theory.phase_diagram on the config's grid (the
    same numbers as running it alone at each r), and training agrees with it where the margin is wide.
    Slow (28 s from empty caches, 9 s warm): test_compare_phases_end_to_end runs the same pipeline at
    2 in 1 by default."""
    config = tmp_path / "three.toml"
    config.write_text(THREE_IN_TWO)
    ds = compare_phases(TrainConfig.from_toml(config), tmp_path / "runs.nc", log=lambda m: None)
    labels = list(ds.label.values)
    assert "triangle" in labels and ds.attrs["importance_axis"] == "r"
    for r in (0.5, 2.0):
        alone = diagram(3, 2, ds.density.values, [0.0], importance=[1.0, 1.0, r]).isel(p=0)
        np.testing.assert_allclose(
            ds.analytic_loss.sel(r=r, p=0.0).values, alone.optimal_loss.values, rtol=1e-9
        )
        np.testing.assert_array_equal(ds.analytic_phase.sel(r=r, p=0.0).values, alone.phase.values)
    assert (ds.seed_loss_gap >= -1e-6).all()  # no trained model beats theory's optimum
    # sparse: theory puts the most important feature on its own neuron (feature 2 at r = 2, feature 0
    # at r = 0.5) and pairs the others; every trained model there is some pair and dedicated feature,
    # in whatever rotation of the plane (a symmetry at p = 0), or the triangle
    for r, phase in ((2.0, "antipodal 0 1, dedicated 2"), (0.5, "antipodal 1 2, dedicated 0")):
        cell = ds.sel(p=0.0, r=r).isel(sparsity=0)
        assert labels[cell.analytic_phase.item()] == phase
        for index in cell.seed_label.values:
            assert "dedicated" in labels[index] or labels[index].startswith("triangle"), labels[index]


def test_structure_names_one_shape_once():
    """A square is two antipodal pairs (its diagonals); free vertices keep the regular shape."""
    geometries = {g.name: g for g in catalogue(5, 2)}
    square = structure(geometries["square, ignore 4"], [0, 1, 3, 2, -1])
    assert square == structure(geometries["antipodal 0 3 and 1 2, ignore 4"], [-1] * 5)
    assert square == structure(geometries["square, free vertices, ignore 4"], [0, 2, 3, 1, -1])
    assert square == "antipodal 0 3 and 1 2"
    assert structure(geometries["square, ignore 4"], [0, 1, 2, 3, -1]) == structure(
        geometries["two antipodal, ignore 4"], [-1] * 5
    )
    assert structure(geometries["pentagon"], [0, 1, 4, 3, 2]) == "pentagon 0 1 2 3 4"
    assert structure(geometries["pentagon, free vertices"], [0, 2, 1, 3, 4]) == "pentagon 0 1 2 3 4"
    assert structure(geometries["antipodal 0 1, dedicated 2"], [-1] * 5) == "antipodal 0 1, dedicated 2"
    assert structure(geometries["two dedicated"], [-1] * 5) == "dedicated 0, dedicated 1"
    assert structure(None, []) == "unclassified"
    two = {g.name: g for g in catalogue(2, 1)}
    assert structure(two["ignore all"], [-1, -1]) == "ignore all"
    assert structure(two["same-sign pair"], [-1, -1]) == "same-sign 0 1"
    assert (
        shape_family("antipodal 0 3 and 1 2") == shape_family("antipodal 0 1 and 2 3") == "2 antipodal pairs"
    )
    assert shape_family("pentagon 0 1 2 3 4") == "pentagon"
    assert shape_family("dedicated 0, dedicated 1") == "2 x dedicated"
    assert shape_family("antipodal 0 1, dedicated 2") == "1 antipodal pair, dedicated"
    assert shape_family("dedicated 0") == shape_family("dedicated 1") != shape_family("ignore all")
