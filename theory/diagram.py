"""Which candidate is optimal: at one setup (optimal) or over a whole grid (phase_diagram).

One pipeline for every problem. Each candidate is fitted the way it is
fitted (theory.fits.fit_geometries: closed form or exact loss;
theory.composite.fit: a sum of fitted blocks), then ranked here, once: the
phase is the candidate of least loss (ties within theory.fits.TIE go to the
least complexity), with the runner-up and the margin. The winner's (W, b) is
scored by the exact loss (theory.expected_loss) in every cell where the exact
loss is computable, a check on the fits; completeness() minimises the exact
loss over all of W and b at sample cells to find phases the catalogue misses.

Every Dataset has the grid's dims (theory.grid.Grid.dims: p, [r |
importance_decay], sparsity, density a coordinate on sparsity), so it aligns
with a sweep of the same grid as is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import xarray as xr

from theory import composite
from theory.candidates import catalogue, complexity
from theory.composite import ASSUMPTIONS, Composite
from theory.direct import (
    CHECK_ACTIVE,
    POLISH_ACTIVE,
    SEARCH_ACTIVE,
    TRUNCATED_DENSEST,
    minimize_truncated,
    xavier_starts,
)
from theory.errors import InputError
from theory.fits import TIE, Fits, fit_geometries, fitted_on, join, rank
from theory.grid import Grid
from theory.loss import MAX_EXACT_FEATURES, expected_loss_and_grad_many
from theory.metrics import max_angle_to_neuron, represented, superposition_onset
from theory.montecarlo import monte_carlo_losses
from theory.optimize import minimize_loss
from theory.progress import Progress
from theory.sampled import RESCORE_SAMPLES, RESCORE_SEED, minimize_sampled
from theory.setup import Setup

KIND = "tms-dropout phase diagram"
#: With the search, a feature is represented when its column is longer than this (the search's end points
#: leave the features they ignore small nonzero columns; the candidates' are exactly zero).
SEARCH_REPRESENTED = 0.5
#: The search draws more random starts at densities up to this.
SEARCH_SPARSE = 0.1


def _check(candidates, n_features: int, n_hidden: int, least: int = 2) -> tuple:
    candidates = catalogue(n_features, n_hidden) if candidates is None else tuple(candidates)
    if len(candidates) < least:
        raise InputError(f"a phase diagram needs at least {least} candidates to compare")
    for c in candidates:
        if (c.n_features, c.n_hidden) != (n_features, n_hidden):
            raise InputError(
                f"candidate {c.name!r} is for ({c.n_features}, {c.n_hidden}), not ({n_features}, {n_hidden})"
            )
    return candidates


def fit_candidates(candidates, setups: np.ndarray, progress=None) -> Fits:
    """Every candidate's least loss at every cell of setups (P, ..., D), each fitted its own way."""
    blocks = [j for j, c in enumerate(candidates) if isinstance(c, Composite)]
    named = [j for j, c in enumerate(candidates) if not isinstance(c, Composite)]
    parts = []
    if named:
        parts.append((named, fit_geometries([candidates[j] for j in named], setups, progress)))
    if blocks:
        parts.append((blocks, composite.fit([candidates[j] for j in blocks], setups, progress)))
    return join(parts, len(candidates))


@dataclass(frozen=True)
class Optimum:
    """The best candidate for one setup, its parameters and (W, b), with the runner-up."""

    name: str
    params: dict[str, float]
    W: np.ndarray
    b: np.ndarray
    loss: float  # exact loss of (W, b), theory.expected_loss (NaN beyond MAX_EXACT_FEATURES features)
    fitted_loss: float  # the loss the candidate was fitted on
    runner_up: str
    runner_up_loss: float

    @property
    def margin(self) -> float:
        return self.runner_up_loss - self.fitted_loss


