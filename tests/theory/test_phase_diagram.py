"""Analytic phases: the catalogue's optimum against the exact loss's global minimum."""

import numpy as np
import pytest
import xarray as xr

from tests.theory.diagrams import diagram
from theory import (
    Grid,
    InputError,
    Setup,
    catalogue,
    completeness,
    expected_loss,
    minimize_loss,
    optimal,
    phase_diagram,
)
from theory.closed_fit import closed_form
from theory.fits import rank
from theory.phase_plots import PALETTE, colours_for, phase_boundaries


@pytest.mark.parametrize(
    "density, r, p",
    [(0.05, 1.0, 0.0), (0.3, 0.5, 0.15), (0.7, 2.0, 0.4), (0.02, 5.0, 0.4), (1.0, 0.3, 0.15)],
)
def test_catalogue_optimum_matches_global_minimum_of_exact_loss(density, r, p):
    setup = Setup(2, 1, sparsity=1 - density, importance=[1.0, r], p=p)
    best = optimal(setup)
    exact_min = minimize_loss(setup, n_starts=16).loss
    assert best.loss == pytest.approx(best.fitted_loss, rel=1e-10)
    assert best.loss == pytest.approx(exact_min, rel=1e-5)
    # The runner-up is the optimum of the catalogue without the winner, fitted on its own.
    rest = optimal(setup, tuple(g for g in catalogue(2, 1) if g.name != best.name))
    assert best.runner_up == rest.name
    assert best.margin == pytest.approx(rest.fitted_loss - best.fitted_loss, rel=1e-6)


def published_p0_losses(density, ratio) -> dict[str, np.ndarray]:
    """The published p = 0 candidates for 2 features in 1 dim, from the catalogue's closed forms:
    W = [1, 0] (bias of the dropped feature s/2), [0, 1] (likewise), [1, -1] (biases 0); (density, r)."""
    D, R = np.meshgrid(np.asarray(density, float), np.asarray(ratio, float), indexing="ij")
    cells = D.size
    args = np.c_[D.ravel(), D.ravel(), np.ones(cells), R.ravel(), np.zeros(cells)]
    one, zero, half = np.ones(cells), np.zeros(cells), D.ravel() / 2
    fixed = {  # the parameters of each candidate by name; an ignored feature's bias is s/2
        "dedicated 0": {"w_0": one, "b_0": zero, "b_1": half},
        "dedicated 1": {"w_1": one, "b_1": zero, "b_0": half},
        "antipodal": {"w_0": one, "b_0": zero, "w_1": one, "b_1": zero},
    }
    out = {}
    by_name = {g.name: g for g in catalogue(2, 1)}
    for name, values in fixed.items():
        closed = closed_form(by_name[name])
        theta = np.stack([values[t.name] for t in closed.parameters()], axis=1)
        out[name] = closed.evaluate(theta, args).value.reshape(D.shape)
    return out


def test_published_p0_boundary_is_reproduced_to_grid_resolution():
    density = np.linspace(0.005, 1.0, 400)
    ratio = np.geomspace(0.1, 10, 9)
    losses = published_p0_losses(density, ratio)
    antipodal_wins = losses["antipodal"] < np.minimum(losses["dedicated 0"], losses["dedicated 1"])
    step = density[1] - density[0]
    for j, r in enumerate(ratio):
        predicted = min(4 * r / (2 + 5 * r), 4 / (5 + 2 * r))
        boundary = density[antipodal_wins[:, j]].max()
        assert abs(boundary - predicted) <= step
        # and the closed forms themselves: s^2 (1 + r)/6 etc.
        np.testing.assert_allclose(losses["antipodal"][:, j], (1 + r) * density**2 / 6, rtol=1e-12)


def test_nested_geometries_tie_to_the_simplest():
    # An antipodal pair with one norm at 0 is a dedicated feature: equal losses go to fewer parameters.
    losses = np.array([[0.5, 0.2, 0.3, 0.2 * (1 + 1e-12)], [0.5, 0.2, 0.3, 0.1]])
    ranking = rank(losses, [2, 3, 3, 4])
    assert ranking.phase.tolist() == [1, 3]
    assert ranking.runner_up.tolist() == [2, 1]
    np.testing.assert_allclose(ranking.margin, [0.1, 0.1])


