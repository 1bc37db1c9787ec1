"""Global minimisation of the exact loss over all of W and b, by multistart L-BFGS."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from theory.errors import InputError
from theory.loss import expected_loss_and_grad
from theory.setup import Setup


@dataclass(frozen=True)
class LossMinimum:
    """Best (W, b) found, its exact loss, and every start's final loss (sorted)."""

    loss: float
    W: np.ndarray
    b: np.ndarray
    start_losses: np.ndarray
    success: bool
    message: str


def minimize_loss(setup: Setup, n_starts: int = 24, seed: int = 0, scale: float = 1.0) -> LossMinimum:
    """Minimise theory.expected_loss over W and b from n_starts random starts.

    The starts are independent problems solved as one: L-BFGS-B on their
    concatenated parameters with the summed loss, so that one batched exact
    evaluation serves all of them. W starts N(0, scale^2), b starts 0.
    """
    if isinstance(n_starts, bool) or not isinstance(n_starts, int) or n_starts < 1:
        raise InputError(f"n_starts = {n_starts!r} is not allowed; it must be an integer >= 1")
    m, n = setup.n_hidden, setup.n_features
    size = m * n + n
    rng = np.random.default_rng(seed)
    x0 = np.concatenate([rng.normal(0.0, scale, (n_starts, m * n)), np.zeros((n_starts, n))], axis=1)

    def unpack(flat):
        theta = flat.reshape(n_starts, size)
        return theta[:, : m * n].reshape(n_starts, m, n), theta[:, m * n :]

    def objective(flat):
        W, b = unpack(flat)
        result = expected_loss_and_grad(setup, W, b)
        grad = np.concatenate([result.grad_W.reshape(n_starts, -1), result.grad_b], axis=1)
        return float(result.loss.sum()), grad.ravel()

    opt = minimize(
        objective,
        x0.ravel(),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-11, "maxcor": 30},
    )
    W, b = unpack(opt.x)
    losses = np.asarray(expected_loss_and_grad(setup, W, b).loss)
    best = int(np.argmin(losses))
    return LossMinimum(
        loss=float(losses[best]),
        W=W[best].copy(),
        b=b[best].copy(),
        start_losses=np.sort(losses),
        success=bool(opt.success),
        message=str(opt.message),
    )


@dataclass(frozen=True)
class GeometryFit:
    """Per cell: the best parameters found for one geometry and their closed-form loss."""

    theta: np.ndarray  # (cells, P)
    loss: np.ndarray  # (cells,)
    gradient_norm: np.ndarray  # (cells,)


def fit_geometry(closed, setup_args: np.ndarray, starts: np.ndarray, iterations: int = 60) -> GeometryFit:
    """Minimise a geometry's closed-form loss at many cells at once, from several starts.

    Damped Newton with the symbolic Hessian (eigenvalues floored so that each
    step descends), an Armijo backtracking line search per cell, and
    projection of norms (parameters named w_*, r_*) onto >= 0. A cell stops
    when its projected gradient vanishes (1e-10 relative), its line search finds
    no descent, or a step gains less than 1e-14 relative.
    closed: theory.geometries.ClosedForm; setup_args: (cells, 2n + 1) as in
    ClosedForm.evaluate; starts: (S, P) or (cells, S, P). Returns the best
    start per cell.
    """
    cells = setup_args.shape[0]
    starts = np.broadcast_to(starts, (cells,) + starts.shape[-2:]) if starts.ndim == 2 else starts
    n_starts, count = starts.shape[1:]
    theta = starts.reshape(cells * n_starts, count).astype(float).copy()
    args = np.repeat(setup_args, n_starts, axis=0)
    nonnegative = np.array([t.name.split("_")[0] in ("w", "r") for t in closed.parameters()])
    theta[:, nonnegative] = np.abs(theta[:, nonnegative])
    result = closed.evaluate(theta, args, order=2)
    value, grad, hess, regime = result.value, result.grad, result.hess, result.regime

    def projected(rows):
        g = np.nan_to_num(grad[rows])
        at_bound = (theta[rows][:, nonnegative] <= 0) & (g[:, nonnegative] > 0)
        g[:, nonnegative] = np.where(at_bound, 0.0, g[:, nonnegative])
        return g

    done = np.zeros(len(theta), dtype=bool)
    for _ in range(iterations):
        rows = np.flatnonzero(~done)
        g = projected(rows)
        small = np.linalg.norm(g, axis=1) <= 1e-10 * (1 + np.abs(value[rows]))
        done[rows[small]] = True
        rows, g = rows[~small], g[~small]
        if rows.size == 0:
            break
        eigenvalues, vectors = np.linalg.eigh(np.nan_to_num(hess[rows], nan=0.0, posinf=0.0, neginf=0.0))
        floor = np.maximum(np.abs(eigenvalues), 1e-8 * (1 + np.abs(eigenvalues).max(-1, keepdims=True)))
        step = -np.einsum("cij,cj,ckj,ck->ci", vectors, 1.0 / floor, vectors, g)
        slope = np.einsum("ci,ci->c", g, step)
        scale = np.ones(rows.size)
        accepted = np.zeros(rows.size, dtype=bool)
        candidate = theta[rows].copy()
        for _ in range(30):
            trying = np.flatnonzero(~accepted)
            if trying.size == 0:
                break
            trial = theta[rows[trying]] + scale[trying, None] * step[trying]
            trial[:, nonnegative] = np.maximum(trial[:, nonnegative], 0.0)
            trial_value = closed.evaluate(trial, args[rows[trying]], hint=regime[rows[trying]]).value
            good = np.isfinite(trial_value) & (
                trial_value <= value[rows[trying]] + 1e-4 * scale[trying] * np.minimum(slope[trying], 0.0)
            )
            candidate[trying[good]] = trial[good]
            accepted[trying[good]] = True
            scale[trying[~good]] *= 0.5
        done[rows[~accepted]] = True
        moved = rows[accepted]
        if moved.size == 0:
            continue
        theta[moved] = candidate[accepted]
        before = value[moved].copy()
        result = closed.evaluate(theta[moved], args[moved], order=2, hint=regime[moved])
        value[moved], grad[moved], hess[moved], regime[moved] = (
            result.value,
            result.grad,
            result.hess,
            result.regime,
        )
        done[moved[before - value[moved] <= 1e-14 * np.abs(before)]] = True
    loss = np.where(np.isfinite(value), value, np.inf).reshape(cells, n_starts)
    best = np.argmin(loss, axis=1)
    pick = np.arange(cells) * n_starts + best
    return GeometryFit(
        theta=theta[pick], loss=value[pick], gradient_norm=np.linalg.norm(projected(pick), axis=1)
    )
