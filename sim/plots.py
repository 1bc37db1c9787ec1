"""TMS-style figures of a training run, labelled from the data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402

from theory import (
    InputError,  # noqa: E402
    metrics,  # noqa: E402
)


def _density_label(sparsity: float) -> str:
    return f"1-S = {1 - sparsity:.3g}"


def feature_embeddings(ds: xr.Dataset, seed: int | Sequence[int]) -> plt.Figure:
    """2-d hidden space: each feature's column W[:, i] as a line from the origin, coloured by importance.

    One row per (dropout rate p, seed), one column per sparsity; each panel
    gives the model's exact expected loss when the run has it.
    """
    seeds = [seed] if np.ndim(seed) == 0 else list(seed)
    ps, sparsities = ds.p.values, ds.sparsity.values
    importance = ds.importance.values
    norm = Normalize(
        importance.min(), importance.max() if importance.max() > importance.min() else importance.min() + 1
    )
    rows = [(p, s) for p in ps for s in seeds]
    fig, axes = plt.subplots(
        len(rows),
        len(sparsities),
        figsize=(1.45 * len(sparsities) + 1.0, 1.3 * len(rows) + 0.5),
        squeeze=False,
        layout="constrained",
    )
    limit = max(1.2, float(np.abs(ds.W.sel(seed=seeds).values).max()) * 1.1)
    for r, (p, seed_) in enumerate(rows):
        for c, s in enumerate(sparsities):
            ax = axes[r, c]
            cell = ds.sel(seed=seed_, p=p, sparsity=s)
            W = cell.W.values
            for i in range(W.shape[1]):
                colour = plt.cm.viridis(norm(importance[i]))
                ax.plot([0, W[0, i]], [0, W[1, i]], color=colour, lw=1.5)
                ax.scatter(W[0, i], W[1, i], color=colour, s=10, zorder=3)
            ax.axhline(0, color="0.85", lw=0.5, zorder=0)
            ax.axvline(0, color="0.85", lw=0.5, zorder=0)
            ax.set_xlim(-limit, limit)
            ax.set_ylim(-limit, limit)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if "expected_loss" in cell:
                ax.text(0.03, 0.03, f"L={float(cell.expected_loss):.3g}", transform=ax.transAxes, fontsize=6)
            if r == 0:
                ax.set_title(_density_label(s), fontsize=8)
            if c == 0:
                ax.set_ylabel(f"p = {p:g}" + (f", seed {seed_}" if len(seeds) > 1 else ""), fontsize=8)
    bar = fig.colorbar(ScalarMappable(norm, "viridis"), ax=axes, shrink=min(0.9, 3 / len(rows)), pad=0.01)
    bar.set_label("importance $I_i$ of the feature", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    n, m = ds.sizes["feature"], ds.sizes["hidden"]
    which = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"
    fig.suptitle(
        f"{n} features in {m} dims ({which}): each feature's column of W in the plane of the two neurons "
        "(axes); L: exact expected loss, sum over features",
        fontsize=9,
    )
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
            ax_g, ax_b = axes[r, 2 * c], axes[r, 2 * c + 1]
            gram_image = ax_g.imshow(G, cmap="RdBu", vmin=-1, vmax=1)
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
                ax_b.set_title("feature norm $||W_i||$", fontsize=7)
            if c == 0:
                ax_g.set_ylabel(_density_label(s), fontsize=7)
    m = ds.sizes["hidden"]
    fig.suptitle(f"{n} features in {m} dims, seed {seed}: $W^TW$ and feature norms", fontsize=9)
    fig.tight_layout()
    for image, label in (
        (gram_image, "$W^TW$ entry (clipped to [-1, 1])"),
        (ScalarMappable(Normalize(0, 1), "plasma"), "superposition of feature i (bar colour; >= 1 clipped)"),
    ):
        bar = fig.colorbar(image, ax=axes, shrink=0.6, pad=0.01, aspect=30)
        bar.set_label(label, fontsize=7)
        bar.ax.tick_params(labelsize=6)
    return fig


def importance_axis(ds: xr.Dataset) -> str | None:
    """The run's importance axis ('r' or 'importance_decay'), or None."""
    return next((name for name in ("r", "importance_decay") if name in ds.dims), None)


def plot_run(
    ds: xr.Dataset, out: str | Path, seed: int | None = None, importance: float | None = None
) -> Path:
    """Feature embeddings when there are 2 hidden dims, otherwise norms and W^T W; saved as PNG.

    Embeddings show every seed unless `seed` is given; norms and W^T W one
    seed (default the first). A run with an importance axis is drawn at one
    of its values (`importance`, default the first).
    """
    if seed is not None and seed not in ds.seed.values:
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
    if ds.sizes["hidden"] == 2:
        fig = feature_embeddings(ds, ds.seed.values.tolist() if seed is None else seed)
    else:
        fig = norms_and_gram(ds, int(ds.seed.values[0]) if seed is None else seed)
    if title:
        fig.suptitle(fig._suptitle.get_text() + title, fontsize=9)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return out
