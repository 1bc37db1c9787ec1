"""The 5-demicube (and the 5-orthoplex, the simplex prism), fitted on the sampled loss: its gradient
through W(theta), its Monte Carlo score against the rigorous bracket of the truncated exact loss, and its
place in the 20-in-5 composites."""

import numpy as np
import pytest

from theory import composite, sampled_fit
from theory.blocks import KINDS, demicube, demicube_vertices, simplex_prism
from theory.composite import DEMICUBE, ORTHOPLEX, PRISM, SCREEN, Shape, composites
from theory.exact_fit import Family
from theory.fits import Fits, fitted_on, join
from theory.geometries import Geometry
from theory.metrics import tegum_factors
from theory.sampled import SampledLoss
from theory.sampled_fit import _minimize, _start, fit_cell, fitted_cells, objective
from theory.setup import Setup

GEOMETRY = Geometry(DEMICUBE, 16, 5, (demicube(range(16), range(5)),))


def _theta(rng) -> np.ndarray:
    """r, b, then the 10 turn angles."""
    return np.concatenate([[rng.uniform(0.8, 1.2), rng.uniform(-0.3, -0.1)], rng.uniform(-np.pi, np.pi, 10)])


def test_the_gradient_in_theta_matches_central_differences():
    setup = Setup(16, 5, sparsity=0.9, importance=0.9 ** np.arange(16), p=0.15)
    f = objective(Family.of(GEOMETRY), SampledLoss.draw(setup, 4096, seed=3))
    theta = _theta(np.random.default_rng(0))
    _, grad = f(theta)
    h = 1e-6
    numeric = [(f(theta + h * e)[0] - f(theta - h * e)[0]) / (2 * h) for e in np.eye(len(theta))]
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def test_the_family_places_a_regular_demicube_turned_by_the_angles():
    theta = _theta(np.random.default_rng(1))
    W, b, _ = Family.of(GEOMETRY)(theta[None])
    U = W[0] / theta[0]
    np.testing.assert_allclose(U.T @ U, demicube_vertices(5) @ demicube_vertices(5).T, atol=1e-12)
    np.testing.assert_allclose(b[0], theta[1])


def test_the_fit_is_scored_inside_its_rigorous_bracket_and_beats_its_start():
    setup = Setup(16, 5, sparsity=0.95, importance=np.ones(16), p=0.15)
    rng = np.random.default_rng(2)
    start = _theta(rng)
    found = fit_cell(GEOMETRY, setup, [start], seed=4)
    assert found.upper - found.lower < 2e-3 * found.upper  # tight at density 0.05: 0.1%
    assert found.lower - 3 * found.stderr <= found.loss <= found.upper + 3 * found.stderr
    W, b, _ = Family.of(GEOMETRY)(start[None])
    assert found.sampled < SampledLoss.draw(setup, 2**15, seed=4).loss_and_grad(W[0], b[0])[0]
    assert found.theta[1] < 0  # a negative bias clips the interference
    # the same search with a ceiling below where it ends: screened, the search unchanged, nothing scored
    screened = fit_cell(GEOMETRY, setup, [start], seed=4, ceiling=0.999 * found.searched)
    assert screened.screened and screened.searched == found.searched
    assert np.isnan([screened.sampled, screened.loss, screened.lower]).all()


def test_without_dropout_the_turn_does_not_matter():
    setup = Setup(16, 5, sparsity=0.95, importance=np.ones(16), p=0.0)
    ends = [fit_cell(GEOMETRY, setup, [_theta(np.random.default_rng(s))], seed=9) for s in (5, 6)]
    assert ends[0].loss == pytest.approx(ends[1].loss, abs=3 * ends[0].stderr)


def test_composites_of_twenty_in_five_include_the_demicube_and_the_prism_fitted_only_where_sparse():
    names = [c.name for c in composites(20, 5)]
    assert DEMICUBE in names and PRISM in names and ORTHOPLEX in names and len(names) == 108
    smaller = [c.name for c in composites(12, 5)] + [c.name for c in composites(20, 4)]
    assert DEMICUBE not in smaller and PRISM not in smaller and ORTHOPLEX not in composites(20, 4)
    (geometry,) = Shape(DEMICUBE, 16, 5).geometries()
    assert fitted_on(geometry) == "sampled loss"
    density = np.array([1.0, 0.3, KINDS["demicube"].densest, 0.05, 0.1])
    assert fitted_cells(density, geometry).tolist() == [3, 4, 2]
    (prism,) = Shape(PRISM, 20, 5).geometries()
    assert fitted_on(prism) == "sampled loss"
    assert fitted_cells(density, prism).tolist() == [3, 4]