def optimal(setup: Setup, candidates=None, progress: bool | None = False) -> Optimum:
    """The candidate of least loss for one setup (default: theory.catalogue), and the runner-up."""
    if not isinstance(setup, Setup):
        raise InputError(f"optimal needs a theory.Setup, got {type(setup).__name__}")
    candidates = _check(candidates, setup.n_features, setup.n_hidden)
    cells = np.empty((1, 1), dtype=object)
    cells[0, 0] = setup
    fits = fit_candidates(candidates, cells, progress)
    ranking = rank(fits.loss, [complexity(c) for c in candidates])
    best, second = int(ranking.phase[0, 0]), int(ranking.runner_up[0, 0])
    W, b = (x[0] for x in fits.solution(best, np.array([0])))
    names = [] if isinstance(candidates[best], Composite) else [t.name for t in candidates[best].parameters()]
    exact = np.nan
    if setup.n_features <= MAX_EXACT_FEATURES:
        exact = float(expected_loss_and_grad_many([setup], W[None], b[None]).loss[0])
    return Optimum(
        name=candidates[best].name,
        params={name: float(v) for name, v in zip(names, fits.theta[0, 0, best], strict=False)},
        W=W,
        b=b,
        loss=exact,
        fitted_loss=float(fits.loss[0, 0, best]),
        runner_up=candidates[second].name,
        runner_up_loss=float(fits.loss[0, 0, second]),
    )


def fitted_on_any(candidate, grouped: bool = False) -> str | None:
    """'closed form', 'exact loss', 'sampled loss', 'sum of blocks' or 'sum of blocks, one by Monte
    Carlo' (a composite with a block fitted on the sampled loss: the 5-orthoplex, the 5-demicube, the
    simplex prism)."""
    if not isinstance(candidate, Composite):
        return fitted_on(candidate, grouped)
    sampled = any(fitted_on(g) == "sampled loss" for s in candidate.shapes for g in s.geometries())
    return "sum of blocks, one by Monte Carlo" if sampled else "sum of blocks"


def phase_diagram(grid: Grid, candidates=None, progress=None, search: bool | None = None) -> xr.Dataset:
    """The optimal candidate at every cell of grid (default candidates: theory.catalogue).

    Returns a Dataset over grid.dims: each candidate's least loss (`loss`, dim
    geometry), `phase`, `runner_up` (indices into geometry), `margin`,
    `optimal_loss`, the optimum's `W`, `b` and their `exact_loss`, the
    features it represents, `dimensions_per_feature`, `max_angle_to_neuron`,
    `superposition_onset` per (p, importance); `theta` and `vertex_order` of
    every candidate; for composites the winning arrangement (`composite`) and
    each block shape's fit. progress: None (a bar on a terminal, else a line
    every ~10 s), False, or a theory.progress.Progress.

    search: also search all of W and b at every cell (search_optimum), and
    take its end point as the optimum where it is the better; None (the
    default) does so past MAX_EXACT_FEATURES features, where no exact
    completeness check reaches every density.
    """
    if not isinstance(grid, Grid):
        raise InputError(f"phase_diagram needs a theory.Grid, got {type(grid).__name__}")
    candidates = _check(candidates, grid.n_features, grid.n_hidden)
    setups = grid.setups()
    fits = fit_candidates(candidates, setups, progress)
    ds = _dataset(grid, candidates, setups, fits)
    if grid.n_features > MAX_EXACT_FEATURES if search is None else search:
        ds = search_optimum(ds, progress=progress)
    return ds


