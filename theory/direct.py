"""The least loss over all of W and b past the exact loss's reach: search and polish on the exact loss
truncated to few active features, then bracket the end point rigorously and re-score it by Monte Carlo.

With n features the exact loss sums over all 2^n active sets (theory.loss:
at most MAX_EXACT_FEATURES). At low density the sets of many active features
are rare: the loss over the sets of at most k features (a lower bound of the
loss) is its bulk, and theory.loss.bracket bounds the rest rigorously. Its
minimiser is not the loss's, so the search runs in stages:

1. search: L-BFGS-B from every start on the loss truncated to
   `search_active` features (cheap: 20 in 5 at k = 3 costs about 9 ms an
   evaluation with its gradient without dropout, 32 times that with);
2. polish: the `polish` best end points, minimised again on the loss
   truncated to `polish_active` features;
3. check: the best of them, its loss bracketed at `check_active`
   (theory.compiled_loss.expected_loss_bounds_compiled) and re-scored by
   Monte Carlo (theory.montecarlo, independent code).

What comes out is a model (W, b) with a rigorous interval for its loss: an
upper bound on the least loss, the completeness check of theory.diagram
where the exact loss is out of reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.compiled_loss import expected_loss_bounds_compiled
from theory.errors import InputError
from theory.loss import check_max_active
from theory.montecarlo import monte_carlo_loss
from theory.optimize import minimize_each
from theory.setup import Setup

SEARCH_ACTIVE = 3
POLISH_ACTIVE = 5
CHECK_ACTIVE = 6
#: Past the exact loss's reach, the truncated loss's bracket is used at densities up to this only (it
#: widens with the chance of many active features): theory.diagram's completeness check, and the
#: bracket of a block fitted on the sampled loss (theory.sampled_fit).
TRUNCATED_DENSEST = 0.1
#: L-BFGS-B's stopping rule here: the truncated objective is a lower bound of the loss, not the loss, so
#: converging it to rounding (theory.optimize.EXACT_OPTIONS) buys nothing the bracket could show
OPTIONS = {"maxiter": 1000, "ftol": 1e-12, "gtol": 1e-8}


@dataclass(frozen=True)
class DirectMinimum:
    """The best model found, its truncated loss (the objective it was polished on), its rigorous bracket
    and its Monte Carlo re-score; every start's search loss (sorted) and the truncations used."""

    W: np.ndarray
    b: np.ndarray
    truncated: float
    lower: float
    upper: float
    monte_carlo: float
    monte_carlo_stderr: float
    search_losses: np.ndarray
    search_active: int
    polish_active: int
    check_active: int


def xavier_starts(setup: Setup, n_starts: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n_starts random models as training initialises them: W ~ N(0, 2 / (m + n)) (Xavier normal), b = 0."""
    if isinstance(n_starts, bool) or not isinstance(n_starts, int) or n_starts < 0:
        raise InputError(f"n_starts = {n_starts!r} is not allowed; it must be an integer >= 0")
    m, n = setup.n_hidden, setup.n_features
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, np.sqrt(2.0 / (m + n)), (n_starts, m, n)), np.zeros((n_starts, n))


def minimize_truncated(
    setup: Setup,
    n_starts: int = 8,
    seed: int = 0,
    starts: tuple[np.ndarray, np.ndarray] | None = None,
    search_active: int = SEARCH_ACTIVE,
    polish_active: int = POLISH_ACTIVE,
    check_active: int = CHECK_ACTIVE,
    polish: int = 2,
    samples: int = 2_000_000,
) -> DirectMinimum:
    """Search, polish and check (the module's three stages) from n_starts random starts (xavier_starts)
    and the given starts (W (S, m, n), b (S, n): a neighbouring cell's minimum, a geometry's optimum).

    Needs search_active <= polish_active <= check_active. The Monte Carlo re-score draws `samples`
    samples with its own seed (seed + 1)."""
    search_active = check_max_active(setup, search_active)
    polish_active = check_max_active(setup, polish_active)
    check_active = check_max_active(setup, check_active)
    if not search_active <= polish_active <= check_active:
        raise InputError(
            f"search_active {search_active}, polish_active {polish_active} and check_active "
            f"{check_active} must not decrease"
        )
    if isinstance(polish, bool) or not isinstance(polish, int) or polish < 1:
        raise InputError(f"polish = {polish!r} is not allowed; it must be an integer >= 1")
    W, b = xavier_starts(setup, n_starts, seed)
    if starts is not None:
        given_W, given_b = setup.check_parameters(*starts)
        if given_W.ndim != 3 or given_b.shape != (len(given_W), setup.n_features):
            raise InputError(f"starts W {given_W.shape} and b {given_b.shape} must be (S, m, n) and (S, n)")
        W, b = np.concatenate([W, given_W]), np.concatenate([b, given_b])
    if not len(W):
        raise InputError("no start: give n_starts >= 1 or starts")
    searched = minimize_each(setup, W, b, max_active=search_active, options=OPTIONS)
    best = np.argsort(searched.loss)[:polish]
    polished = minimize_each(
        setup, searched.W[best], searched.b[best], max_active=polish_active, options=OPTIONS
    )
    top = int(np.argmin(polished.loss))
    W, b = polished.W[top], polished.b[top]
    bounds = expected_loss_bounds_compiled(setup, W, b, check_active)
    sampled = monte_carlo_loss(setup, W, b, n_samples=samples, seed=seed + 1)
    return DirectMinimum(
        W=W,
        b=b,
        truncated=float(polished.loss[top]),
        lower=float(bounds.lower),
        upper=float(bounds.upper),
        monte_carlo=sampled.mean,
        monte_carlo_stderr=sampled.stderr,
        search_losses=np.sort(searched.loss),
        search_active=search_active,
        polish_active=polish_active,
        check_active=check_active,
    )
