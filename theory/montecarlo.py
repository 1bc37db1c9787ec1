"""Monte Carlo estimate of the expected loss: the independent reference.

Samples the model of docs/model.md section 2 literally (features, dropout masks,
ReLU) in numpy, so it shares no code with the exact computation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.errors import InputError
from theory.setup import Setup


@dataclass(frozen=True)
class MonteCarloLoss:
    """Sampled loss (sum over features, importance-weighted) and its standard error."""

    mean: float
    stderr: float
    n_samples: int


def monte_carlo_loss(
    setup: Setup, W, b, n_samples: int = 1_000_000, seed: int = 0, chunk: int = 200_000
) -> MonteCarloLoss:
    """Estimate L for one (W, b): W (m, n), b (n,)."""
    W, b = setup.check_parameters(W, b)
    if W.ndim != 2 or b.ndim != 1:
        raise InputError(
            f"monte_carlo_loss takes a single model: W (m, n) and b (n,); got {W.shape} and {b.shape}"
        )
    _check_samples(n_samples)
    rng = np.random.default_rng(seed)
    importance = setup.importance_array
    keep = 1.0 - setup.p
    total = 0.0
    total_sq = 0.0
    done = 0
    while done < n_samples:
        size = min(chunk, n_samples - done)
        x, mask = _draw(setup, rng, size)
        h = (x @ W.T) * mask / keep
        out = np.maximum(h @ W + b, 0.0)
        per_sample = ((x - out) ** 2) @ importance
        total += per_sample.sum()
        total_sq += (per_sample**2).sum()
        done += size
    mean = total / n_samples
    var = max(total_sq / n_samples - mean**2, 0.0)
    return MonteCarloLoss(mean=mean, stderr=float(np.sqrt(var / max(n_samples - 1, 1))), n_samples=n_samples)


@dataclass(frozen=True)
class MonteCarloLosses:
    """Several models' sampled losses on the same samples: mean (K,), stderr (K,), and the covariance of
    the K estimates (K, K), from which the standard error of a difference of two of them follows (far
    below either's where the models are alike: the samples' own spread cancels)."""

    mean: np.ndarray
    stderr: np.ndarray
    covariance: np.ndarray
    n_samples: int

    def difference_stderr(self, i: int, j: int) -> float:
        """The standard error of mean[i] - mean[j]."""
        c = self.covariance
        return float(np.sqrt(max(c[i, i] + c[j, j] - 2 * c[i, j], 0.0)))


def monte_carlo_losses(
    setup: Setup, W, b, n_samples: int = 1_000_000, seed: int = 0, chunk: int = 200_000
) -> MonteCarloLosses:
    """monte_carlo_loss of K models, W (K, m, n) and b (K, n), on the same samples (those it draws for
    the same seed: model k's mean equals monte_carlo_loss's of it to rounding)."""
    W, b = setup.check_parameters(W, b)
    if W.ndim != 3 or b.shape != (len(W), setup.n_features) or not len(W):
        raise InputError(
            f"monte_carlo_losses takes W (K, m, n) and b (K, n), K >= 1; got {W.shape}, {b.shape}"
        )
    _check_samples(n_samples)
    rng = np.random.default_rng(seed)
    importance = setup.importance_array
    keep = 1.0 - setup.p
    total = np.zeros(len(W))
    products = np.zeros((len(W), len(W)))
    done = 0
    while done < n_samples:
        size = min(chunk, n_samples - done)
        x, mask = _draw(setup, rng, size)
        per_sample = np.empty((size, len(W)))
        for k, (W_k, b_k) in enumerate(zip(W, b, strict=True)):
            out = np.maximum(((x @ W_k.T) * mask / keep) @ W_k + b_k, 0.0)
            per_sample[:, k] = ((x - out) ** 2) @ importance
        total += per_sample.sum(0)
        products += per_sample.T @ per_sample
        done += size
    mean = total / n_samples
    covariance = (products / n_samples - np.outer(mean, mean)) / max(n_samples - 1, 1)
    stderr = np.sqrt(np.maximum(np.diagonal(covariance), 0.0))
    return MonteCarloLosses(mean=mean, stderr=stderr, covariance=covariance, n_samples=n_samples)


def _check_samples(n_samples) -> None:
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise InputError(f"n_samples = {n_samples!r} is not allowed; it must be an integer >= 2")


def _draw(setup: Setup, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """size inputs x (features active with their density, uniform on [0, 1]) and dropout masks (a unit
    kept, with its group, with chance 1 - p), in the order every estimate here draws them."""
    n = setup.n_features
    x = rng.random((size, n)) * (rng.random((size, n)) < setup.density)
    mask = rng.random((size, setup.n_groups))[:, setup.unit_groups] < 1.0 - setup.p
    return x, mask