def search_optimum(
    ds: xr.Dataset, seed: int = 0, random_starts: tuple[int, int] = (2, 8), progress=None
) -> xr.Dataset:
    """Minimise the loss over all of W and b at every cell by theory.sampled.minimize_sampled, and take
    its end point as the diagram's optimum where its Monte Carlo loss is below the candidates' best by
    more than two standard errors of the difference: both models scored on the end point's samples
    (search_gap), where the samples' own spread cancels. Unpaired, a Monte Carlo score 2 standard
    errors low by chance (one cell in forty) would make an end point no better than the candidates'
    optimum the diagram's (at 20 in 5, importance 0.7**i, p = 0, density 0.05: the nested pairs and
    pentagon of the family, the same blocks at the end point, 1.2% lower by Monte Carlo alone).

    Each (p, importance value) is walked down in density, then back up. Down, a cell's starts are the
    candidates' optimum there, the end point at the next denser cell and at the previous p (same
    density), and random models (theory.direct.xavier_starts, seed + the cell's flat index):
    random_starts[0] of them, random_starts[1] at density <= SEARCH_SPARSE (local minima are many
    there, and evaluations cheap: at 20 in 5, p = 0.15, importance 0.9**i, density 0.05, 10 random
    starts end between 0.9955 and 1.43 times the trained optimum's loss). Up, the starts are the
    cell's own end point and the next sparser cell's, whose end point is kept if it is lower on the
    search's sample and then by Monte Carlo (on the same stream). Under dropout the dense optimum is
    found reliably and carries down to the sparse cells; at low density a random start can find a
    basin that carries back up. Every end point is also tried with its features rearranged, the
    longest columns given to the most important features (theory.sampled.minimize_sampled): a random
    start represents a random subset of the features.

    Adds `family_loss` (the candidates' best, what `optimal_loss` was), `search_loss` and
    `search_loss_stderr` (the end point's Monte Carlo loss), `search_gap` and `search_gap_stderr` (the
    end point's loss minus the candidates' optimum's, on the same samples; computed where search_loss is
    below family_loss, NaN elsewhere), `search_W`, `search_b`, `search_wins` and `search_rearranged`
    (the end point came from a rearranged one);
    where it wins, `optimal_loss` becomes `search_loss` and W, b are the end point's. The metrics of the
    optimum are computed again, with a feature represented when its column is longer than
    SEARCH_REPRESENTED.
    """
    grid = grid_of(ds)
    m, n = grid.n_hidden, grid.n_features
    P, A, D = len(grid.p), len(grid.labels), len(grid.sparsity)
    dims = ds.optimal_loss.dims
    family_W = ds.W.transpose(*dims, "hidden", "feature").values.reshape(P, A, D, m, n)
    family_b = ds.b.transpose(*dims, "feature").values.reshape(P, A, D, n)
    family = ds.optimal_loss.values.reshape(P, A, D)
    W, b = np.empty((P, A, D, m, n)), np.empty((P, A, D, n))
    loss, stderr = np.empty((P, A, D)), np.empty((P, A, D))
    moved = np.zeros((P, A, D), dtype=bool)
    order = np.argsort(grid.density)[::-1]  # dense first

    def search(k, a, i, warm, random, improve=False):
        setup = _setup_at(grid, k, a * D + i)
        if not np.any(setup.density > 0):  # no input is ever nonzero: the family's optimum is exact
            W[k, a, i], b[k, a, i] = family_W[k, a, i], family_b[k, a, i]
            loss[k, a, i], stderr[k, a, i] = family[k, a, i], 0.0
            bar.update()
            return
        cell = flat_cell(grid, k, a, i)
        random_W, random_b = xavier_starts(setup, random, seed + cell)
        starts = (
            np.concatenate([np.stack([w for w, _ in warm]), random_W]),
            np.concatenate([np.stack([v for _, v in warm]), random_b]),
        )
        # the seed fixes the cell's samples: both passes' Monte Carlo scores share one stream
        found = minimize_sampled(setup, starts, seed=seed + cell, incumbent=improve)
        if found is not None and (not improve or found.monte_carlo < loss[k, a, i]):
            W[k, a, i], b[k, a, i] = found.W, found.b
            loss[k, a, i], stderr[k, a, i] = found.monte_carlo, found.monte_carlo_stderr
            moved[k, a, i] = found.rearranged
        bar.update()

    show = Progress.switch(progress)  # a bar of its own
    total = P * A * (2 * D - 1)
    with Progress(total, "search over all of W, b (sampled loss)", "cell", show=show) as bar:
        for k, a in np.ndindex(P, A):
            for step, i in enumerate(order):  # down in density
                warm = [(family_W[k, a, i], family_b[k, a, i])]
                if step:
                    warm.append((W[k, a, order[step - 1]], b[k, a, order[step - 1]]))
                if k:
                    warm.append((W[k - 1, a, i], b[k - 1, a, i]))
                search(k, a, i, warm, random_starts[bool(grid.density[i] <= SEARCH_SPARSE * (1 + 1e-9))])
            for step in range(D - 2, -1, -1):  # back up, from the sparser neighbour's end point
                i, sparser = order[step], order[step + 1]
                warm = [(W[k, a, i], b[k, a, i]), (W[k, a, sparser], b[k, a, sparser])]
                search(k, a, i, warm, 0, improve=True)
    gap, gap_stderr = np.full((P, A, D), np.nan), np.full((P, A, D), np.nan)
    for k, a, i in zip(*np.nonzero((loss < family) & (stderr > 0)), strict=True):
        both = monte_carlo_losses(  # on the end point's rescore samples
            _setup_at(grid, k, a * D + i),
            np.stack([W[k, a, i], family_W[k, a, i]]),
            np.stack([b[k, a, i], family_b[k, a, i]]),
            n_samples=RESCORE_SAMPLES,
            seed=seed + flat_cell(grid, k, a, i) + RESCORE_SEED,
        )
        gap[k, a, i], gap_stderr[k, a, i] = both.mean[0] - both.mean[1], both.difference_stderr(0, 1)
    with np.errstate(invalid="ignore"):
        wins = gap + 2 * gap_stderr < 0
    best_W = np.where(wins[..., None, None], W, family_W).reshape(-1, m, n)
    best_b = np.where(wins[..., None], b, family_b).reshape(-1, n)
    shape = ds.optimal_loss.shape
    out = ds.copy()
    out["family_loss"] = ds.optimal_loss.copy()
    out["family_loss"].attrs["description"] = (
        "the candidates' least loss (the optimum where search_wins is false)"
    )
    out["search_loss"] = (
        dims,
        loss.reshape(shape),
        {"description": "least loss found over all W, b (theory.sampled.minimize_sampled), by Monte Carlo "
         "(theory.montecarlo, samples apart from the search's)", "samples": RESCORE_SAMPLES},
    )  # fmt: skip
    out["search_loss_stderr"] = (dims, stderr.reshape(shape), {"description": "its standard error"})
    out["search_gap"] = (
        dims,
        gap.reshape(shape),
        {"description": "search_loss minus the candidates' optimum's Monte Carlo loss on the same samples "
         "(where search_loss < family_loss; NaN elsewhere)"},
    )  # fmt: skip
    out["search_gap_stderr"] = (dims, gap_stderr.reshape(shape), {"description": "its standard error"})
    out["search_rearranged"] = (
        dims,
        moved.reshape(shape),
        {"description": "the search's end point came from an end point with its features rearranged "
         "(theory.sampled.rearranged: the longest columns to the most important features)"},
    )  # fmt: skip
    out["search_W"] = (dims + ("hidden", "feature"), W.reshape(shape + (m, n)))
    out["search_b"] = (dims + ("feature",), b.reshape(shape + (n,)))
    out["search_wins"] = (
        dims,
        wins.reshape(shape),
        {"description": "search_gap + 2 of its standard errors below 0: W, b and optimal_loss are the "
         "search's"},
    )  # fmt: skip
    out["optimal_loss"] = (
        dims,
        np.where(wins, loss, family).reshape(shape),
        {"description": "the optimum's loss: family_loss, or search_loss where search_wins"},
    )
    for name, variable in optimum_variables(grid, best_W, best_b, SEARCH_REPRESENTED).items():
        out[name] = variable
    return out


