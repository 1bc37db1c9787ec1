"""Composite phase diagrams (20 in 5): the sum over blocks checked against the exact loss, whole-geometry
fits, the 3-in-2 catalogue, and Monte Carlo at n = 20."""

import numpy as np
import pytest

from tests.cli_helpers import run_cli
from tests.theory.diagrams import diagram
from theory import Grid, InputError, Setup, catalogue, composite, phase_diagram
from theory.blocks import dedicated, free_polygon, irregular_polygon, polygon, simplex, tetrahedron
from theory.compiled_loss import expected_loss_bounds_compiled
from theory.composite import composites
from theory.diagram import fitted_on_any
from theory.geometries import Geometry
from theory.grid import tms_sparsities
from theory.loss import expected_loss_and_grad_many
from theory.montecarlo import monte_carlo_loss
from theory.optimize import minimize_loss


def composite_diagram(n, m, decay, density, p, max_polygon=5):
    """The composites' diagram at importance decay**i, indexed by density."""
    return diagram(
        n, m, density, p, importance=decay ** np.arange(n), candidates=composites(n, m, max_polygon)
    )


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
    reference = diagram(
        4, 3, ds.density.values, ds.p.values, importance=0.8 ** np.arange(4), candidates=whole
    )
    names = list(ds.geometry.values)
    composite = ds.loss.values[..., names.index("triangle + dedicated")]
    np.testing.assert_allclose(composite, reference.loss.values.min(-1), rtol=1e-6)


def test_three_in_two_matches_the_catalogue_where_it_has_the_same_geometries():
    density, p = [0.03, 0.3, 1.0], [0.0, 0.4]
    ds = composite_diagram(3, 2, 0.6, density, p, max_polygon=3)
    named = diagram(3, 2, density, p, importance=0.6 ** np.arange(3), candidates=catalogue(3, 2))
    # the catalogue also ignores a feature more important than one it represents (antipodal 0 2, ignore 1):
    # never worse
    assert (named.optimal_loss.values <= ds.optimal_loss.values * (1 + 1e-7)).all()
    same = {
        "triangle": ["triangle, free vertices", "triangle, free angles"],
        # a pair and a dedicated feature take their three features in any matching
        "pair + dedicated": [
            "antipodal 0 1, dedicated 2",
            "antipodal 1 2, dedicated 0",
            "antipodal 0 2, dedicated 1",
        ],
        "2 dedicated": ["dedicated 0 1"],
        "dedicated": ["dedicated 0"],
    }
    cat_names = list(named.geometry.values)
    antipodal = ds.block_kind.sel(shape="pair").values == "antipodal"  # the catalogue has no same-sign pair
    for ours, theirs in same.items():
        expected = named.loss.values[..., [cat_names.index(t) for t in theirs]].min(-1)
        found = ds.loss.sel(geometry=ours).values
        assert (found <= expected * (1 + 1e-7)).all(), ours
        where = antipodal if "pair" in ours else np.ones_like(antipodal)
        np.testing.assert_allclose(found[where], expected[where], rtol=1e-6, err_msg=ours)