def test_the_demicube_beats_the_five_simplex_at_low_density_and_is_screened_where_it_cannot_matter():
    """16 in 5, p = 0, density 0.05 and 0.1. At uniform importance the demicube represents all 16, the
    best 5-simplex 6 (the other 10 ignored), and its loss (Monte Carlo, bracketed) is the lower: fitted at
    both densities. At importance 0.7**i its search ends more than SCREEN above the best other candidate:
    not polished or scored at the sparser density, not fitted at the denser."""
    density = (0.05, 0.1)
    setups = np.array(
        [[[Setup(16, 5, sparsity=1 - d, importance=decay ** np.arange(16), p=0.0) for d in density]
          for decay in (1.0, 0.7)]]
    )  # fmt: skip
    candidates = [c for c in composites(16, 5) if c.name in ("ignore all", "5-simplex", DEMICUBE)]
    fits = composite.fit(candidates, setups)
    loss = fits.loss[0]  # (importance, density, candidate)
    cube = [c.name for c in candidates].index(DEMICUBE)
    others = np.delete(loss, cube, axis=-1).min(-1)
    block, lower, upper, stderr, screened_at = (
        fits.extra[key][1][fits.coords["shape"].index(DEMICUBE), 0]
        for key in (
            "block_loss",
            "block_loss_lower",
            "block_loss_upper",
            "block_loss_stderr",
            "block_loss_screened_at",
        )
    )
    # uniform importance: fitted at both densities; the composite is the block alone (no feature ignored)
    np.testing.assert_array_equal(loss[0, :, cube], block[0])
    assert np.isnan(screened_at[0]).all()
    assert upper[0, 0] < others[0, 0]  # a rigorous bound below the 5-simplex + 10 ignored
    assert lower[0, 0] - 3 * stderr[0, 0] <= block[0, 0] <= upper[0, 0] + 3 * stderr[0, 0]
    # importance 0.7**i: screened at the sparser density (its search's loss kept), not fitted at the denser
    assert np.isnan(loss[1, :, cube]).all() and np.isnan(block[1]).all()
    assert screened_at[1, 0] > (1 + SCREEN) * others[1, 0]
    assert np.isnan(screened_at[1, 1])


def test_the_orthoplex_is_not_fitted_without_dropout():
    """At p = 0 the loss does not depend on the turn, and the unturned orthoplex is five pairs on single
    neurons, a composite of blocks: NaN there, nothing fitted."""
    (geometry,) = Shape(ORTHOPLEX, 10, 5).geometries()
    setups = np.array([[Setup(10, 5, sparsity=0.9, importance=0.9 ** np.arange(10), p=0.0)]])
    fits = sampled_fit.fit([geometry], setups)
    assert np.isnan(fits.loss).all() and np.isnan(fits.theta).all()
    assert np.isnan(fits.extra["sampled_screened_at"][1]).all()


@pytest.mark.slow
def test_under_dropout_the_turned_orthoplex_beats_its_pairs_on_single_neurons():
    """10 in 5 at importance 0.9**i, density 0.136 (where a search over all of W and b on the 20-in-5 grid
    ends at five antipodal pairs spread over four to five neurons each). At p = 0.15 the orthoplex, turned
    off the neurons, is more than 1% below five pairs each on a neuron of its own (its unturned form,
    fitted on the exact loss), and its pairs are spread: dropout rewards a pair written into several
    units that fail independently. At p = 0 it is not fitted (the turn does not matter there)."""
    density = np.exp(-2.0)  # 0.1353
    setups = np.array(
        [[[Setup(10, 5, sparsity=1 - density, importance=0.9 ** np.arange(10), p=p)]] for p in (0.0, 0.15)]
    )
    candidates = [c for c in composites(10, 5) if c.name in ("5 pairs", ORTHOPLEX)]
    fits = composite.fit(candidates, setups)
    pairs, turned = (
        fits.loss[:, 0, 0, [c.name for c in candidates].index(name)] for name in ("5 pairs", ORTHOPLEX)
    )
    assert np.isnan(turned[0]) and np.isfinite(pairs[0])
    stderr = fits.extra["block_loss_stderr"][1][fits.coords["shape"].index(ORTHOPLEX), 1, 0, 0]
    assert turned[1] + 3 * stderr < 0.99 * pairs[1], (turned, pairs)
    W, _ = fits.solution([c.name for c in candidates].index(ORTHOPLEX), np.array([1]))
    columns = W[0] / np.linalg.norm(W[0], axis=0)
    np.testing.assert_allclose(columns[:, 0::2].T @ columns[:, 1::2], -np.eye(5), atol=1e-9)  # the pairs
    spread = 1 / (columns**4).sum(0)  # participation ratio: 1 on one neuron, 5 over all five alike
    assert spread.min() > 3, spread


