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
