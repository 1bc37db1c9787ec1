"""Figures of analytic phase diagrams (TMS style): regions, boundaries, one panel per p."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

PALETTE = [
    "#d9d9d9", "#fdae61", "#abd9e9", "#2c7bb6", "#d7191c", "#1a9641",
    "#984ea3", "#ffff99", "#a6761d", "#e7298a", "#66c2a5", "#8c510a",
    "#1f78b4", "#b2df8a", "#fb9a99", "#cab2d6", "#ff7f00", "#6a3d9a",
]  # fmt: skip


@dataclass(frozen=True)
class PhaseColours:
    """A diagram's phases coloured in index order, only those present (a composite diagram has over a
    hundred candidates); grey only for a first phase that ignores every feature."""

    present: np.ndarray  # the candidates that are a phase somewhere, ascending
    index: np.ndarray  # ds.phase as positions in `present`
    colours: list[str]
    cmap: ListedColormap
    norm: BoundaryNorm


def phase_colours(ds: xr.Dataset) -> PhaseColours:
    present = np.unique(ds.phase.values)
    grey = 0 if str(ds.geometry.values[present[0]]).startswith("ignore") else 1
    colours = colours_for(len(present) + grey)[grey:]
    return PhaseColours(
        present,
        np.searchsorted(present, ds.phase.values),
        colours,
        ListedColormap(colours),
        BoundaryNorm(np.arange(len(present) + 1) - 0.5, len(present)),
    )


def colours_for(count: int) -> list[str]:
    """The first `count` colours of PALETTE, one per phase (a clear error past its end, not a reused one)."""
    if count > len(PALETTE):
        raise ValueError(f"{count} phases to colour, the palette has {len(PALETTE)}: add colours to PALETTE")
    return PALETTE[:count]


#: What a phase's name means, for the figures' captions (docs/model.md section 6).
PHASE_NOTES = {
    "ignore": "ignore: not represented, the bias holds the mean",
    "dedicated": "dedicated i: feature i has a direction of its own",
    "antipodal": "antipodal: two features on one direction, opposite signs",
    "turned": "turned: the pair's direction at a free angle in the plane of two neurons (under dropout "
    "45 degrees from both: written across them)",
    "same-sign pair": "same-sign pair: two features on one direction, same sign, the bias cancels their "
    "interference (optimal only when dense; elsewhere a local minimum of training)",
    "-simplex": "k-simplex: k + 1 features at a regular simplex's vertices in the space of k neurons, turned "
    "by every rotation of them",
    "orthoplex": "5-orthoplex: five antipodal pairs along an orthonormal frame turned off the neurons, "
    "each pair spread over several of them (under dropout)",
    "demicube": "5-demicube: 16 features at the vertices of the 5-cube with an even number of minus signs "
    "(cosines -3/5 and 1/5), spread over all 5 neurons, turned by every rotation of them",
    "simplex prism": "simplex prism: 20 features on 5 neurons, 10 at a rectified 4-simplex's vertices in 4 "
    "of the 5 dimensions and 10 at a prism over the dual simplex tilted out of them, one norm and bias "
    "per orbit",
    "free vertices": "free vertices: every vertex its own norm and bias",
    "free angles": "free angles: every vertex its own norm, angle and bias",
    "unclassified": "unclassified: no catalogue geometry fits the trained model",
}


def phase_caption(labels) -> str:
    """The meaning of each kind of phase named in `labels`, one clause each, for a figure's caption."""
    notes = [note for key, note in PHASE_NOTES.items() if any(key in str(label) for label in labels)]
    return "; ".join(notes)


def cell_edges(values, log: bool = True) -> np.ndarray:
    """Edges of the cells centred on `values` (midpoints; geometric on a log axis), so that a grid with a
    single value along an axis still gets a cell of visible size."""
    values = np.asarray(values, dtype=float)
    points = np.log(values) if log else values
    if points.size == 1:
        half = np.log(1.5) if log else 0.5
        edges = np.array([points[0] - half, points[0] + half])
    else:
        middle = (points[1:] + points[:-1]) / 2
        edges = np.concatenate([[2 * points[0] - middle[0]], middle, [2 * points[-1] - middle[-1]]])
    return np.exp(edges) if log else edges


