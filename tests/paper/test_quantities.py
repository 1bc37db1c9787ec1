import numpy as np
import pytest
import xarray as xr

from paper.quantities import apart_pairs, factor_names, in_phase, phase_share, plane_gaps, worst_checked_cell
from theory.blocks import demicube_vertices


def _models(columns):
    """A Dataset of models in a plane, one per entry: W (model, hidden, feature) from feature angles in
    degrees (None: a column of zeros)."""
    W = np.array(
        [
            [[0.0, 0.0] if a is None else [np.cos(np.radians(a)), np.sin(np.radians(a))] for a in angles]
            for angles in columns
        ]
    ).transpose(0, 2, 1)
    return xr.Dataset({"W": (("model", "hidden", "feature"), W)})


def test_plane_gaps_go_round_the_circle():
    ds = _models([(90, 210, 330), (10, 190, 100), (45, 45, 225), (350, 20, 170)])
    gaps = plane_gaps(ds).values
    np.testing.assert_allclose(gaps[0], [120, 120, 120], atol=1e-9)  # regular triangle
    np.testing.assert_allclose(gaps[1], [90, 90, 180], atol=1e-9)  # antipodal pair and one between
    np.testing.assert_allclose(gaps[2], [0, 180, 180], atol=1e-9)  # two parallel, one opposite
    np.testing.assert_allclose(gaps[3], [30, 150, 180], atol=1e-9)  # across the 0 / 360 seam
    np.testing.assert_allclose(gaps.sum(-1), 360)
    np.testing.assert_allclose(plane_gaps(ds.W).values, gaps)  # W itself
    with pytest.raises(ValueError, match="two hidden units"):
        plane_gaps(xr.DataArray(np.ones((3, 4)), dims=("hidden", "feature")))


def test_phase_share_and_worst_checked_cell_read_the_right_cells():
    ds = xr.Dataset(
        {
            "phase": (("p", "cell"), [[0, 1, 1, 2], [2, 2, 2, 0]]),
            "optimal_loss": (("p", "cell"), [[1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 1.0, 1.0]]),
            "exact_minimum": (("p", "cell"), [[1.0, np.nan, 0.9, np.nan], [np.nan, 1.0, np.nan, 1.0]]),
        },
        coords={"p": [0.0, 0.4], "geometry": ["antipodal 0 1", "antipodal 0 2", "triangle"]},
    )
    assert phase_share(ds, 0.0, "antipodal") == 0.75
    assert phase_share(ds, 0.4, "triangle") == 0.75
    assert phase_share(ds, 0.4, "pentagon") == 0.0
    expected = [[True, True, True, False], [False, False, False, True]]
    assert in_phase(ds, "antipodal 0").values.tolist() == expected
    assert in_phase(ds, "triangle").dims == ("p", "cell")
    worst = worst_checked_cell(ds)
    assert (float(worst.p), float(worst.optimal_loss), float(worst.exact_minimum)) == (0.4, 2.0, 1.0)


def test_factor_names_name_each_model_by_its_factors():
    cube = 1.1 * demicube_vertices(5).T  # (5, 16)
    pairs = np.zeros((5, 16))
    pairs[np.arange(5), np.arange(5)], pairs[np.arange(5), np.arange(5, 10)] = 1.0, -1.0
    W = xr.DataArray(np.stack([cube, pairs]), dims=("p", "hidden", "feature"), coords={"p": [0.0, 0.4]})
    names = factor_names(W)
    assert names.dims == ("p",)
    assert names.values.tolist() == ["5-demicube", " + ".join(["antipodal pair"] * 5)]


def test_apart_pairs_counts_the_pairs_on_features_not_next_to_each_other():
    composite = [
        "dedicated 0, antipodal 1 8, antipodal 2 7, antipodal 3 6, antipodal 4 5, ignore 9-19",
        "antipodal 0 1, same-sign 2 4, pentagon, free angles 6 7 10 9 8, ignore 11-19",
        "square, free vertices 0 1 3 2, 5-simplex 4 5 6 7 8 9",
    ]
    ds = xr.Dataset({"composite": ("sparsity", composite)}, coords={"sparsity": [0.9, 0.8, 0.7]})
    assert apart_pairs(ds).values.tolist() == [3, 1, 0]