@pytest.mark.slow  # 10-12 s: the default suite stays under five minutes from empty caches
def test_twenty_in_five_against_monte_carlo():
    """The composites fitted on the exact loss at n = 20, summed over blocks, against Monte Carlo and the
    rigorous bracket of the assembled model (the demicube's and the prism's, fitted by Monte Carlo, are
    checked against their own brackets in test_sampled_fit.py)."""
    exact = [c for c in composites(20, 5, 3) if fitted_on_any(c) == "sum of blocks"]
    ds = diagram(20, 5, [0.03], [0.0, 0.4], importance=0.7 ** np.arange(20), candidates=exact)
    assert np.isnan(ds.exact_loss.values).all()  # beyond the exact loss's reach
    assert str(ds.geometry.values[ds.phase.values[1, 0]]) == "5-simplex"  # under dropout: checked below too
    for k, p in enumerate(ds.p.values):
        setup = Setup(20, 5, sparsity=0.97, importance=0.7 ** np.arange(20), p=float(p))
        mc = monte_carlo_loss(setup, ds.W.values[k, 0], ds.b.values[k, 0], n_samples=2_000_000, seed=k)
        theory = float(ds.optimal_loss.values[k, 0])
        assert abs(mc.mean - theory) < 4 * mc.stderr, (p, mc.mean, mc.stderr, theory)
        # sharper, and rigorous: the assembled model's loss over at most 5 active features, bracketed
        # (about 1% wide at p = 0, where Monte Carlo's 4 standard errors are 3%; 0.1% at p = 0.4)
        bounds = expected_loss_bounds_compiled(setup, ds.W.values[k, 0], ds.b.values[k, 0], 5)
        assert float(bounds.lower) <= theory <= float(bounds.upper), (p, bounds, theory)
    # sparse and without dropout: more features than neurons (superposition)
    assert int(ds.represented.values[0, 0]) > 5
    assert int(ds.represented.values[0, 0]) >= int(ds.represented.values[1, 0])


def test_structures_fit_the_problem():
    combos = composites(20, 5, 5)
    assert combos[0].shapes == () and len(set(combos)) == len(combos)
    assert all(sum(s.neurons for s in c.shapes) <= 5 for c in combos)
    names = [c.name for c in combos]
    assert len(set(names)) == len(names)
    assert "2 pentagons + dedicated" in names and "5 dedicated" in names
    # 2 features in 1 neuron: ignore all, dedicated, pair
    assert [c.name for c in composites(2, 1, 2)] == ["ignore all", "dedicated", "pair"]
    # 3 features, 3 neurons: no structure represents more than 3 features
    assert all(c.represented <= 3 for c in composites(3, 3, 5))
    # every (n, m) beyond the named problems gets composites
    assert catalogue(20, 5) == composites(20, 5, 5)


@pytest.mark.parametrize(
    "importance, max_polygon, message",
    [
        (np.zeros(4), 3, "the first positive"),
        (1.5 ** np.arange(4), 3, "do not increase"),
        ([1.0, 0.5, 0.9, 0.1], 3, "order the features by importance"),
        (np.ones(4), 7, "max_polygon"),
    ],
)
def test_bad_input_is_one_line(importance, max_polygon, message):
    with pytest.raises(InputError, match=message):
        grid = Grid(4, 2, sparsity=(0.9,), importance=tuple(importance))
        phase_diagram(grid, catalogue(4, 2, max_polygon))
    with pytest.raises(InputError, match="n_features = 0"):
        Grid(0, 2, sparsity=(0.9,))


def test_cli_twenty_in_five(tmp_path, capsys):
    """The command at 20 in 5: densities above every sampled block's densest (their fits are
    tests/theory/test_sampled_fit.py's), so that only the blocks fitted on the exact loss run."""
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
        "0.3:1",
        "--p",
        "0",
        "--max-polygon",
        "2",
        "--no-search",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert out.exists() and out.with_suffix(".png").exists()
    assert (
        "| 1: 5 dedicated (dedicated 0, dedicated 1, dedicated 2, dedicated 3, dedicated 4, ignore 5-19)"
        in (result.stdout)
    )
    assert "search over all of W, b" not in result.stdout