def phase_boundaries(ax, x_edges, y_edges, phase, **style) -> bool:
    """A line along every cell edge between two cells of different phase, phase (len(y), len(x)) on the
    cells between consecutive edges (as pcolormesh draws them): one line per boundary however many
    phases lie between the two indices (a contour of the index draws one per level). Whether any."""
    phase = np.asarray(phase)
    segments = [
        [(x_edges[c + 1], y_edges[r]), (x_edges[c + 1], y_edges[r + 1])]
        for r, c in zip(*np.nonzero(phase[:, 1:] != phase[:, :-1]), strict=True)
    ] + [
        [(x_edges[c], y_edges[r + 1]), (x_edges[c + 1], y_edges[r + 1])]
        for r, c in zip(*np.nonzero(phase[1:, :] != phase[:-1, :]), strict=True)
    ]
    if segments:
        ax.add_collection(LineCollection(segments, **style))
    ax.set_xlim(min(x_edges[0], x_edges[-1]), max(x_edges[0], x_edges[-1]))
    ax.set_ylim(min(y_edges[0], y_edges[-1]), max(y_edges[0], y_edges[-1]))
    return bool(segments)


def plain_log_axis(ax, axis: str = "x") -> None:
    """A log axis labelled in plain numbers (0.01, 0.02, 0.05, 0.1, ...), the same on every figure."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_formatter(NullFormatter())


def finish(fig, out, title: str, handles=(), labels=(), caption: str = "", ncol: int = 4) -> Path:
    """Title on top, the legend under it, a caption below the panels; saved as PNG with nothing clipped."""
    fig.tight_layout()
    if handles:  # the title heads the legend, so the two never overlap
        fig.legend(
            list(handles),
            list(labels),
            loc="lower center",
            bbox_to_anchor=(0.5, 1.0),
            ncol=min(len(handles), ncol),
            fontsize=8,
            frameon=False,
            title=title,
            title_fontproperties={"size": 10},
        )
    else:
        fig.suptitle(title, y=1.0, va="bottom", fontsize=10)
    if caption:
        fig.text(0.5, 0.0, caption, ha="center", va="top", fontsize=7.5, wrap=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return out


def published_boundary(r: np.ndarray) -> np.ndarray:
    """docs/model.md section 4 (p = 0, fixed biases): antipodal wins iff s < min(4r/(2+5r), 4/(5+2r))."""
    return np.minimum(4 * r / (2 + 5 * r), 4 / (5 + 2 * r))


def importance_axis(ds: xr.Dataset) -> str | None:
    """The diagram's importance axis ('r' or 'importance_decay'), or None."""
    return next((axis for axis in ("r", "importance_decay") if axis in ds.dims), None)


def plot_phase_diagram(ds: xr.Dataset, out: str | Path) -> Path:
    """theory.phase_diagram's figure: maps over (density, importance) per p when the grid has several
    importance values, else the (density, p) diagram."""
    ds = ds.sortby(ds.density)
    axis = importance_axis(ds)
    if axis is None or ds[axis].size == 1:
        return plot_density_diagram(ds.squeeze(axis) if axis else ds, out)
    return plot_importance_maps(ds, axis, out)


def _mark_search(ax, x: np.ndarray, y: np.ndarray, wins: np.ndarray) -> None:
    """Circle the cells (rows y, columns x) where the search over all of W, b beat every candidate: the
    colour there is the best candidate, not the optimum."""
    rows, columns = np.nonzero(wins)
    ax.plot(x[columns], y[rows], "o", mfc="none", mec="k", ms=6, label="search beats every candidate")
    ax.legend(loc="lower left", fontsize=6)