def flat_cell(grid: Grid, k: int, a: int, i: int) -> int:
    """The flat index of the cell at p index k, importance index a and sparsity index i: search_optimum
    draws that cell's samples with its seed + this (the search sample, the polish's, the Monte Carlo
    stream)."""
    return (k * len(grid.labels) + a) * len(grid.sparsity) + i


def _winners(fits: Fits, phase: np.ndarray, m: int, n: int):
    """The phase's W (C, m, n), b (C, n) and description (C,) over flat cells C."""
    flat = phase.ravel()
    W, b = np.empty((flat.size, m, n)), np.empty((flat.size, n))
    text = np.full(flat.size, "", dtype=object)
    for j in np.unique(flat):
        cells = np.flatnonzero(flat == j)
        W[cells], b[cells] = fits.solution(int(j), cells)
        if fits.describe is not None:
            text[cells] = fits.describe(int(j), cells)
    return W, b, text


def _dataset(grid: Grid, candidates, setups: np.ndarray, fits: Fits) -> xr.Dataset:
    n, m = grid.n_features, grid.n_hidden
    shape = grid.shape  # without the importance axis when the grid has none
    dims = grid.dims
    ranking = rank(fits.loss, [complexity(c) for c in candidates])
    W, b, text = _winners(fits, ranking.phase, m, n)
    exact = np.full(W.shape[0], np.nan)
    if n <= MAX_EXACT_FEATURES:
        exact = expected_loss_and_grad_many(list(setups.ravel()), W, b).loss

    def grid_shaped(values, tail=()):
        return np.asarray(values).reshape(shape + tuple(tail))

    variables = {
        "loss": (
            dims + ("geometry",),
            grid_shaped(fits.loss, [len(candidates)]),
            {
                "description": "each candidate's least loss over its parameters (see attrs['fitted_on'])",
                "convention": "sum over features, importance-weighted",
            },
        ),
        "phase": (
            dims,
            grid_shaped(ranking.phase),
            {"description": f"index into geometry: least loss (ties within {TIE} relative: attrs['ties'])"},
        ),
        "runner_up": (
            dims,
            grid_shaped(ranking.runner_up),
            {"description": "least-loss candidate not tied with the phase"},
        ),
        "margin": (
            dims,
            grid_shaped(ranking.margin),
            {"description": "runner-up's loss minus the optimum's"},
        ),
        "optimal_loss": (
            dims,
            grid_shaped(np.nanmin(np.where(np.isfinite(fits.loss), fits.loss, np.nan), -1)),
        ),
        "exact_loss": (
            dims,
            grid_shaped(exact),
            {
                "description": "theory.expected_loss of the optimal (W, b): a check on the fits (NaN "
                f"beyond {MAX_EXACT_FEATURES} features)"
            },
        ),
        **optimum_variables(grid, W, b),
        "vertex_order": (
            dims + ("geometry", "vertex"),
            grid_shaped(fits.vertex_order, [len(candidates), n]),
            {
                "description": "each polygon's features in the fitted vertex order (counter-clockwise from "
                "neuron 0 towards neuron 1, one polygon block after another; -1: none)"
            },
        ),
        "importance": (
            ((grid.importance_axis,) if grid.importance_axis else ()) + ("feature",),
            np.array([grid.importance_for(label) for label in grid.labels]).reshape(shape[1:-1] + (n,)),
        ),
    }
    if fits.theta.shape[-1]:
        variables["theta"] = (
            dims + ("geometry", "param"),
            grid_shaped(fits.theta, fits.theta.shape[-2:]),
            {"description": "optimised parameters; names per candidate in attrs['parameters']"},
        )
    if fits.describe is not None:
        variables["composite"] = (
            dims,
            grid_shaped(text.astype(str)),
            {"description": "the optimum: each block's kind and features (polygons in vertex order)"},
        )
    for name, (lead, values, attrs) in fits.extra.items():
        variables[name] = (lead + dims, values.reshape(values.shape[: len(lead)] + shape), attrs)
    attrs = {
        "kind": KIND,
        "n_features": n,
        "n_hidden": m,
        "grid": json.dumps(grid.to_dict()),
        "parameters": json.dumps(
            {c.name: [] if isinstance(c, Composite) else [t.name for t in c.parameters()] for c in candidates}
        ),
        "fitted_on": json.dumps(
            {c.name: fitted_on_any(c, grid.dropout_groups is not None) for c in candidates}
        ),
        "ties": "candidates within TIE of the least loss go to the least complexity: a geometry's "
        "parameter count; a composite's features represented, then polygons (at p = 0 a square is "
        "two antipodal pairs)",
    }
    if any(isinstance(c, Composite) for c in candidates):
        attrs["assumptions"] = ASSUMPTIONS
    ds = xr.Dataset(
        variables,
        coords={
            **grid.coords(),
            "geometry": [c.name for c in candidates],
            "param": np.arange(fits.theta.shape[-1]),
            "vertex": np.arange(n),
            "hidden": np.arange(m),
            "feature": np.arange(n),
            **fits.coords,
        },
        attrs=attrs,
    )
    ds["sparsity"].attrs["description"] = "probability that a feature is zero (density = 1 - sparsity)"
    ds["p"].attrs["description"] = "dropout rate on the hidden layer"
    if grid.importance_axis == "r":
        ds["r"].attrs["description"] = "importance of the last feature; the others' is 1"
    elif grid.importance_axis == "importance_decay":
        ds["importance_decay"].attrs["description"] = "importance_i = importance_decay**i"
    return ds


