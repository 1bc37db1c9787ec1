"""Figures of analytic phase diagrams (TMS style): regions, boundaries, one panel per p."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

PALETTE = [
    "#d9d9d9", "#fdae61", "#abd9e9", "#2c7bb6", "#d7191c", "#1a9641",
    "#984ea3", "#ffff99", "#a6761d", "#e7298a", "#66c2a5", "#8c510a",
]  # fmt: skip


def _published_boundary(r: np.ndarray) -> np.ndarray:
    """DESIGN.md section 3 (p = 0, fixed biases): antipodal wins iff s < min(4r/(2+5r), 4/(5+2r))."""
    return np.minimum(4 * r / (2 + 5 * r), 4 / (5 + 2 * r))


def plot_phase_diagram(ds: xr.Dataset, out: str | Path) -> Path:
    names = [str(g) for g in ds.geometry.values]
    cmap = ListedColormap(PALETTE[: len(names)])
    norm = BoundaryNorm(np.arange(len(names) + 1) - 0.5, len(names))
    ps = ds.p.values
    fig, axes = plt.subplots(1, len(ps) + 1, figsize=(3.6 * (len(ps) + 1), 3.6), squeeze=False)
    axes = axes[0]
    D, R = ds.density.values, ds.r.values
    levels = np.arange(len(names) - 1) + 0.5
    line_styles = ["-", "--", ":", "-."]
    for k, p in enumerate(ps):
        ax = axes[k]
        phase = ds.phase.sel(p=p).values.T  # (r, density)
        ax.pcolormesh(D, R, phase, cmap=cmap, norm=norm, shading="nearest")
        ax.contour(D, R, phase, levels=levels, colors="k", linewidths=0.8)
        if p == 0 and int(ds.attrs["n_features"]) == 2 and int(ds.attrs["n_hidden"]) == 1:
            ax.plot(_published_boundary(R), R, "w--", lw=1.2, label="published, fixed biases")
            ax.legend(loc="lower left", fontsize=6)
        axes[-1].contour(
            D,
            R,
            phase,
            levels=levels,
            colors=[f"C{k}"],
            linewidths=1,
            linestyles=line_styles[k % len(line_styles)],
        )
        ax.set_title(f"p = {p:g}", fontsize=9)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("density 1 - S", fontsize=8)
        ax.set_ylabel("relative importance r of the last feature", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[-1].set_title("boundaries by p", fontsize=9)
    axes[-1].legend(
        [plt.Line2D([], [], color=f"C{k}", ls=line_styles[k % len(line_styles)]) for k in range(len(ps))],
        [f"p = {p:g}" for p in ps],
        fontsize=7,
        loc="lower left",
    )
    n, m = ds.attrs["n_features"], ds.attrs["n_hidden"]
    title = f"optimal geometry, {n} features in {m} dim(s), every parameter optimised"
    present = np.unique(ds.phase.values)
    labels, colours = [names[i] for i in present], [PALETTE[i] for i in present]
    return _legend_title_save(fig, labels, colours, ncol=None, title=title, top=0.92, out=out)


def plot_density_diagram(ds: xr.Dataset, out: str | Path) -> Path:
    """A (density, p) diagram (theory.sparsity_phase, theory.composite_phase): phase map, features
    represented, angle to neurons. Colours go to the phases present, in index order."""
    names = [str(g) for g in ds.geometry.values]
    present = np.unique(ds.phase.values)
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(present))]
    cmap = ListedColormap(colours)
    norm = BoundaryNorm(np.arange(len(present) + 1) - 0.5, len(present))
    ps, D = ds.p.values, ds.density.values
    rows = np.arange(len(ps))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    ax = axes[0]
    ax.pcolormesh(D, rows, np.searchsorted(present, ds.phase.values), cmap=cmap, norm=norm, shading="nearest")
    onset = ds.superposition_onset.values
    ax.plot(onset, rows, "kx", ms=7, label="superposition onset")
    ax.set_yticks(rows, [f"{p:g}" for p in ps])
    ax.set_ylabel("dropout rate p", fontsize=8)
    ax.legend(loc="lower left", fontsize=7)
    ax.set_title("optimal geometry", fontsize=9)
    for k, p in enumerate(ps):
        axes[1].plot(D, ds.represented.values[k], "o-", ms=3, color=f"C{k}", label=f"p = {p:g}")
        axes[2].plot(D, ds.max_angle_to_neuron.values[k], "o-", ms=3, color=f"C{k}", label=f"p = {p:g}")
    n, m = int(ds.attrs["n_features"]), int(ds.attrs["n_hidden"])
    axes[1].axhline(m, color="k", lw=0.8, ls=":")
    axes[1].set_ylabel("features represented by the optimum", fontsize=8)
    axes[1].set_title(f"dotted: {m} neurons (above it: superposition)", fontsize=9)
    axes[2].set_ylabel("largest angle, represented feature to nearest neuron (deg)", fontsize=8)
    axes[2].set_title("0: every feature neuron-aligned", fontsize=9)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("density 1 - S", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[1].legend(fontsize=7)
    if "decay" in ds.attrs:
        importance = f"importance {float(ds.attrs['decay']):g}**i"
    else:
        importance = "importance (" + ", ".join(f"{v:.3g}" for v in ds.importance.values) + ")"
    title = f"{n} features in {m} dims, {importance}, every parameter optimised"
    return _legend_title_save(
        fig, [names[i] for i in present], colours, ncol=4, title=title, top=0.88, out=out
    )


def _legend_title_save(fig, labels, colours, ncol, title: str, top: float, out) -> Path:
    """Legend of the phases present (labels, their colours; at most ncol columns), title below, PNG
    written to out."""
    fig.legend(
        [Patch(color=c) for c in colours],
        labels,
        loc="upper center",
        ncol=len(labels) if ncol is None else min(len(labels), ncol),
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(title, y=0.02, fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, top))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out
