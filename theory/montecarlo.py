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
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise InputError(f"n_samples = {n_samples!r} is not allowed; it must be an integer >= 2")
    rng = np.random.default_rng(seed)
    density = setup.density
    importance = setup.importance_array
    keep = 1.0 - setup.p
    groups = setup.unit_groups
    total = 0.0
    total_sq = 0.0
    done = 0
    while done < n_samples:
        size = min(chunk, n_samples - done)
        x = rng.random((size, setup.n_features)) * (rng.random((size, setup.n_features)) < density)
        mask = rng.random((size, setup.n_groups))[:, groups] < keep  # a unit is kept with its group
        h = (x @ W.T) * mask / keep
        out = np.maximum(h @ W + b, 0.0)
        per_sample = ((x - out) ** 2) @ importance
        total += per_sample.sum()
        total_sq += (per_sample**2).sum()
        done += size
    mean = total / n_samples
    var = max(total_sq / n_samples - mean**2, 0.0)
    return MonteCarloLoss(mean=mean, stderr=float(np.sqrt(var / max(n_samples - 1, 1))), n_samples=n_samples)