def optimum_variables(grid: Grid, W: np.ndarray, b: np.ndarray, tolerance: float = 0.0) -> dict:
    """The optimum's W (cells, m, n), b (cells, n) over the grid's flat cells, and what they show; a
    feature is represented when its column is longer than tolerance."""
    dims, shape, m, n = grid.dims, grid.shape, grid.n_hidden, grid.n_features
    count = represented(W, tolerance)
    longer = f"longer than {tolerance:g}" if tolerance else "nonzero"
    frobenius = (W**2).sum((-1, -2))
    beyond = count.reshape(len(grid.p), len(grid.labels), -1) > m  # more features than neurons
    return {
        "W": (dims + ("hidden", "feature"), W.reshape(shape + (m, n))),
        "b": (dims + ("feature",), b.reshape(shape + (n,))),
        "represented": (
            dims,
            count.reshape(shape),
            {"description": f"features the optimum represents (a column of W {longer})"},
        ),
        "dimensions_per_feature": (
            dims,
            (m / np.where(frobenius > 0, frobenius, np.nan)).reshape(shape),
            {"description": "m / ||W||_F^2 (TMS): 1 / (features per dimension)"},
        ),
        "max_angle_to_neuron": (
            dims,
            max_angle_to_neuron(W, max(tolerance, 1e-6)).reshape(shape),
            {
                "description": "largest angle between a represented feature's W column and its nearest "
                "neuron axis: 0 when every feature is neuron-aligned",
                "units": "degrees",
            },
        ),
        "superposition_onset": (
            dims[:-1],
            superposition_onset(grid.density, beyond).reshape(shape[:-1]),
            {
                "description": "largest density at which the optimum represents more features than neurons "
                "(NaN: nowhere on the grid)"
            },
        ),
    }


