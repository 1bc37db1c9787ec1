"""Fitting candidates on their closed-form losses: every cell at once, warm-started along p.

Each geometry's closed-form loss (theory.geometries.ClosedForm) is minimised
over its free parameters at every cell of one p at once
(theory.optimize.fit_geometry: damped Newton with the symbolic Hessian) from a
few fixed starts (`starts`) and from the previous p's optimum at the same cell.
Fast while every block sits on its own neurons; polygons under dropout meet
many ReLU regimes and are fitted on the exact loss instead (theory.exact_fit).
"""

from __future__ import annotations

import numpy as np

from theory.fits import Fits
from theory.geometries import ClosedForm, Geometry, setup_args
from theory.optimize import fit_geometry
from theory.progress import Progress

_CLOSED: dict[Geometry, ClosedForm] = {}


def closed_form(geometry: Geometry) -> ClosedForm:
    """One ClosedForm per geometry per process, so derived regimes are reused."""
    if geometry not in _CLOSED:
        _CLOSED[geometry] = ClosedForm(geometry)
    return _CLOSED[geometry]


def starts(geometry: Geometry) -> np.ndarray:
    """Fixed starting points (S, P): default, shorter and longer norms, a positive bias, uneven, rotated."""
    base = geometry.start()
    role = geometry.roles()
    norm, bias, angle = role == "norm", role == "bias", role == "angle"
    variants = [base, np.where(norm, 0.5, base), np.where(norm, 1.3, base), np.where(bias, 0.1, base)]
    # Dense optima put the biases near the features' means (0.5 when always active).
    variants.append(np.where(norm, 0.7, np.where(bias, 0.4, base)))
    if norm.sum() > 1:  # unequal norms, biases of both signs: asymmetric optima
        uneven = base.copy()
        uneven[norm] = np.linspace(1.0, 0.4, norm.sum())
        uneven[bias] = 0.2 * (-1.0) ** np.arange(bias.sum())
        variants.append(uneven)
        uneven = uneven.copy()
        uneven[bias] = np.linspace(0.2, 0.5, bias.sum())
        variants.append(uneven)
    if angle.any():
        variants.append(np.where(angle, np.pi / 4, base))
    return np.unique(np.array(variants), axis=0)


def fit(geometries: list[Geometry], setups: np.ndarray, progress=None) -> Fits:
    """Every geometry's least closed-form loss at every cell of setups (P, ...): p first."""
    P, rest = setups.shape[0], setups.shape[1:]
    cells = int(np.prod(rest))
    counts = [len(g.parameters()) for g in geometries]
    n = geometries[0].n_features
    loss = np.full((P, cells, len(geometries)), np.nan)
    theta = np.full((P, cells, len(geometries), max(counts)), np.nan)
    fixed_starts = [starts(g) for g in geometries]
    previous: dict[str, np.ndarray] = {}
    with Progress.of(progress, P * cells * len(geometries), "closed-form fits", "cell") as bar:
        for k in range(P):
            args = np.stack([setup_args(s) for s in setups[k].ravel()])
            for j, g in enumerate(geometries):
                fixed = np.broadcast_to(fixed_starts[j], (cells,) + fixed_starts[j].shape)
                if g.name in previous:
                    fixed = np.concatenate([fixed, previous[g.name][:, None, :]], axis=1)
                found = fit_geometry(closed_form(g), args, fixed)
                previous[g.name] = found.theta
                loss[k, :, j] = found.loss
                theta[k, :, j, : counts[j]] = found.theta
                bar.update(cells)

    def solution(j: int, flat_cells: np.ndarray):
        thetas = theta.reshape(P * cells, len(geometries), -1)[flat_cells, j, : counts[j]]
        pairs = [closed_form(geometries[j]).numeric_W_b(t) for t in thetas]
        m = geometries[j].n_hidden
        return (
            np.array([W for W, _ in pairs]).reshape(-1, m, n),
            np.array([b for _, b in pairs]).reshape(-1, n),
        )

    shape = (P, *rest, len(geometries))
    return Fits(
        loss=loss.reshape(shape),
        theta=theta.reshape(shape + (max(counts),)),
        vertex_order=np.full(shape + (n,), -1),
        solution=solution,
    )