PRISM_GEOMETRY = Geometry(PRISM, 20, 5, (simplex_prism(range(20), range(5)),))


def test_the_prism_beats_the_demicube_at_uniform_importance_density_five_hundredths_without_dropout():
    """The search over all of W and b ends at the simplex prism there (its tilt about 41 degrees): all 20
    features represented. Its rigorous upper bound is below the demicube's lower bound plus 4 ignored
    features: a proof, not a sample."""
    setup = Setup(20, 5, sparsity=0.95, importance=np.ones(20), p=0.0)
    rng = np.random.default_rng(3)
    start = np.concatenate([[1.0, -0.3, 1.0, -0.3, rng.uniform(0.5, 1.0)], rng.uniform(-np.pi, np.pi, 10)])
    prism = fit_cell(PRISM_GEOMETRY, setup, [start], seed=5)
    cube = fit_cell(
        GEOMETRY, Setup(16, 5, sparsity=0.95, importance=np.ones(16), p=0.0), [_theta(rng)], seed=6
    )
    assert prism.upper < cube.lower + 4 * (0.05 / 3 - 0.05**2 / 4)
    assert prism.lower - 3 * prism.stderr <= prism.loss <= prism.upper + 3 * prism.stderr
    assert np.degrees(abs(prism.theta[4])) % 180 == pytest.approx(41, abs=3)
    W, _, _ = Family.of(PRISM_GEOMETRY)(prism.theta[None])
    assert [f.kind for f in tegum_factors(W[0])] == ["simplex prism"]


@pytest.mark.slow
def test_a_short_first_step_keeps_the_search_off_a_norm_at_zero(monkeypatch):
    """The simplex prism at importance 0.9**i, p = 0.4, density 0.07. The loss sees a norm through
    W^T D W, so at its bound 0 the gradient in it is 0: a search whose first step drives the norm of the
    ten most important features there ends there, or near it (the gradient is of the order of the norm).
    L-BFGS-B's first step has length 1 in its variables; the fits take it at FIRST_STEP."""
    setup = Setup(20, 5, sparsity=1 - 0.0697, importance=0.9 ** np.arange(20), p=0.4)
    family, sample = Family.of(PRISM_GEOMETRY), SampledLoss.draw(setup, 2**13, seed=1)
    starts = [_start(PRISM_GEOMETRY, setup, np.random.default_rng(s)) for s in range(4)]

    def ends():
        return np.array([_minimize(family, sample, theta) for theta in starts], dtype=object)

    short = ends()
    monkeypatch.setattr(sampled_fit, "FIRST_STEP", 1.0)
    unit = ends()
    norm = [theta[0] for theta in unit[:, 0]]  # r of the first orbit (features 0-9), about 0.85 at best
    assert sum(r < 0.05 for r in norm) >= 2, norm
    assert all(theta[0] > 0.5 for theta in short[:, 0])
    assert max(short[:, 1]) < 0.9 * max(unit[:, 1])


def test_a_random_start_of_the_prism_tilts_it_the_searchs_way():
    """cos(tilt) > 0 (the tilt t and pi - t are different shapes; the search finds the first); the turn's
    angles are drawn from all of (-pi, pi)."""
    setup = Setup(20, 5, sparsity=0.95, importance=np.ones(20), p=0.15)
    starts = np.array([_start(PRISM_GEOMETRY, setup, np.random.default_rng(s)) for s in range(200)])
    assert np.all(np.abs(starts[:, 4]) < np.pi / 2)
    assert np.abs(starts[:, 5:]).max() > 3 and starts[:, :4].tolist() == [[1.0, -0.2, 1.0, -0.2]] * 200


def test_join_spreads_a_fitters_per_candidate_variables_over_every_candidate():
    cells = (2, 3)

    def fits(G, extra):
        return Fits(
            np.ones(cells + (G,)), np.zeros(cells + (G, 1)), -np.ones(cells + (G, 4), int), None, extra
        )

    stderr = np.arange(6.0).reshape(cells + (1,))
    joined = join([([0, 2], fits(2, {})), ([1], fits(1, {"sampled_stderr": (("geometry",), stderr, {})}))], 3)
    dims, values, _ = joined.extra["sampled_stderr"]
    assert dims == ("geometry",) and values.shape == cells + (3,)
    np.testing.assert_array_equal(values[..., 1], stderr[..., 0])
    assert np.isnan(values[..., [0, 2]]).all()