def grid_of(ds: xr.Dataset) -> Grid:
    """The Grid a phase diagram was computed on."""
    if ds.attrs.get("kind") != KIND or "grid" not in ds.attrs:
        raise InputError("not a phase diagram of theory.phase_diagram (no grid in its attrs)")
    return Grid(**json.loads(ds.attrs["grid"]))


def completeness(
    ds: xr.Dataset,
    cells: int = 2,
    n_starts: int | tuple[int, ...] = 8,
    seed: int = 0,
    tolerance: float = 1e-6,
    progress: bool | None = None,
    active: tuple[int, int, int] = (SEARCH_ACTIVE, POLISH_ACTIVE, CHECK_ACTIVE),
    where: xr.DataArray | None = None,
) -> xr.Dataset:
    """Minimise the loss over all of W and b at `cells` cells per p (evenly spaced over the importance
    values and densities in grid order, the last included), or at the cells `where` is true (a boolean
    DataArray on the diagram's dims); flag where it beats the candidates (a phase they are missing).
    n_starts: random starts per cell, or one such count per p.

    Within the exact loss's reach (at most MAX_EXACT_FEATURES features): multistart L-BFGS-B on the
    exact loss (theory.optimize.minimize_loss); adds `exact_minimum` (NaN where not sampled) and
    `missing_phase` (exact minimum below the best candidate's by more than tolerance, relative).

    Past it: only cells of density <= TRUNCATED_DENSEST, each by theory.direct.minimize_truncated
    (search, polish and check on the loss truncated to `active` = (search, polish, check) active
    features), from n_starts random starts, the diagram's optimum at the cell and the minimum found at
    the same cell for the previous p; adds `direct_lower`, `direct_upper` (its rigorous bracket),
    `direct_monte_carlo` and `_stderr`, `direct_W`, `direct_b`, and `missing_phase`: the bracket's
    upper end below the best candidate's loss by more than tolerance (the candidates certainly miss a
    phase there).
    """
    if where is None and (isinstance(cells, bool) or not isinstance(cells, int) or cells < 1):
        raise InputError(f"completeness cells = {cells!r} is not allowed; it must be an integer >= 1")
    if len(tuple(active)) != 3:
        raise InputError(f"active = {active!r} is not allowed; give (search, polish, check) active features")
    grid = grid_of(ds)
    truncated = grid.n_features > MAX_EXACT_FEATURES
    chosen = _chosen_cells(ds, grid, cells, where, truncated)
    starts = np.asarray(n_starts)
    if starts.dtype.kind not in "iu" or (starts < 0).any() or starts.shape not in ((), (len(grid.p),)):
        raise InputError(f"n_starts = {n_starts!r} is not allowed: an integer >= 0, or one per p")
    starts = np.broadcast_to(starts, (len(grid.p),))
    dims, shape = ds.optimal_loss.dims, ds.optimal_loss.shape
    out = ds.copy()
    if truncated:
        found = _direct_minima(ds, grid, chosen, starts, seed, progress, active)
        what = f"search on at most {active[0]} active, polish on {active[1]}, bracket on {active[2]}"
        out["direct_lower"] = (
            dims,
            found["lower"].reshape(shape),
            {"description": f"least loss found over all W, b ({what}): rigorous lower end of its loss; "
             "NaN where not sampled", "active": list(active)},
        )  # fmt: skip
        out["direct_upper"] = (dims, found["upper"].reshape(shape), {"description": "its upper end"})
        out["direct_monte_carlo"] = (
            dims,
            found["mc"].reshape(shape),
            {"description": "its loss by Monte Carlo (theory.montecarlo)"},
        )
        out["direct_monte_carlo_stderr"] = (dims, found["mc_se"].reshape(shape))
        out["direct_W"] = (dims + ("hidden", "feature"), found["W"].reshape(shape + found["W"].shape[-2:]))
        out["direct_b"] = (dims + ("feature",), found["b"].reshape(shape + found["b"].shape[-1:]))
        family = out.family_loss if "family_loss" in out else out.optimal_loss  # the candidates' best
        out["missing_phase"] = out.direct_upper < family * (1 - tolerance)
        out["missing_phase"].attrs["description"] = (
            f"the direct minimum's rigorous upper end below the catalogue's best by > {tolerance} relative"
        )
        return out
    m, n = grid.n_hidden, grid.n_features
    minimum = np.full(chosen.shape, np.nan)
    W = np.full(chosen.shape + (m, n), np.nan)
    b = np.full(chosen.shape + (n,), np.nan)
    with Progress(int(chosen.sum()), "completeness", "cell", show=progress) as bar:
        for k, c in zip(*np.nonzero(chosen), strict=True):
            found = minimize_loss(_setup_at(grid, k, c), n_starts=int(starts[k]), seed=seed)
            minimum[k, c], W[k, c], b[k, c] = found.loss, found.W, found.b
            bar.update()
    out["exact_minimum"] = (
        dims,
        minimum.reshape(shape),
        {"description": "least exact loss over all W, b (multistart L-BFGS-B); NaN where not sampled"},
    )
    out["exact_W"] = (dims + ("hidden", "feature"), W.reshape(shape + (m, n)), {"description": "its W"})
    out["exact_b"] = (dims + ("feature",), b.reshape(shape + (n,)), {"description": "its b"})
    gap = (out.optimal_loss - out.exact_minimum) / np.maximum(out.exact_minimum, 1e-300)
    out["missing_phase"] = gap > tolerance
    out["missing_phase"].attrs["description"] = (
        f"exact minimum below the catalogue's best by > {tolerance} relative"
    )
    return out


