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


def neuron_alignment(W) -> np.ndarray:
    """max_k |W_ki| / ||W_i||, shape (..., n): 1 for a feature on one neuron, 1/sqrt(m) at most spread.

    NaN for a feature of zero norm (it has no direction).
    """
    W = np.asarray(W, dtype=np.float64)
    norms = feature_norms(W)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, np.abs(W).max(-2) / norms, np.nan)


def neurons_per_feature(W) -> np.ndarray:
    """Participation ratio of each column's squared entries, (sum_k W_ki^2)^2 / sum_k W_ki^4, shape
    (..., n): 1 for a feature on one neuron, m when spread evenly over all; NaN at zero norm."""
    squared = np.asarray(W, dtype=np.float64) ** 2
    fourth = (squared**2).sum(-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(fourth > 0, squared.sum(-2) ** 2 / fourth, np.nan)


def excess_kurtosis(values, axis=-1) -> np.ndarray:
    """E[(v - mean)^4] / var^2 - 3 along `axis` (0 for a Gaussian; large for sparse, heavy-tailed v)."""
    v = np.asarray(values, dtype=np.float64)
    centred = v - v.mean(axis, keepdims=True)
    var = (centred**2).mean(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (centred**4).mean(axis) / var**2 - 3.0


def hidden_kurtosis(W, x, directions: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Excess kurtosis of the hidden activations h = W x, along the neurons and along random directions.

    W: (..., m, n); x: (samples, n), inputs without dropout (the trained model in use).
    Returns (mean over neurons, mean over `directions` random unit directions),
    each of shape (...). In a privileged basis the neurons' kurtosis exceeds
    that of random directions; with a rotation-invariant model they are equal
    in distribution.
    """
    W = np.asarray(W, dtype=np.float64)
    h = np.einsum("...mn,sn->...ms", W, np.asarray(x, dtype=np.float64))
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((directions, W.shape[-2]))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    along = np.einsum("dm,...ms->...ds", u, h)
    return np.nanmean(excess_kurtosis(h), -1), np.nanmean(excess_kurtosis(along), -1)


def represented(W, tolerance: float = 0.0) -> np.ndarray:
    """How many features have a column of W (..., m, n) longer than tolerance: shape (...)."""
    return (feature_norms(W) > tolerance).sum(-1)


def max_angle_to_neuron(W, tolerance: float = 1e-6) -> np.ndarray:
    """Largest angle (degrees) from a represented column of W (..., m, n) to its nearest neuron axis.

    A column is represented when its norm exceeds tolerance; NaN when none is.
    """
    W = np.asarray(W, dtype=np.float64)
    norms = np.linalg.norm(W, axis=-2)
    cosine = np.abs(W).max(-2) / np.where(norms > tolerance, norms, 1.0)
    angles = np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
    angles = np.where(norms > tolerance, angles, -np.inf)
    out = angles.max(-1)
    return np.where(np.isfinite(out), out, np.nan)


def superposition_onset(density, superposed) -> np.ndarray:
    """The largest density (last axis of superposed (..., D): more features represented than there
    are neurons) at which there is superposition; NaN where there is none."""
    values = np.where(superposed, np.asarray(density, dtype=float), -np.inf).max(-1)
    return np.where(np.isfinite(values), values, np.nan)


#: Names of the k-gons, k = 3..6.
POLYGON_NAMES = {3: "triangle", 4: "square", 5: "pentagon", 6: "hexagon"}


def polygon_name(k: int) -> str:
    return POLYGON_NAMES.get(k, f"{k}-gon")
