"""Figures of a phase comparison: empirical maps with the analytic boundaries, the superposition edge."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from theory.phase_plots import (  # noqa: E402
    cell_edges,
    colours_for,
    finish,
    importance_axis,
    phase_boundaries,
    phase_caption,
    plain_log_axis,
)

_UNCLASSIFIED_COLOUR = "#000000"


_AXIS_LABELS = {
    "r": "relative importance r of the last feature",
    "importance_decay": "importance decay d (importance_i = d**i)",
}


def plot_phase_maps(ds: xr.Dataset, out: str | Path) -> Path:
    """The empirical optimum's label, analytic boundaries in black, misses marked x.

    One panel per p over (density, importance axis); with a single importance
    value, one panel over (density, p).
    """
    ds = ds.sortby(ds.density)
    labels = [str(v) for v in ds.label.values]
    colours = colours_for(len(labels) - 1) + [_UNCLASSIFIED_COLOUR]
    cmap = ListedColormap(colours)
    norm = BoundaryNorm(np.arange(len(labels) + 1) - 0.5, len(labels))
    axis = ds.attrs.get("importance_axis", "r")
    D = ds.density.values
    if ds[axis].size > 1:
        panels = [
            (f"p = {p:g}", ds.sel(p=p), ds[axis].values, _AXIS_LABELS[axis], "log") for p in ds.p.values
        ]
    else:
        value = float(ds[axis].values[0])
        cell = ds.isel({axis: 0})
        panels = [(f"{axis} = {value:g}", cell, ds.p.values, "dropout p", "linear")]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels) + 0.8, 3.9), squeeze=False)
    D_edges = cell_edges(D)
    for ax, (title, cell, Y, ylabel, yscale) in zip(axes[0], panels, strict=True):
        edges = cell_edges(Y, log=yscale == "log")
        ax.pcolormesh(D_edges, edges, cell.empirical_phase.values, cmap=cmap, norm=norm)
        phase_boundaries(ax, D_edges, edges, cell.analytic_phase.values, colors="k", linewidths=1.0)
        miss = ~cell.agree_empirical.values
        yy, dd = np.nonzero(miss)
        ax.plot(D[dd], Y[yy], "x", color="w", ms=5, mew=1.2)
        agree = float(cell.agree_empirical.values.mean())
        ax.set_title(f"{title}: trained = theory at {agree:.0%} of cells", fontsize=9)
        plain_log_axis(ax, "x")
        if yscale == "log":
            plain_log_axis(ax, "y")
        ax.set_xlabel("density 1 - S", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
    present = sorted(set(np.unique(ds.empirical_phase.values)) | set(np.unique(ds.analytic_phase.values)))
    n, m, seeds = ds.attrs["n_features"], ds.attrs["n_hidden"], ds.seed.size
    handles = [Patch(color=colours[i]) for i in present]
    handles += [plt.Line2D([], [], color="k"), plt.Line2D([], [], ls="", marker="x", color="0.3", mew=1.2)]
    names = [labels[i] for i in present]
    return finish(
        fig,
        out,
        f"{n} features in {m} dim(s): the geometry of the lowest-loss of {seeds} trained models per cell",
        handles,
        names + ["theory's phase boundary", "trained label differs from theory's"],
        phase_caption(names),
        ncol=4,
    )


def plot_edge(ds: xr.Dataset, out: str | Path, at: float = 1.0) -> Path:
    """The largest density with superposition at the importance value nearest `at`, against p."""
    axis = ds.attrs.get("importance_axis", "r")
    j = int(np.argmin(np.abs(np.log(ds[axis].values / at))))
    value = float(ds[axis].values[j])
    ps = ds.p.values
    fig, ax = plt.subplots(figsize=(4.4, 3.4))
    ax.plot(ps, ds.edge_analytic.isel({axis: j}).values, "k-o", ms=4, label="theory (optimal geometry)")
    seeds = ds.edge_seed.isel({axis: j}).values  # (seed, p)
    for s in range(seeds.shape[0]):
        ax.plot(ps + 0.004 * (s - seeds.shape[0] / 2), seeds[s], "o", color="C1", ms=3, alpha=0.7,
                label="single runs" if s == 0 else None)  # fmt: skip
    ax.plot(
        ps,
        ds.edge_empirical.isel({axis: j}).values,
        "s",
        color="C0",
        mfc="none",
        ms=7,
        label="lowest loss over seeds",
    )
    plain_log_axis(ax, "y")
    ax.set_ylim(ds.density.values.min() * 0.8, ds.density.values.max() * 1.25)
    ax.set_xlabel("dropout p", fontsize=8)
    ax.set_ylabel("largest density with superposition", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    return finish(fig, out, f"Where superposition first appears ({axis} = {value:.3g})")


def profile(axis: str, value: float) -> str:
    """An importance profile in words: 'importance 0.7**i', 'uniform importance', 'r = 2'."""
    if axis == "importance_decay":
        return "uniform importance" if value == 1 else f"importance {value:g}**i"
    return f"{axis} = {value:g}"


def plot_loss_ratios(ds: xr.Dataset, out: str | Path, beats: float = 0.995) -> Path:
    """Best trained loss over theory's optimum against density, one line per p, one panel per importance
    profile: `ds` holds `ratio` (with its 2-standard-error band `ratio_low`, `ratio_high`) and
    `family_ratio` (dashed), and where it has one `best_ratio` (dash-dot: against the better of theory's
    optimum and the model where no ReLU clips), over (p, importance axis, sparsity) with a `density`
    coordinate."""
    axis = importance_axis(ds.ratio)
    values = ds[axis].values
    fig, axes = plt.subplots(1, len(values), figsize=(4.2 * len(values), 3.8), sharey=True, squeeze=False)
    for ax, a in zip(axes[0], values, strict=True):
        for p in ds.p.values:
            c = ds.sel(p=p, **{axis: a}).sortby("density")
            line = ax.plot(c.density, c.ratio, marker="o", label=f"p = {p:g}")[0]
            ax.fill_between(c.density, c.ratio_low, c.ratio_high, color=line.get_color(), alpha=0.25)
            ax.plot(c.density, c.family_ratio, color=line.get_color(), ls="--", lw=1)
            if "best_ratio" in c:
                ax.plot(c.density, c.best_ratio, color=line.get_color(), ls="-.", lw=1)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(beats, color="k", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("feature density 1 - S")
        ax.set_title(profile(axis, a))
    axes[0, 0].set_ylabel("best trained loss / theory's optimum")
    axes[0, 0].legend()
    n, m = ds.attrs.get("n_features"), ds.attrs.get("n_hidden")
    size = f"{n} features in {m} dims: " if n and m else ""
    linear = (
        ";\ndash-dot: against the better of theory's optimum and the model where no ReLU clips"
        if "best_ratio" in ds
        else ""
    )
    fig.suptitle(
        f"{size}below 1, training beats theory's optimum (band: 2 standard errors; dotted: the margin taken "
        f"as a win; dashed: the block family alone{linear})",
        fontsize=10,
    )
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