def plot_importance_maps(ds: xr.Dataset, axis: str, out: str | Path) -> Path:
    """One (density, importance) map per p, and every p's boundaries in one panel (phase_colours)."""
    names = [str(g) for g in ds.geometry.values]
    coloured = phase_colours(ds)
    present, colours, cmap, norm = coloured.present, coloured.colours, coloured.cmap, coloured.norm
    phases = ds.phase.copy(data=coloured.index)
    ps = ds.p.values
    fig, axes = plt.subplots(1, len(ps) + 1, figsize=(3.6 * (len(ps) + 1), 3.6), squeeze=False)
    axes = axes[0]
    D, R = ds.density.values, ds[axis].values
    D_edges, R_edges = cell_edges(D), cell_edges(R)
    line_styles = ["-", "--", ":", "-."]
    boundary_labels = []
    for k, p in enumerate(ps):
        ax = axes[k]
        phase = phases.sel(p=p).transpose(axis, "sparsity").values
        ax.pcolormesh(D_edges, R_edges, phase, cmap=cmap, norm=norm)
        phase_boundaries(ax, D_edges, R_edges, phase, colors="k", linewidths=0.8)
        if p == 0 and axis == "r" and int(ds.attrs["n_features"]) == 2 and int(ds.attrs["n_hidden"]) == 1:
            ax.plot(published_boundary(R), R, "w--", lw=1.2, label="published, fixed biases")
            ax.legend(loc="lower left", fontsize=6)
        style = dict(colors=f"C{k}", linewidths=1, linestyles=line_styles[k % len(line_styles)])
        bounded = phase_boundaries(axes[-1], D_edges, R_edges, phase, **style)
        boundary_labels.append(f"p = {p:g}" if bounded else f"p = {p:g}: none (one phase)")
        if "search_wins" in ds:
            _mark_search(ax, D, R, ds.search_wins.sel(p=p).transpose(axis, "sparsity").values)
        ax.set_title(f"p = {p:g}", fontsize=9)
    for ax in axes:
        plain_log_axis(ax, "x")
        plain_log_axis(ax, "y")
        if len(R) <= 8:  # few values (importance profiles): a tick at each, which a log axis may not label
            ax.set_yticks(R, [f"{v:g}" for v in R], minor=False)
            ax.set_yticks([], minor=True)
        ax.set_xlabel("density 1 - S", fontsize=8)
        ax.set_ylabel(
            "relative importance r of the last feature" if axis == "r" else "importance decay d (I_i = d**i)",
            fontsize=8,
        )
        ax.tick_params(labelsize=7)
    axes[-1].set_title("phase boundaries, by p", fontsize=9)
    axes[-1].legend(
        [plt.Line2D([], [], color=f"C{k}", ls=line_styles[k % len(line_styles)]) for k in range(len(ps))],
        boundary_labels,
        fontsize=7,
        loc="lower left",
    )
    n, m = ds.attrs["n_features"], ds.attrs["n_hidden"]
    title = f"Optimal geometry of {n} features in {m} dim(s) under dropout p (every parameter optimised)"
    labels = [names[i] for i in present]
    return finish(fig, out, title, [Patch(color=c) for c in colours], labels, phase_caption(labels), ncol=6)


def plot_density_diagram(ds: xr.Dataset, out: str | Path) -> Path:
    """A (density, p) diagram at one importance profile: phase map, features represented, angle to
    neurons (phase_colours)."""
    ds = ds.sortby(ds.density).transpose("p", "sparsity", ...)
    names = [str(g) for g in ds.geometry.values]
    coloured = phase_colours(ds)
    present, colours, cmap, norm = coloured.present, coloured.colours, coloured.cmap, coloured.norm
    ps, D = ds.p.values, ds.density.values
    rows = np.arange(len(ps))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    ax = axes[0]
    phases = coloured.index
    ax.pcolormesh(cell_edges(D), cell_edges(rows, log=False), phases, cmap=cmap, norm=norm)
    onset = ds.superposition_onset.values
    ax.plot(onset, rows, "kx", ms=7, label="superposition onset")
    if "search_wins" in ds:
        _mark_search(ax, D, rows, ds.search_wins.values)
    ax.set_yticks(rows, [f"{p:g}" for p in ps])
    ax.set_ylabel("dropout rate p", fontsize=8)
    ax.legend(loc="lower left", fontsize=7)
    searched = "search_wins" in ds and bool(ds.search_wins.any())
    title = "best candidate (o: the optimum is the search's)" if searched else "optimal geometry"
    ax.set_title(title, fontsize=9)
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
        plain_log_axis(ax, "x")
        ax.set_xlabel("density 1 - S", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[1].legend(fontsize=7)
    if "importance_decay" in ds.coords:
        importance = f"importance {float(ds.importance_decay):g}**i"
    else:
        importance = "importance (" + ", ".join(f"{v:.3g}" for v in ds.importance.values) + ")"
    title = f"Optimal geometry of {n} features in {m} dims, {importance}, under dropout p"
    labels = [names[i] for i in present]
    return finish(fig, out, title, [Patch(color=c) for c in colours], labels, phase_caption(labels), ncol=3)
