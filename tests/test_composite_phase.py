"""Composite phase diagrams (20 in 5): the sum over blocks checked against the exact loss, whole-geometry
fits, the 3-in-2 catalogue, and Monte Carlo at n = 20."""

import numpy as np
import pytest

from tests.cli_helpers import run_cli
from theory import InputError, Setup
from theory.composite_phase import composite_diagram, shapes, structure_name, structures
from theory.geometries import Geometry, dedicated, free_polygon, irregular_polygon, polygon
from theory.montecarlo import monte_carlo_loss
from theory.sparsity_phase import candidates, density_diagram


@pytest.fixture(scope="module")
def four_in_three():
    return composite_diagram(4, 3, 0.8, [0.05, 0.6], [0.0, 0.3], max_polygon=3)


def test_sum_over_blocks_is_the_exact_loss_of_the_assembled_model(four_in_three):
    ds = four_in_three
    # theory.expected_loss of the assembled (W, b), all four features at once, against the sum of
    # block losses scaled by decay**first
    np.testing.assert_allclose(ds.exact_loss.values, ds.optimal_loss.values, rtol=1e-10)
    assert (ds.represented.values >= 1).all()


@pytest.mark.slow
def test_a_structure_is_the_best_of_its_arrangements_fitted_whole(four_in_three):
    """triangle + dedicated in 4 in 3: both arrangements, the triangle regular, with free vertices and with
    free angles, each fitted as one geometry on the exact loss."""
    G = Geometry
    whole = []
    for name, block in (("", polygon), (" free vertices", free_polygon), (" free angles", irregular_polygon)):
        whole += [
            G(f"triangle 0 1 2{name}, dedicated 3", 4, 3, (block((0, 1, 2), (0, 1)), dedicated(3, 2))),
            G(f"dedicated 0, triangle 1 2 3{name}", 4, 3, (dedicated(0, 0), block((1, 2, 3), (1, 2)))),
        ]
    ds = four_in_three
    reference = density_diagram(4, 3, 0.8 ** np.arange(4), ds.density.values, ds.p.values, tuple(whole))
    names = list(ds.geometry.values)
    composite = ds.loss.values[..., names.index("triangle + dedicated")]
    np.testing.assert_allclose(composite, reference.loss.values.min(-1), rtol=1e-6)


def test_three_in_two_matches_the_catalogue_where_it_has_the_same_geometries():
    density, p = [0.03, 0.3, 1.0], [0.0, 0.4]
    ds = composite_diagram(3, 2, 0.6, density, p, max_polygon=3)
    catalogue = density_diagram(3, 2, 0.6 ** np.arange(3), density, p, candidates(3, 2))
    # the catalogue also has non-consecutive assignments (antipodal 0 2, dedicated 1): never worse
    assert (catalogue.optimal_loss.values <= ds.optimal_loss.values * (1 + 1e-7)).all()
    same = {
        "triangle": ["triangle, free vertices", "triangle, free angles"],
        "pair + dedicated": ["antipodal 0 1, dedicated 2", "antipodal 1 2, dedicated 0"],
        "2 dedicated": ["dedicated 0 1"],
        "dedicated": ["dedicated 0"],
    }
    cat_names = list(catalogue.geometry.values)
    antipodal = ds.block_kind.sel(shape="pair").values == "antipodal"  # the catalogue has no same-sign pair
    for ours, theirs in same.items():
        expected = catalogue.loss.values[..., [cat_names.index(t) for t in theirs]].min(-1)
        found = ds.loss.sel(geometry=ours).values
        assert (found <= expected * (1 + 1e-7)).all(), ours
        where = antipodal if "pair" in ours else np.ones_like(antipodal)
        np.testing.assert_allclose(found[where], expected[where], rtol=1e-6, err_msg=ours)


def test_twenty_in_five_against_monte_carlo():
    ds = composite_diagram(20, 5, 0.7, [0.03], [0.0, 0.4], max_polygon=3)
    assert np.isnan(ds.exact_loss.values).all()  # beyond the exact loss's reach
    for k, p in enumerate(ds.p.values):
        setup = Setup(20, 5, sparsity=0.97, importance=0.7 ** np.arange(20), p=float(p))
        mc = monte_carlo_loss(setup, ds.W.values[k, 0], ds.b.values[k, 0], n_samples=2_000_000, seed=k)
        theory = float(ds.optimal_loss.values[k, 0])
        assert abs(mc.mean - theory) < 4 * mc.stderr, (p, mc.mean, mc.stderr, theory)
    # sparse and without dropout: more features than neurons (superposition)
    assert int(ds.represented.values[0, 0]) > 5
    assert int(ds.represented.values[0, 0]) >= int(ds.represented.values[1, 0])


def test_structures_fit_the_problem():
    options = shapes(5)
    combos = structures(20, 5, options)
    assert combos[0] == () and len(set(combos)) == len(combos)
    assert all(sum(options[s].neurons for s in c) <= 5 for c in combos)
    names = [structure_name(c, options) for c in combos]
    assert len(set(names)) == len(names)
    assert "2 pentagons + dedicated" in names and "5 dedicated" in names
    # 2 features in 1 neuron: ignore all, dedicated, pair
    assert [structure_name(c, shapes(2)) for c in structures(2, 1, shapes(2))] == [
        "ignore all",
        "dedicated",
        "pair",
    ]
    # 3 features, 3 neurons: no structure represents more than 3 features
    assert all(sum(options[s].features for s in c) <= 3 for c in structures(3, 3, options))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"decay": 0.0}, "decay"),
        ({"decay": 1.5}, "decay"),
        ({"max_polygon": 7}, "max_polygon"),
        ({"n_features": 0}, "n_features"),
    ],
)
def test_bad_input_is_one_line(kwargs, message):
    args = {"n_features": 4, "n_hidden": 2, "decay": 0.9, "density": [0.1], "p": [0.0]} | kwargs
    with pytest.raises(InputError, match=message):
        composite_diagram(**args)


def test_cli_twenty_in_five(tmp_path, capsys):
    out = tmp_path / "c.nc"
    result = run_cli(
        capsys,
        "theory",
        "phase-diagram",
        "--problem",
        "20x5",
        "--points",
        "2",
        "--density",
        "0.05:1",
        "--p",
        "0",
        "--max-polygon",
        "2",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert out.exists() and out.with_suffix(".png").exists()
    assert "density 1: 5 dedicated" in result.stdout
    bad = run_cli(
        capsys, "theory", "phase-diagram", "--problem", "20x5", "--completeness", "1", "--out", str(out)
    )
    assert bad.returncode != 0 and "completeness" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