def test_tetrahedron_block_is_regular_and_its_composite_loss_is_the_assembled_models():
    geometry = Geometry("tetrahedron", 4, 3, (tetrahedron(range(4)),))
    W, _ = geometry.numeric_W_b([0.8, 0.1, 0.3, 1.1, -0.7])
    np.testing.assert_allclose(np.linalg.norm(W, axis=0), 0.8)
    cosines = (W.T @ W) / 0.64
    np.testing.assert_allclose(cosines[~np.eye(4, dtype=bool)], -1 / 3, atol=1e-12)
    candidates = [c for c in composites(5, 4, 3) if c.name in ("tetrahedron", "tetrahedron + dedicated")]
    assert len(candidates) == 2
    setups = np.array([[Setup(5, 4, sparsity=1 - d, importance=0.8 ** np.arange(5), p=p) for d in (0.1, 0.7)]
                       for p in (0.0, 0.3)])  # fmt: skip
    fits = composite.fit(candidates, setups)
    for j in range(len(candidates)):
        W, b = fits.solution(j, np.arange(setups.size))
        exact = expected_loss_and_grad_many(list(setups.ravel()), W, b).loss
        np.testing.assert_allclose(exact, fits.loss[..., j].ravel(), rtol=1e-10)
        used = (np.abs(W) > 0).any(-1).sum(-1)  # neurons with a nonzero weight
        assert (used == 3 + j).all(), used


def test_simplex_blocks_are_regular_and_their_composite_loss_is_the_assembled_models():
    """The 5-simplex: 6 vertices of one norm, pairwise cosine -1/5, whatever the turn; the 5-simplex and
    4-simplex + dedicated composites of 7 in 5 equal the exact loss of their assembled W, b, and spread
    over all 5 neurons."""
    geometry = Geometry("5-simplex", 6, 5, (simplex(range(6), range(5)),))
    turn = np.random.default_rng(0).uniform(-3, 3, 10)
    W, _ = geometry.numeric_W_b([0.8, 0.1, *turn])
    np.testing.assert_allclose(np.linalg.norm(W, axis=0), 0.8)
    cosines = (W.T @ W) / 0.64
    np.testing.assert_allclose(cosines[~np.eye(6, dtype=bool)], -1 / 5, atol=1e-12)
    names = ("5-simplex", "4-simplex + dedicated")
    candidates = [c for c in composites(7, 5, 3) if c.name in names]
    assert [c.name for c in candidates] == list(names)
    setups = np.array([[Setup(7, 5, sparsity=0.7, importance=0.8 ** np.arange(7), p=0.4)]])
    fits = composite.fit(candidates, setups)
    for j in range(len(candidates)):
        W, b = fits.solution(j, np.arange(setups.size))
        exact = expected_loss_and_grad_many(list(setups.ravel()), W, b).loss
        np.testing.assert_allclose(exact, fits.loss[..., j].ravel(), rtol=1e-10)
        assert ((np.abs(W) > 1e-9).any(-1).sum(-1) == 5).all()


@pytest.mark.parametrize("shape", [composite.Shape("pair", 2, 1), composite.Shape("triangle", 3, 2)])
def test_a_shape_fitted_for_several_importances_at_once_is_fitted_as_for_each_alone(shape):
    density, ps = np.array([0.1, 0.5]), np.array([0.0, 0.3])
    profiles = [0.7 ** np.arange(shape.features), np.ones(shape.features)]
    together = composite.fit_shape(shape, profiles, density, ps)
    for a, profile in enumerate(profiles):
        alone = composite.fit_shape(shape, [profile], density, ps)
        for field in ("loss", "W", "b", "kind", "order"):
            np.testing.assert_array_equal(getattr(together, field)[:, a], getattr(alone, field)[:, 0])


