"""TMS-style figures of a training run, labelled from the data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from sim import metrics  # noqa: E402
from theory import InputError  # noqa: E402


def _density_label(sparsity: float) -> str:
    return f"1-S = {1 - sparsity:.3g}"


def feature_embeddings(ds: xr.Dataset, seed: int | Sequence[int]) -> plt.Figure:
    """2-d hidden space: each feature's column W[:, i] as a line from the origin, coloured by importance.

    One row per (dropout rate p, seed), one column per sparsity.
    """
    seeds = [seed] if np.ndim(seed) == 0 else list(seed)
    ps, sparsities = ds.p.values, ds.sparsity.values
    importance = ds.importance.values
    spread = importance.max() - importance.min()
    colors = plt.cm.viridis(
        (importance - importance.min()) / spread if spread > 0 else np.ones_like(importance)
    )
    rows = [(p, s) for p in ps for s in seeds]
    fig, axes = plt.subplots(
        len(rows), len(sparsities), figsize=(1.7 * len(sparsities), 1.9 * len(rows)), squeeze=False
    )
    limit = max(1.2, float(np.abs(ds.W.sel(seed=seeds).values).max()) * 1.1)
    for r, (p, seed_) in enumerate(rows):
        for c, s in enumerate(sparsities):
            ax = axes[r, c]
            W = ds.W.sel(seed=seed_, p=p, sparsity=s).values
            for i in range(W.shape[1]):
                ax.plot([0, W[0, i]], [0, W[1, i]], color=colors[i], lw=1.5)
                ax.scatter(W[0, i], W[1, i], color=colors[i], s=10, zorder=3)
            ax.axhline(0, color="0.85", lw=0.5, zorder=0)
            ax.axvline(0, color="0.85", lw=0.5, zorder=0)
            ax.set_xlim(-limit, limit)
            ax.set_ylim(-limit, limit)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(_density_label(s), fontsize=8)
            if c == 0:
                ax.set_ylabel(f"p = {p:g}" + (f", seed {seed_}" if len(seeds) > 1 else ""), fontsize=8)
    n, m = ds.sizes["feature"], ds.sizes["hidden"]
    which = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"
    fig.suptitle(
        f"{n} features in {m} dims, {which}: columns of W (hidden-neuron axes), "
        "colour = importance (yellow: most)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def norms_and_gram(ds: xr.Dataset, seed: int) -> plt.Figure:
    """Per (p, sparsity): W^T W and feature-norm bars coloured by superposition (TMS style)."""
    run = ds.sel(seed=seed)
    ps, sparsities = run.p.values, run.sparsity.values
    n = ds.sizes["feature"]
    fig, axes = plt.subplots(
        len(sparsities),
        2 * len(ps),
        figsize=(3.2 * len(ps), 1.3 * len(sparsities) + 0.6),
        squeeze=False,
        gridspec_kw={"width_ratios": [1, 1.2] * len(ps)},
    )
    for c, p in enumerate(ps):
        for r, s in enumerate(sparsities):
            W = run.W.sel(p=p, sparsity=s).values
            G = metrics.gram(W)
            bound = max(float(np.abs(G).max()), 1e-9)
            ax_g, ax_b = axes[r, 2 * c], axes[r, 2 * c + 1]
            ax_g.imshow(G, cmap="RdBu", vmin=-bound, vmax=bound)
            ax_g.set_xticks([])
            ax_g.set_yticks([])
            sup = np.clip(metrics.superposition(W), 0, 1)
            ax_b.barh(np.arange(n), metrics.feature_norms(W), color=plt.cm.plasma(sup), height=0.8)
            ax_b.set_ylim(n - 0.5, -0.5)
            ax_b.set_xlim(0, 1.3)
            ax_b.set_yticks([])
            ax_b.tick_params(labelsize=6)
            if r == 0:
                ax_g.set_title(f"p = {p:g}: W$^T$W", fontsize=8)
                ax_b.set_title("||W_i||, colour = superposition", fontsize=7)
            if c == 0:
                ax_g.set_ylabel(_density_label(s), fontsize=7)
    m = ds.sizes["hidden"]
    fig.suptitle(
        f"{n} features in {m} dims, seed {seed} (superposition colour: 0 dark, 1 yellow)", fontsize=9
    )
    fig.tight_layout()
    return fig


def importance_axis(ds: xr.Dataset) -> str | None:
    """The run's importance axis ('r' or 'importance_decay'), or None."""
    return next((name for name in ("r", "importance_decay") if name in ds.dims), None)


def plot_run(
    ds: xr.Dataset, out: str | Path, seed: int | None = None, importance: float | None = None
) -> Path:
    """Feature embeddings when there are 2 hidden dims, otherwise norms and W^T W; saved as PNG.

    A run with an importance axis is drawn at one of its values (`importance`, default the first).
    """
    seed = int(ds.seed.values[0]) if seed is None else seed
    if seed not in ds.seed.values:
        raise InputError(f"seed = {seed} is not in this run; it has seeds {ds.seed.values.tolist()}")
    axis = importance_axis(ds)
    title = ""
    if axis is not None:
        value = float(ds[axis].values[0]) if importance is None else importance
        if not np.isclose(ds[axis].values, value).any():
            raise InputError(f"{axis} = {value} is not in this run; it has {ds[axis].values.tolist()}")
        ds = ds.sel({axis: value}, method="nearest")
        title = f", {axis} = {value:g}"
    elif importance is not None:
        raise InputError("--importance was given but this run has no importance axis")
    fig = feature_embeddings(ds, seed) if ds.sizes["hidden"] == 2 else norms_and_gram(ds, seed)
    if title:
        fig.suptitle(fig._suptitle.get_text() + title, fontsize=9)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out
