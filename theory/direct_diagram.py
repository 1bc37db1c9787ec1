"""The optimum over all of W and b at every cell of a grid, on the exact loss: no candidate family.

For problems within the exact loss's reach (at most MAX_EXACT_FEATURES features) whose optima the
catalogue does not describe, above all when the hidden units are dropped in groups (Setup's
dropout_groups), which the closed forms do not model. Each (p, importance value) row is walked down in
density (starts: `n_starts` random models, theory.direct.xavier_starts, and the denser cell's optimum),
then back up (the sparser cell's optimum, kept where lower). Every run is an L-BFGS-B minimisation of
the exact loss (theory.compiled_loss), all the cells' runs of one density batched
(theory.optimize.minimize_each).

The check that comes with it: every optimum re-scored by theory.montecarlo (independent code) on
`samples` inputs, stored beside the exact loss with its standard error.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from theory.diagram import SEARCH_REPRESENTED, optimum_variables
from theory.direct import xavier_starts
from theory.errors import InputError
from theory.grid import Grid
from theory.loss import MAX_EXACT_FEATURES
from theory.metrics import group_variables, neurons_per_feature, superposition
from theory.montecarlo import monte_carlo_loss
from theory.optimize import minimize_each
from theory.progress import Progress

KIND = "tms-dropout direct diagram"
#: A start "reached the optimum" when its end point is within this relative loss of the cell's best.
REACHED = 1e-6
#: The Monte Carlo check's floor on its standard error: a zero loss (p = 0, every feature dedicated) has
#: zero sample variance, and its exact and sampled values differ by rounding only.
ROUNDING = 1e-12


def direct_diagram(
    grid: Grid, n_starts: int = 8, seed: int = 0, samples: int = 1 << 20, progress=None
) -> xr.Dataset:
    """The least exact loss over all W, b at every cell of `grid`, its model and what it shows.

    Returns a Dataset over grid.dims: `optimal_loss`, `W`, `b`, the metrics of theory.diagram's optimum
    (a feature represented when its column is longer than SEARCH_REPRESENTED), per feature `norm`,
    `superposition`, `neurons_per_feature` and `groups_per_feature`, per dropout group `group_norm2`
    and `group_dimensions_per_feature`, `reached` (the fraction of the random starts that ended at the
    optimum: how often a single run would find it) and `monte_carlo` (with `_stderr`).
    """
    if not isinstance(grid, Grid):
        raise InputError(f"direct_diagram needs a theory.Grid, got {type(grid).__name__}")
    if grid.n_features > MAX_EXACT_FEATURES:
        raise InputError(
            f"n_features = {grid.n_features}: the direct diagram needs the exact loss (at most "
            f"{MAX_EXACT_FEATURES} features); theory.phase_diagram searches larger problems"
        )
    if isinstance(n_starts, bool) or not isinstance(n_starts, int) or n_starts < 1:
        raise InputError(f"n_starts = {n_starts!r} is not allowed; it must be an integer >= 1")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise InputError(f"samples = {samples!r} is not allowed; it must be an integer >= 2")
    setups = grid.setups().reshape(-1, len(grid.sparsity))  # (rows, D)
    rows, D = setups.shape
    m, n = grid.n_hidden, grid.n_features
    W, b = np.empty((rows, D, m, n)), np.empty((rows, D, n))
    loss, reached = np.empty((rows, D)), np.empty((rows, D))
    order = np.argsort(grid.density)[::-1]  # dense first
    with Progress.of(progress, 2 * D + 1, "direct diagram", "density") as bar:
        for step, i in enumerate(order):
            starts_W, starts_b, owner = [], [], []
            for r in range(rows):
                random_W, random_b = xavier_starts(setups[r, i], n_starts, seed + r * D + i)
                warm = [(W[r, order[step - 1]], b[r, order[step - 1]])] if step else []
                starts_W += [*random_W, *(w for w, _ in warm)]
                starts_b += [*random_b, *(v for _, v in warm)]
                owner += [r] * (n_starts + len(warm))
            owner = np.array(owner)
            ends = minimize_each([setups[r, i] for r in owner], np.array(starts_W), np.array(starts_b))
            end_W, end_b, end_loss = ends.W, ends.b, ends.loss
            for r in range(rows):
                mine = np.flatnonzero(owner == r)
                best = mine[np.argmin(end_loss[mine])]
                W[r, i], b[r, i], loss[r, i] = end_W[best], end_b[best], end_loss[best]
                random = end_loss[mine[:n_starts]]
                reached[r, i] = np.mean(random <= loss[r, i] + REACHED * abs(loss[r, i]) + 1e-15)
            bar.update()
        for step in range(D - 2, -1, -1):  # back up: the sparser cell's optimum as a start
            i, sparser = order[step], order[step + 1]
            ends = minimize_each(list(setups[:, i]), W[:, sparser], b[:, sparser])
            better = ends.loss < loss[:, i]
            W[better, i], b[better, i], loss[better, i] = ends.W[better], ends.b[better], ends.loss[better]
            bar.update()
        mc, mc_se = np.empty((rows, D)), np.empty((rows, D))
        for r, i in np.ndindex(rows, D):
            found = monte_carlo_loss(setups[r, i], W[r, i], b[r, i], n_samples=samples, seed=seed + r * D + i)
            mc[r, i], mc_se[r, i] = found.mean, found.stderr
        bar.update()
    return _dataset(grid, W, b, loss, reached, mc, mc_se, n_starts, samples, seed)


def _dataset(grid: Grid, W, b, loss, reached, mc, mc_se, n_starts, samples, seed) -> xr.Dataset:
    dims, shape, n = grid.dims, grid.shape, grid.n_features
    groups = grid.unit_groups
    flat_W, flat_b = W.reshape(-1, grid.n_hidden, n), b.reshape(-1, n)
    variables = optimum_variables(grid, flat_W, flat_b, SEARCH_REPRESENTED)
    per_feature = dims + ("feature",)
    variables.update(
        optimal_loss=(dims, loss.reshape(shape), {"description": "least exact loss found over all W, b"}),
        reached=(
            dims,
            reached.reshape(shape),
            {
                "description": f"fraction of the {n_starts} random starts that ended within {REACHED:g} "
                "(relative) of the optimum"
            },
        ),  # fmt: skip
        monte_carlo=(
            dims,
            mc.reshape(shape),
            {"description": f"the optimum's loss by theory.montecarlo ({samples} samples): the check"},
        ),
        monte_carlo_stderr=(dims, mc_se.reshape(shape)),
        monte_carlo_z=(
            dims,
            ((mc - loss) / np.hypot(mc_se, ROUNDING)).reshape(shape),
            {
                "description": f"(Monte Carlo - exact) / hypot(stderr, {ROUNDING:g}): beyond about 4, the "
                "exact loss or the optimum is wrong (the floor: where the loss is 0, the stderr is too)"
            },
        ),  # fmt: skip
        norm=(per_feature, np.linalg.norm(flat_W, axis=-2).reshape(shape + (n,))),
        superposition=(
            per_feature,
            superposition(flat_W).reshape(shape + (n,)),
            {"description": "sum over other features j of (W_i_hat . W_j)^2"},
        ),
        neurons_per_feature=(
            per_feature,
            neurons_per_feature(flat_W).reshape(shape + (n,)),
            {"description": "participation ratio of the column's squared entries over the hidden units"},
        ),
    )
    for name, (extra, values, attrs) in group_variables(flat_W, groups).items():
        variables[name] = (dims + extra, values.reshape(shape + values.shape[1:]), attrs)
    return xr.Dataset(
        variables,
        coords={**grid.coords(), "feature": np.arange(n), "group": np.arange(int(groups.max()) + 1)},
        attrs={
            "kind": KIND,
            "grid": json.dumps(grid.to_dict()),
            "n_starts": n_starts,
            "samples": samples,
            "represented_above": SEARCH_REPRESENTED,
            "seed": seed,
            "unit_groups": json.dumps(groups.tolist()),
        },
    )
