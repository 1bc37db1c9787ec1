"""TMS metrics of a weight matrix W (..., m, n); numpy in, numpy out.

Columns W[:, i] are the features' directions. A feature of zero norm has
zero superposition and zero dimensionality.
"""

from __future__ import annotations

import numpy as np


def feature_norms(W) -> np.ndarray:
    """||W_i||, shape (..., n)."""
    return np.linalg.norm(np.asarray(W, dtype=np.float64), axis=-2)


def gram(W) -> np.ndarray:
    """W^T W, shape (..., n, n)."""
    W = np.asarray(W, dtype=np.float64)
    return np.swapaxes(W, -1, -2) @ W


def _projections_squared(W) -> np.ndarray:
    """(W_i_hat . W_j)^2, shape (..., n, n), row i; rows of zero-norm features are 0."""
    G = gram(W)
    norms = feature_norms(W)
    safe = np.where(norms > 0, norms, 1.0)
    return np.where(norms[..., :, None] > 0, (G / safe[..., :, None]) ** 2, 0.0)


def superposition(W) -> np.ndarray:
    """sum_{j != i} (W_i_hat . W_j)^2, shape (..., n)."""
    P = _projections_squared(W)
    return P.sum(-1) - np.diagonal(P, axis1=-2, axis2=-1)


def dimensions_per_feature(W) -> np.ndarray:
    """D* = m / ||W||_F^2, shape (...); inf when W = 0."""
    W = np.asarray(W, dtype=np.float64)
    frob = (W**2).sum((-2, -1))
    with np.errstate(divide="ignore"):
        return W.shape[-2] / frob


def feature_dimensionality(W) -> np.ndarray:
    """D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2 (j over all features), shape (..., n)."""
    norms_sq = feature_norms(W) ** 2
    denom = _projections_squared(W).sum(-1)
    return np.where(denom > 0, norms_sq / np.where(denom > 0, denom, 1.0), 0.0)