def _setup_at(grid: Grid, k: int, c: int) -> Setup:
    """The Setup of cell c (importance value x sparsity, flattened) at the grid's k-th p."""
    a, i = np.unravel_index(c, (len(grid.labels), len(grid.sparsity)))
    return grid.setup(grid.p[k], grid.labels[a], grid.sparsity[i])


def _chosen_cells(ds: xr.Dataset, grid: Grid, cells, where, truncated: bool) -> np.ndarray:
    """(p, importance values x sparsity) booleans: the cells completeness runs at."""
    per_p = len(grid.labels) * len(grid.sparsity)
    density = np.tile(1.0 - np.asarray(grid.sparsity, dtype=float), len(grid.labels))
    allowed = density <= TRUNCATED_DENSEST * (1 + 1e-9) if truncated else np.ones(per_p, dtype=bool)
    only = f"completeness past {MAX_EXACT_FEATURES} features runs at density <= {TRUNCATED_DENSEST} only"
    if where is not None:
        chosen = where.broadcast_like(ds.optimal_loss).transpose(*ds.optimal_loss.dims).values
        chosen = chosen.astype(bool).reshape(len(grid.p), per_p)
        if (chosen & ~allowed).any():
            raise InputError(f"{only}; `where` picks denser cells")
        return chosen
    candidates = np.flatnonzero(allowed)
    if not len(candidates):
        raise InputError(f"{only}; the grid has no such density")
    spread = np.linspace(len(candidates) - 1, 0, min(cells, len(candidates))).round().astype(int)
    chosen = np.zeros((len(grid.p), per_p), dtype=bool)
    chosen[:, candidates[np.unique(spread)]] = True
    return chosen