def test_small_phase_diagram_is_consistent_and_checked_by_the_exact_loss():
    ds = diagram(2, 1, [0.05, 0.5, 1.0], [0.0, 0.4], r=[0.3, 3.0])
    assert dict(ds.phase.sizes) == {"p": 2, "r": 2, "density": 3}
    np.testing.assert_allclose(ds.exact_loss, ds.optimal_loss, rtol=1e-10)
    # margin: the runner-up geometry's own loss over the winner's, read from the per-geometry losses
    runner_up_loss = ds.loss.isel(geometry=ds.runner_up).values
    np.testing.assert_allclose(ds.margin, runner_up_loss - ds.optimal_loss.values, rtol=1e-9, atol=1e-15)
    assert float(ds.optimal_loss.min()) > 0
    checked = completeness(ds.swap_dims(density="sparsity"), cells=2, n_starts=8)
    sampled = np.isfinite(checked.exact_minimum)
    assert int(sampled.sum()) == 4
    assert np.all(checked.exact_minimum.values[sampled] <= checked.optimal_loss.values[sampled] * (1 + 1e-6))
    # the minimum's W and b are stored beside its loss: the exact loss of them is that loss
    for cell in np.argwhere(sampled.values):
        at = checked.isel(dict(zip(sampled.dims, cell, strict=True)))
        setup = Setup(2, 1, sparsity=float(at.sparsity), importance=at.importance.values, p=float(at.p))
        assert float(expected_loss(setup, at.exact_W.values, at.exact_b.values)) == pytest.approx(
            float(at.exact_minimum), rel=1e-12
        )
    assert np.isnan(checked.exact_W.values[~sampled.values]).all()


def test_bad_grids_are_one_clear_error():
    with pytest.raises(InputError, match="grid.sparsity is empty"):
        Grid(2, 1, sparsity=(), r=(1.0,))
    with pytest.raises(InputError, match=r"grid.p\[0\] = 1.0 is not allowed; it must be in \[0, 1\)"):
        Grid(2, 1, sparsity=(0.5,), p=(1.0,))
    with pytest.raises(InputError, match="is for \\(2, 1\\), not \\(4, 2\\)"):
        phase_diagram(Grid(4, 2, sparsity=(0.5,)), catalogue(2, 1))
    with pytest.raises(InputError, match="needs a theory.Grid"):
        phase_diagram({"n_features": 2})
    with pytest.raises(InputError, match="cells = 0 is not allowed"):
        completeness(xr.Dataset(), cells=0)


def test_a_failed_fit_never_wins_a_cell():
    losses = np.array([[0.5, np.nan, 0.3, 0.1], [np.nan, np.nan, 0.3, 0.2]])
    ranking = rank(losses, [2, 3, 3, 4])
    assert ranking.phase.tolist() == [3, 3]
    assert ranking.runner_up.tolist() == [2, 2]
    np.testing.assert_allclose(ranking.margin, [0.2, 0.1])


def test_phases_get_distinct_colours_or_a_clear_error():
    """One colour per phase, never one reused: past the palette's end, an error that says so."""
    colours = colours_for(len(PALETTE))
    assert len(set(colours)) == len(colours) == len(PALETTE)
    with pytest.raises(ValueError, match="add colours to PALETTE"):
        colours_for(len(PALETTE) + 1)


def test_phase_boundaries_draw_one_line_per_cell_edge_between_phases():
    """A jump of several phase indices is one boundary, on the cell edge between the two cells (a contour
    of the index drew one line per level in between), and cells of one phase draw none."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    phase = np.array([[0, 5, 5], [0, 0, 5]])  # rows: y cells, columns: x cells
    x_edges, y_edges = np.array([1.0, 2.0, 4.0, 8.0]), np.array([10.0, 20.0, 30.0])
    assert phase_boundaries(ax, x_edges, y_edges, phase, colors="k")
    (lines,) = ax.collections
    segments = sorted(tuple(map(tuple, s.round(9).tolist())) for s in lines.get_segments())
    assert segments == sorted(
        [
            ((2.0, 10.0), (2.0, 20.0)),  # row 0: between columns 0 and 1
            ((4.0, 20.0), (4.0, 30.0)),  # row 1: between columns 1 and 2
            ((2.0, 20.0), (4.0, 20.0)),  # column 1: between rows 0 and 1
        ]
    )
    assert not phase_boundaries(ax, x_edges, y_edges, np.full((2, 3), 4), colors="k")
    assert len(ax.collections) == 1
    plt.close(fig)
