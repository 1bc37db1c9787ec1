"""Fits: what a fitter returns for its candidates over a grid's cells, for theory.diagram to rank."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np


@dataclass
class Fits:
    """One fitter's results for G candidates over cells of shape C (p first).

    solution(j, flat_cells) -> (W (N, m, n), b (N, n)): candidate j's optimum
    at cells given as flat indices into C (built on demand: only winners need it).
    extra: Dataset variables only this kind of candidate has, name -> (dims, values, attrs),
    the dims after the grid's.
    """

    loss: np.ndarray  # C + (G,)
    theta: np.ndarray  # C + (G, K), NaN-padded
    vertex_order: np.ndarray  # C + (G, n): polygons' features counter-clockwise, -1 for none
    solution: Callable[[int, np.ndarray], tuple[np.ndarray, np.ndarray]]
    extra: dict = field(default_factory=dict)
    describe: Callable[[int, np.ndarray], list[str]] | None = None
    coords: dict = field(default_factory=dict)


#: Candidates within this relative loss of the least are tied: the families are
#: nested (an antipodal pair with one norm at 0 is a dedicated feature), so the
#: phase is the tied candidate of least complexity (for a geometry: its parameter count).
TIE = 1e-9


@dataclass(frozen=True)
class Ranking:
    """Per cell: the phase and the runner-up (indices into the candidates) and the margin between them."""

    phase: np.ndarray
    runner_up: np.ndarray
    margin: np.ndarray


def rank(losses: np.ndarray, complexity) -> Ranking:
    """Phase, runner-up and margin from losses (..., G); a failed (NaN) fit never wins; ties (TIE)
    go to the least complexity."""
    losses = np.where(np.isfinite(losses), losses, np.inf)
    best = losses.min(-1, keepdims=True)
    tied = losses <= best * (1 + TIE) + 1e-15
    simplest = np.where(tied, np.asarray(complexity, dtype=float), np.inf)
    phase = np.argmin(simplest, axis=-1)
    others = np.where(tied, np.inf, losses)
    runner_up = np.argmin(others, axis=-1)
    with np.errstate(invalid="ignore"):  # no finite candidate: inf - inf, NaN
        margin = np.take_along_axis(others, runner_up[..., None], -1)[..., 0] - best[..., 0]
    return Ranking(phase, runner_up, margin)


def fitted_on(geometry, grouped: bool = False) -> str:
    """How a geometry is fitted: 'sampled loss' (it has a block with too many features for the exact
    loss: the orthoplex, the demicube, the simplex prism), 'exact loss' (a polygon or a solid block, or
    the hidden units are dropped in groups, which the closed forms do not model) or 'closed form'."""
    if any(block.type.sampled for block in geometry.blocks):
        return "sampled loss"
    exact = grouped or any(block.type.exact for block in geometry.blocks)
    return "exact loss" if exact else "closed form"


def grouped(setups) -> bool:
    """Whether any of the setups (an array or sequence) drops its hidden units in groups."""
    return any(s.dropout_groups is not None for s in np.asarray(setups, dtype=object).flat)


def fit_geometries(geometries, setups: np.ndarray, progress=None, ceiling=None) -> Fits:
    """Every geometry fitted the way it is fitted (fitted_on), over cells setups (P, ..., D), joined.
    ceiling (P, ..., D): where the sampled-loss fits are screened (theory.sampled_fit; None: nowhere)."""
    from theory import closed_fit, exact_fit, sampled_fit

    groups = {
        "closed form": closed_fit.fit,
        "exact loss": exact_fit.fit,
        "sampled loss": partial(sampled_fit.fit, ceiling=ceiling),
    }
    by_groups = grouped(setups)
    parts = []
    for kind, fitter in groups.items():
        members = [j for j, g in enumerate(geometries) if fitted_on(g, by_groups) == kind]
        if members:
            parts.append((members, fitter([geometries[j] for j in members], setups, progress)))
    return join(parts, len(geometries))


def join(parts: list[tuple[list[int], Fits]], count: int) -> Fits:
    """Fits of disjoint candidate groups (their indices, their Fits) as one Fits over all count."""
    if len(parts) == 1 and parts[0][0] == list(range(count)):
        return parts[0][1]
    cells = parts[0][1].loss.shape[:-1]
    K = max(f.theta.shape[-1] for _, f in parts)
    n = parts[0][1].vertex_order.shape[-1]
    loss = np.full(cells + (count,), np.nan)
    theta = np.full(cells + (count, K), np.nan)
    vertex_order = np.full(cells + (count, n), -1)
    owner = {}
    for members, fits in parts:
        loss[..., members] = fits.loss
        theta[..., members, : fits.theta.shape[-1]] = fits.theta
        vertex_order[..., members, :] = fits.vertex_order
        for e, j in enumerate(members):
            owner[j] = (fits, e)

    def solution(j, flat_cells):
        fits, e = owner[j]
        return fits.solution(e, flat_cells)

    describe = None
    if all(fits.describe for _, fits in parts):

        def describe(j, flat_cells):
            fits, e = owner[j]
            return fits.describe(e, flat_cells)

    extra = {}
    for members, fits in parts:
        for key, (dims, values, attrs) in fits.extra.items():
            if dims == ("geometry",):  # one value per candidate: NaN for the other fitters' candidates
                full = np.full(cells + (count,), np.nan)
                full[..., members] = values
                values = full
            extra[key] = (dims, values, attrs)
    coords = {k: v for _, fits in parts for k, v in fits.coords.items()}
    return Fits(loss, theta, vertex_order, solution, extra, describe, coords)
