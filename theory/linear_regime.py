"""The model where no ReLU clips: its expected loss under dropout in closed form, and its optimum over all W.

Where every output's argument stays non-negative, x' = W^T D W x + b is
linear in x (D the dropout mask over the hidden units, diag(m_l / (1 - p))).
With features independent, of density s, uniform on [0, 1] when active
(mean mu = s / 2, variance sigma^2 = s / 3 - s^2 / 4), and
M_D = W^T D W = G + sum_l eps_l w_l w_l^T (G = W^T W, w_l the l-th row of W,
eps_l independent with mean 0 and variance q = p / (1 - p)):

    L(W, b) = sum_j I_j [ sigma^2 ((1 - G)^2)_jj + sigma^2 q sum_l |w_l|^2 w_lj^2
                          + q sum_l (w_l . mu)^2 w_lj^2 + ((1 - G) mu - b)_j^2 ],

so the best bias is b* = (1 - G) mu and

    L*(W) = sigma^2 tr(I (1 - G)^2) + q sum_l (sigma^2 |w_l|^2 + (w_l . mu)^2) sum_j I_j w_lj^2

(I the importances as a diagonal matrix, 1 the identity).

The first term is the linear autoencoder's (at p = 0 its optimum keeps the m
most important features: L* = sigma^2 sum_{j >= m} I_j); the second is what
dropout adds, and it is a sum over neurons: a row of W pays in proportion to
its own squared norm and its projection on the mean.

For any W and b the ReLU model's loss is at most L(W, b): a clipped output
replaces a negative value by zero, which is closer to every target x >= 0.
So L*(W) at the minimiser found here is an upper bound on the ReLU model's
optimum, attained exactly when nothing clips (`clipping_margin` >= 0). Dense
features keep every output above zero where it matters (biases near the
mean), and there this is the optimum trained 20-in-5 models reach; sparse
features need clipping (negative biases filter interference), and there it is
only a bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from theory.errors import InputError


def _moments(density: float) -> tuple[float, float]:
    """(mean, variance) of one feature: zero with probability 1 - s, else uniform on [0, 1]."""
    s = float(density)
    return s / 2, s / 3 - s * s / 4


def _check(importance, density: float, p: float) -> np.ndarray:
    importance = np.asarray(importance, float)
    if importance.ndim != 1 or np.any(importance < 0):
        raise InputError("importance must be a 1-d array of non-negative numbers")
    if not 0 < density <= 1:
        raise InputError(f"density = {density} is not allowed; it must be in (0, 1]")
    if not 0 <= p < 1:
        raise InputError(f"p = {p} is not allowed; it must be in [0, 1)")
    return importance


def optimal_bias(W, density: float) -> np.ndarray:
    """b* = (1 - W^T W) mu (1 the identity): the bias that minimises the linear model's loss for this W."""
    W = np.asarray(W, float)
    mu, _ = _moments(density)
    return mu * (1 - (W.T @ W).sum(axis=1))


def linear_loss(W, b, importance, density: float, p: float) -> float:
    """L(W, b) of the model without clipping (an upper bound on the ReLU model's loss at W, b):
    L*(W) plus what a bias away from b* costs."""
    loss, _ = linear_loss_and_grad(W, importance, density, p)
    offset = optimal_bias(W, density) - np.asarray(b, float)
    return loss + float(np.asarray(importance, float) @ offset**2)


def linear_loss_and_grad(W, importance, density: float, p: float) -> tuple[float, np.ndarray]:
    """L*(W) = L(W, b*(W)) and its gradient in W (the bias optimised out)."""
    importance = _check(importance, density, p)
    W = np.asarray(W, float)
    mu, var = _moments(density)
    q = p / (1 - p)
    E = np.eye(W.shape[1]) - W.T @ W
    rows = W**2
    r, t = rows.sum(axis=1), rows @ importance  # |w_l|^2, sum_j I_j w_lj^2
    proj = mu * W.sum(axis=1)  # w_l . mu
    weight = var * r + proj**2
    loss = var * float(np.einsum("j,ji,ij->", importance, E, E)) + q * float(weight @ t)
    S = E * importance[None, :] + importance[:, None] * E  # E I + I E
    grad = -2 * var * W @ S
    grad += 2 * q * (var * t[:, None] * W + weight[:, None] * importance[None, :] * W)
    grad += 2 * q * (proj * t)[:, None] * mu
    return loss, grad


def clipping_margin(W, b, p: float) -> float:
    """The least output argument (W^T D W x + b)_j over every mask D of positive probability and every x
    in [0, 1]^n: where it is >= 0 no ReLU clips and `linear_loss` is the ReLU model's exact loss."""
    W, b = np.asarray(W, float), np.asarray(b, float)
    m = W.shape[0]
    masks = (
        [np.ones(m)]
        if p == 0
        else [np.array([(k >> unit) & 1 for unit in range(m)], float) for k in range(2**m)]
    )
    worst = np.inf
    for mask in masks:
        M = W.T @ ((mask / (1 - p))[:, None] * W)
        worst = min(worst, float((b + np.minimum(M, 0).sum(axis=1)).min()))
    return worst


@dataclass(frozen=True)
class LinearOptimum:
    """The least L*(W) found: W (m, n), b* (n,), its loss (an upper bound on the ReLU model's loss at W, b),
    every start's final loss (sorted), and the clipping margin (>= 0: the bound is the exact loss)."""

    W: np.ndarray
    b: np.ndarray
    loss: float
    start_losses: np.ndarray
    clipping_margin: float


def linear_optimum(importance, n_hidden: int, density: float, p: float, starts) -> LinearOptimum:
    """Minimise L*(W) over all of W (m, n) by L-BFGS-B on its exact gradient from each start in `starts`
    (an iterable of (m, n) arrays)."""
    importance = _check(importance, density, p)
    n = importance.size
    ends = []
    for start in starts:
        start = np.asarray(start, float)
        if start.shape != (n_hidden, n):
            raise InputError(f"a start has shape {start.shape}; it must be ({n_hidden}, {n})")
        result = minimize(
            _flat,
            start.ravel(),
            args=(importance, density, p, start.shape),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-11},
        )
        ends.append((float(result.fun), result.x.reshape(start.shape)))
    if not ends:
        raise InputError("linear_optimum needs at least one start")
    loss, W = min(ends, key=lambda end: end[0])
    b = optimal_bias(W, density)
    return LinearOptimum(W, b, loss, np.sort([end[0] for end in ends]), clipping_margin(W, b, p))


def _flat(x, importance, density, p, shape):
    loss, grad = linear_loss_and_grad(x.reshape(shape), importance, density, p)
    return loss, grad.ravel()
