"""Fitting geometries past the exact loss's reach on the sampled loss: the 5-orthoplex (10 features on 5),
the 5-demicube (16 on 5) and the simplex prism (20 on 5).

The exact loss of 16 features sums over 2^16 active sets (theory.loss stops at
MAX_EXACT_FEATURES). A geometry with a block whose kind is `sampled`
(theory.blocks: the demicube, the simplex prism) is fitted like the search over all of W and b
(theory.sampled), but over its few parameters theta: L-BFGS-B on the sampled
loss L_N(W(theta), b(theta)), its gradient chained through the Jacobian of
W(theta), b(theta) (theory.exact_fit.Family); the best end point minimised
again on a sample of its own, twice the size; then scored by Monte Carlo on
fresh samples (theory.montecarlo, independent code): the loss it is ranked
by, with its standard error. Where density <= TRUNCATED_DENSEST the score is
also bracketed rigorously on the exact loss truncated to CHECK_ACTIVE active
features (theory.loss.bracket), an independent check stored beside it.

Where it is fitted: at densities up to its sampled kinds' `densest` only, and
under dropout only where a kind is `dropout_only` (theory.blocks; elsewhere its
loss is NaN, and a NaN never wins a cell). Each
row of cells is walked from the sparsest density up: the sparsest from
RANDOM_STARTS random starts, each denser cell from its sparser neighbour's
optimum and one random start (norms and biases at START_NORM, START_BIAS,
angles uniform; FIRST_STEP says why the fits take a short first step).

Screening: a caller may give each cell a ceiling, the loss above which the
geometry cannot matter there (theory.composite: SCREEN above the best candidate
fitted on the exact loss). Where the search's best L_N ends above it, the cell
is not polished, scored or bracketed, and the rest of its row (denser cells)
is not fitted: NaN, like a cell above `densest`. Its L_N is kept (`screened_at`).
This rests on the geometry's excess over the best candidate growing with the
density along a row, as it does for both sampled kinds on the 20-in-5 grids
(where the demicube or the prism is within SCREEN of the best it is so at
every sparser cell of its row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from theory.compiled_loss import expected_loss_bounds_compiled
from theory.direct import CHECK_ACTIVE, TRUNCATED_DENSEST
from theory.exact_fit import Family
from theory.fits import Fits
from theory.geometries import Geometry
from theory.montecarlo import monte_carlo_loss
from theory.progress import Progress
from theory.sampled import OPTIONS, RESCORE_SAMPLES, SEARCH_SAMPLES, SampledLoss, one_blas_thread

#: Random turns at the sparsest cell of each row.
RANDOM_STARTS = 4
#: A random start's norm and bias (the demicube's optimum at density 0.05-0.14: norm 0.8-1.1, bias -0.35
#: to -0.2; the simplex prism's where it wins, density 0.05-0.07: norms 1.0-1.12, biases -0.36 to -0.33).
START_NORM, START_BIAS = 1.0, -0.2
#: L-BFGS-B's first step has length 1 in its variables; the fits run on theta / FIRST_STEP, so that it
#: is FIRST_STEP in theta (later steps do not depend on the scale). A unit first step from a random
#: start often drives a norm to its bound 0, where the gradient in it is 0 (the loss sees a norm through
#: W^T D W, its square), or biases so far below zero that no input reaches them (every ReLU off, the
#: gradient 0); the search ends there. The simplex prism at 20 in 5, importance 0.9**i, p = 0.4,
#: density 0.07: with a unit first step 7 of 8 random starts ended with the norm of its ten most
#: important features at 0 (1.49 times the best end's loss), with a first step of 0.1 none did.
FIRST_STEP = 0.1


def dropout_only(geometry: Geometry) -> bool:
    """Whether a geometry with sampled blocks is fitted under dropout only (a block's kind says so)."""
    return any(block.type.dropout_only for block in geometry.blocks if block.type.sampled)


def densest(geometry: Geometry) -> float:
    """The densest cell a geometry with sampled blocks is fitted at: the least of their kinds' `densest`."""
    return min(block.type.densest for block in geometry.blocks if block.type.sampled)


def fitted_cells(density, geometry: Geometry) -> np.ndarray:
    """The indices of the densities a sampled-loss fit of the geometry runs at (<= densest(geometry)),
    sparsest first."""
    density = np.asarray(density, dtype=float)
    fitted = np.flatnonzero(density <= densest(geometry) * (1 + 1e-9))
    return fitted[np.argsort(density[fitted], kind="stable")]


def _start(geometry: Geometry, setup, rng: np.random.Generator) -> np.ndarray:
    """Norms START_NORM, biases START_BIAS (an ignored feature's at its mean), angles uniform on (-pi, pi)
    or on their kind's start_ranges."""
    names = [t.name for t in geometry.parameters()]
    ranges = {}
    for block in geometry.blocks:
        ranges |= block.type.start_ranges(block)
    ignored = {f"b_{b.features[0]}": b.features[0] for b in geometry.blocks if not b.type.represents}
    out = np.empty(len(names))
    for i, (name, role) in enumerate(zip(names, geometry.roles(), strict=True)):
        if name in ignored:
            out[i] = setup.density[ignored[name]] / 2
        else:
            out[i] = {"norm": START_NORM, "bias": START_BIAS}.get(role, np.nan)
            if role == "angle":
                out[i] = rng.uniform(*ranges.get(name, (-np.pi, np.pi)))
    return out


def objective(family: Family, sampled: SampledLoss):
    """theta -> (L_N(W(theta), b(theta)), its gradient in theta: the chain rule through the Jacobian)."""

    def f(x):
        W, b, J = family(np.asarray(x, dtype=float)[None])
        value, grad_W, grad_b = sampled.loss_and_grad(W[0], b[0])
        return value, np.concatenate([grad_W.ravel(), grad_b]) @ J[0]

    return f


def _minimize(family: Family, sampled: SampledLoss, theta: np.ndarray):
    """L-BFGS-B on L_N from theta, run on theta / FIRST_STEP (its gradient tolerance scaled to match)."""
    f = objective(family, sampled)

    def scaled(z):
        value, grad = f(z * FIRST_STEP)
        return value, grad * FIRST_STEP

    bounds = [tuple(None if x is None else x / FIRST_STEP for x in span) for span in family.bounds]
    with one_blas_thread():
        end = minimize(
            scaled,
            theta / FIRST_STEP,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options=OPTIONS | {"gtol": OPTIONS["gtol"] * FIRST_STEP},
        )
    return end.x * FIRST_STEP, float(end.fun)


@dataclass(frozen=True)
class CellFit:
    """One cell's sampled-loss fit: theta at the end; L_N at the end of the search (its best start);
    L_N at the end of the polish, the Monte Carlo score and its standard error and the truncated-loss
    bracket (NaN where screened, and the bracket also where density > TRUNCATED_DENSEST)."""

    theta: np.ndarray
    searched: float
    sampled: float = np.nan
    loss: float = np.nan
    stderr: float = np.nan
    lower: float = np.nan
    upper: float = np.nan

    @property
    def screened(self) -> bool:
        return bool(np.isnan(self.loss))


def fit_cell(
    geometry: Geometry, setup, starts: list[np.ndarray], seed: int, ceiling: float = np.inf
) -> CellFit:
    """The geometry fitted at one setup from the given starts (module docstring); screened (no polish,
    score or bracket) where the search's best L_N is above ceiling. The three samples use seed,
    seed + 1, seed + 2."""
    family = Family.of(geometry)
    samples = SEARCH_SAMPLES
    search = SampledLoss.draw(setup, samples, seed)
    theta, searched = min((_minimize(family, search, x) for x in starts), key=lambda end: end[1])
    if searched > ceiling:
        return CellFit(theta, searched)
    theta, polished = _minimize(family, SampledLoss.draw(setup, 2 * samples, seed + 1), theta)
    W, b, _ = family(theta[None])
    score = monte_carlo_loss(setup, W[0], b[0], n_samples=RESCORE_SAMPLES, seed=seed + 2)
    lower = upper = np.nan
    if np.max(setup.density) <= TRUNCATED_DENSEST * (1 + 1e-9):
        bounds = expected_loss_bounds_compiled(setup, W[0], b[0], CHECK_ACTIVE)
        lower, upper = float(bounds.lower), float(bounds.upper)
    return CellFit(theta, searched, polished, score.mean, score.stderr, lower, upper)


def fit(geometries: list[Geometry], setups: np.ndarray, progress=None, seed: int = 0, ceiling=None) -> Fits:
    """Every geometry fitted on the sampled loss at every cell of setups (..., D) of density <= its
    densest(geometry) (module docstring); NaN elsewhere, and where screened: ceiling (..., D), the loss
    above which a cell's fit stops and its row with it (None: none). Adds `sampled_stderr`,
    `sampled_lower`, `sampled_upper` and `sampled_screened_at` (per geometry) to the Fits' extra
    variables."""
    lead, D = setups.shape[:-1], setups.shape[-1]
    rows = setups.reshape(-1, D)
    Q, G = rows.shape[0], len(geometries)
    ceiling = (
        np.full((Q, D), np.inf) if ceiling is None else np.broadcast_to(ceiling, lead + (D,)).reshape(Q, D)
    )
    m, n = geometries[0].n_hidden, geometries[0].n_features
    counts = [len(g.parameters()) for g in geometries]
    row_density = [float(np.max(s.density)) for s in rows[0]]
    walks = [fitted_cells(row_density, g) for g in geometries]
    scored = ("loss", "stderr", "lower", "upper")  # CellFit's fields of a cell fitted to the end
    out = {key: np.full((Q, D, G), np.nan) for key in (*scored, "screened_at")}
    theta = np.full((Q, D, G, max(counts)), np.nan)
    with Progress.of(progress, Q * sum(map(len, walks)), "sampled-loss fits", "cell") as bar:
        for q, g in np.ndindex(Q, G):
            if dropout_only(geometries[g]) and rows[q, 0].p == 0:
                bar.update(len(walks[g]))
                continue
            previous = None
            for step, i in enumerate(walks[g]):
                rng = np.random.default_rng([seed, q, i, g])
                setup = rows[q, i]
                starts = [
                    _start(geometries[g], setup, rng)
                    for _ in range(1 if previous is not None else RANDOM_STARTS)
                ]
                if previous is not None:
                    starts.insert(0, previous)
                found = fit_cell(geometries[g], setup, starts, seed + (q * D + i) * G + g, ceiling[q, i])
                if found.screened:
                    out["screened_at"][q, i, g] = found.searched
                    bar.update(len(walks[g]) - step)
                    break
                previous = found.theta
                theta[q, i, g, : counts[g]] = found.theta
                for key in scored:
                    out[key][q, i, g] = getattr(found, key)
                bar.update()

    def solution(j: int, flat_cells: np.ndarray):
        x = theta.reshape(Q * D, G, -1)[flat_cells, j, : counts[j]]
        W = np.full((len(flat_cells), m, n), np.nan)
        b = np.full((len(flat_cells), n), np.nan)
        ok = np.isfinite(x).all(-1)
        if ok.any():
            W[ok], b[ok], _ = Family.of(geometries[j])(x[ok])
        return W, b

    attrs = {
        "stderr": "standard error of a sampled-loss-fitted candidate's Monte Carlo loss (theory.sampled_fit)",
        "lower": f"its loss's rigorous lower bound (exact loss truncated to {CHECK_ACTIVE} active features) "
        f"at density <= {TRUNCATED_DENSEST}",
        "upper": "and upper bound",
        "screened_at": "where a cell's fit was screened: its sampled loss at the end of the search, above "
        "the ceiling (the loss above which the candidate cannot matter there); the cell and the denser "
        "cells of its row are not fitted (NaN)",
    }
    return Fits(
        loss=out["loss"].reshape(lead + (D, G)),
        theta=theta.reshape(lead + (D, G, max(counts))),
        vertex_order=np.full(lead + (D, G, n), -1),
        solution=solution,
        extra={
            f"sampled_{key}": (("geometry",), out[key].reshape(lead + (D, G)), {"description": text})
            for key, text in attrs.items()
        },
    )