def _direct_minima(ds, grid: Grid, chosen: np.ndarray, starts, seed, progress, active) -> dict:
    """theory.direct.minimize_truncated at the chosen cells, p by p, each from starts[p] random starts, the
    diagram's optimum there and the previous p's minimum at the same cell (where computed)."""
    m, n = grid.n_hidden, grid.n_features
    lower, upper, mc, mc_se = (np.full(chosen.shape, np.nan) for _ in range(4))
    W = np.full(chosen.shape + (m, n), np.nan)
    b = np.full(chosen.shape + (n,), np.nan)
    dims = ds.optimal_loss.dims
    optimum_W = ds.W.transpose(*dims, "hidden", "feature").values.reshape(chosen.shape + (m, n))
    optimum_b = ds.b.transpose(*dims, "feature").values.reshape(chosen.shape + (n,))
    search, polish, check = active
    with Progress(int(chosen.sum()), "completeness (truncated loss)", "cell", show=progress) as bar:
        for k, c in zip(*np.nonzero(chosen), strict=True):
            previous = [k - 1] if k and chosen[k - 1, c] else []  # the previous p's minimum, if found
            warm_W = np.concatenate([optimum_W[k, c][None], W[previous, c]])
            warm_b = np.concatenate([optimum_b[k, c][None], b[previous, c]])
            found = minimize_truncated(
                _setup_at(grid, k, c),
                n_starts=int(starts[k]),
                seed=seed,
                starts=(warm_W, warm_b),
                search_active=search,
                polish_active=polish,
                check_active=check,
            )
            lower[k, c], upper[k, c] = found.lower, found.upper
            mc[k, c], mc_se[k, c] = found.monte_carlo, found.monte_carlo_stderr
            W[k, c], b[k, c] = found.W, found.b
            bar.update()
    return {"lower": lower, "upper": upper, "mc": mc, "mc_se": mc_se, "W": W, "b": b}