@pytest.mark.slow  # 8-10 s: the default suite stays under five minutes from empty caches
def test_cli_composite_maps_over_importance_colour_the_phases_present(tmp_path, capsys):
    """5 in 3 has 19 composites, more than the palette's colours; a map over importance colours only the
    phases that occur."""
    config = tmp_path / "five_in_three.toml"
    config.write_text(
        "[model]\nn_features = 5\nn_hidden = 3\n\n"
        "[grid]\nsparsity = [0.9, 0.5]\np = [0.0, 0.4]\nimportance_decay = [0.7, 1.0]\n"
    )
    out = tmp_path / "maps.nc"
    result = run_cli(capsys, "theory", "phase-diagram", str(config), "--no-search", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert len(composites(5, 3)) > 18
    assert out.with_suffix(".png").stat().st_size > 10_000


@pytest.mark.parametrize("screen", [-0.1, float("nan")])
def test_a_negative_or_undefined_screen_is_refused(screen):
    setups = np.array([[Setup(2, 1, sparsity=0.5, p=0.0)]])
    with pytest.raises(InputError, match="screen"):
        composite.fit(composites(2, 1, 2), setups, screen=screen)


def test_a_profile_that_is_not_geometric_fits_each_block_where_it_sits():
    """Importance 1, 0.9, 0.7, 0.65, 0.3, 0.1 (no c * decay**i): a block's importances relative to its
    first feature depend on where it sits, so each shape is fitted at every place an arrangement puts it;
    every composite's loss is then the exact loss of its assembled W, b."""
    importance = (1.0, 0.9, 0.7, 0.65, 0.3, 0.1)
    grid = Grid(6, 3, sparsity=(0.6,), p=(0.3,), importance=importance)
    candidates = [c for c in composites(6, 3, 2) if c.shapes]
    profiles, slot = composite.block_profiles(candidates, [np.array(importance)])
    pair = composite.Shape("pair", 2, 1)
    # a profile per place, none alike here; a pair in a run of up to three pairs takes any two of the six
    assert len(profiles[pair]) == len(slot[pair]) == 15
    np.testing.assert_allclose(profiles[pair][slot[pair][0, (2, 3)]], [1.0, 0.65 / 0.7])
    np.testing.assert_allclose(profiles[pair][slot[pair][0, (1, 5)]], [1.0, 0.1 / 0.9])
    setups = grid.setups()
    fits = composite.fit(list(candidates), setups, progress=False)
    cells = np.arange(setups.size)
    for j in range(len(candidates)):
        W, b = fits.solution(j, cells)
        exact = expected_loss_and_grad_many(list(setups.ravel()), W, b).loss
        np.testing.assert_allclose(exact, fits.loss[..., j].ravel(), rtol=1e-9, err_msg=candidates[j].name)
    geometric = composite.block_profiles(candidates, [0.8 ** np.arange(6)])[0]
    # one profile per shape wherever it sits, and one per distance between a pair's features
    assert {s.name: len(rows) for s, rows in geometric.items()} == {
        "dedicated": 1,
        "pair": 5,
        "turned pair": 1,
        "tetrahedron": 1,
    }
    np.testing.assert_allclose(geometric[pair], [[1.0, 0.8**d] for d in range(1, 6)])


def test_a_monte_carlo_score_takes_a_cell_only_two_standard_errors_below_the_exact_optimum():
    """resolved: composites scored by Monte Carlo (stderr > 0) lose the cells where they are within two
    standard errors of the best exactly scored composite (NaN there); exact ones are never touched."""
    from theory.composite import RESOLVE, resolved

    best_exact = np.array([1.0, 1.0, 1.0, np.nan])
    loss = np.array([[1.0, 0.90], [1.2, 0.99], [0.95, 0.997], [0.5, 0.4]])
    stderr = np.array([[0.0, 0.01], [0.0, 0.004], [0.0, 0.001], [0.0, 0.01]])
    out = resolved(loss, stderr, best_exact)
    assert RESOLVE == 2
    np.testing.assert_array_equal(out[:, 0], loss[:, 0])  # exact: kept as they are
    # 0.90 + 0.02 < 1: kept; 0.99 + 0.008 < 1: kept; 0.997 + 0.002 = 0.999 < 1: kept
    np.testing.assert_array_equal(out[:3, 1], loss[:3, 1])
    assert np.isnan(out[3, 1])  # no exact composite to be below: not resolved
    np.testing.assert_array_equal(
        np.isnan(resolved(np.array([[1.0, 0.995]]), np.array([[0.0, 0.003]]), np.array([1.0]))),
        [[False, True]],
    )  # 0.995 + 0.006 > 1: within noise of the exact optimum


def test_a_composites_standard_error_is_its_sampled_blocks_weighted_by_importance():
    """_best_arrangements: a composite's loss is I_f times each block's where it sits plus the ignored
    tail, and its standard error I_f times the sampled block's (0 for blocks with an exact loss)."""
    from theory.composite import ORTHOPLEX, BlockFit, _best_arrangements, _ignored_tail, block_profiles

    candidates = [c for c in composites(10, 5) if c.name in ("dedicated", ORTHOPLEX)]
    importance = 0.5 * 0.9 ** np.arange(10)
    profiles, slot = block_profiles(candidates, [importance])
    density = np.array([0.2])

    def fake(shape, loss, stderr):
        cells = (1, len(profiles[shape]), 1)
        k, c = shape.features, shape.neurons
        return BlockFit(
            np.full(cells, loss), np.zeros(cells + (c, k)), np.zeros(cells + (k,)),
            np.full(cells, shape.name), np.full(cells + (k,), -1), np.full(cells, stderr),
            np.full(cells, np.nan), np.full(cells, np.nan), np.full(cells, np.nan),
        )  # fmt: skip

    fitted = {s: fake(s, 0.3 if s.name == ORTHOPLEX else 0.1, 0.01 if s.name == ORTHOPLEX else 0.0)
              for c in candidates for s in c.shapes}  # fmt: skip
    tail = _ignored_tail(importance, density)
    loss, _, stderr = _best_arrangements(candidates, fitted, slot, [importance], [tail], (1, 1))
    names = [c.name for c in candidates]
    cube, single = names.index(ORTHOPLEX), names.index("dedicated")
    assert stderr[0, 0, 0, cube] == pytest.approx(0.5 * 0.01) and stderr[0, 0, 0, single] == 0
    assert loss[0, 0, 0, cube] == pytest.approx(0.5 * 0.3)  # all ten features in the block: no tail
    assert loss[0, 0, 0, single] == pytest.approx(0.5 * 0.1 + tail[1][0, 0])


def test_a_run_of_one_neuron_blocks_nests_its_pairs_where_that_is_lower():
    """The nine most important of 20 features in 5 at importance 0.7**i, density 0.136, p = 0: a dedicated
    feature and four pairs take their nine features in any matching, and the least nests the pairs, the
    run's most important feature with its least important, 4.0% below the pairs on consecutive features.
    Its loss is the sum of each block's least loss minimised on its own (theory.optimize from random
    starts, not the family's closed forms) and the exact loss of the model it assembles, whose neurons
    hold those blocks."""
    importance, density = 0.7 ** np.arange(9), 1 - tms_sparsities(10)[6]
    (candidate,) = [c for c in composites(9, 5, 2) if c.name == "4 pairs + dedicated"]
    setups = Grid(9, 5, sparsity=(1 - density,), p=(0.0,), importance=tuple(importance)).setups()
    fits = composite.fit([candidate], setups, progress=False)

    def alone(blocks):  # each block its own problem on one neuron
        return sum(
            minimize_loss(Setup(len(b), 1, sparsity=1 - density, importance=importance[list(b)]), 12).loss
            for b in blocks
        )

    nested = [(0,), (1, 8), (2, 7), (3, 6), (4, 5)]
    assert fits.describe(0, np.array([0])) == [
        "dedicated 0, antipodal 1 8, antipodal 2 7, antipodal 3 6, antipodal 4 5"
    ]
    assert fits.loss.item() == pytest.approx(alone(nested), rel=1e-7)
    assert fits.loss.item() / alone([(0,), (1, 2), (3, 4), (5, 6), (7, 8)]) == pytest.approx(0.960, abs=1e-3)
    W, b = fits.solution(0, np.array([0]))
    assert [tuple(np.flatnonzero(np.abs(row) > 1e-9)) for row in W[0]] == nested
    exact = expected_loss_and_grad_many(list(setups.ravel()), W, b).loss
    np.testing.assert_allclose(exact, fits.loss.ravel(), rtol=1e-9)
