"""The paper's figures, each drawn from its Datasets (by the layers' own plot functions where they have one).

`FIGURES[name]` is a function (data, path) -> path, `data` the paper's
Datasets by alias (`paper.runs.Data`). A figure reads only Datasets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from compare.plots import plot_edge, plot_loss_ratios, plot_phase_maps  # noqa: E402
from paper.quantities import feature_norms  # noqa: E402
from theory.phase_plots import plot_phase_diagram  # noqa: E402

#: A feature counts as represented when ||W_i|| exceeds this (the study's threshold).
REPRESENTED = 0.5
FIGURES: dict[str, Callable] = {}


def figure(name: str):
    def register(function):
        FIGURES[name] = function
        return function

    return register


def _save(fig, path: Path) -> Path:
    if not fig.get_layout_engine():
        fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


@figure("exact_checks")
def exact_checks(data, path: Path) -> Path:
    """Monte Carlo z scores of the exact loss; relative differences to quadrature and the compiled loss."""
    ds = data["exact_checks"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    z = ds.z.values
    axes[0].hist(z, bins=np.linspace(-4, 4, 17), color="#4c72b0", edgecolor="white")
    grid = np.linspace(-4, 4, 200)
    axes[0].plot(
        grid, len(z) * 0.5 * np.exp(-(grid**2) / 2) / np.sqrt(2 * np.pi), "k--", lw=1, label="standard normal"
    )
    axes[0].set_xlabel("(Monte Carlo - exact) / standard error")
    axes[0].set_ylabel("problems")
    axes[0].legend(fontsize=8, loc="upper left")
    axes[0].set_title(f"{z.size} random problems, {ds.attrs['samples']:,} samples each", fontsize=9)
    floor = 1e-17  # an exact agreement is drawn at the floor
    for ax, variable, x in (
        (axes[1], "quad_relative_difference", "quad_p"),
        (axes[2], "compiled_relative_difference", "p"),
    ):
        values = np.maximum(ds[variable].values, floor)
        ax.semilogy(ds[x].values, values, "o", color="#dd8452")
        ax.axhline(1e-12, color="k", ls=":", lw=1, label="1e-12")
        ax.set_ylim(floor / 3, 1e-8)
        ax.set_xlabel("dropout p")
        ax.set_ylabel("relative difference")
        ax.legend(fontsize=8, loc="upper right")
    axes[1].set_title(f"exact vs quadrature ({ds.sizes['quad_case']} problems, 2 features)", fontsize=9)
    axes[2].set_title("compiled vs torch exact loss", fontsize=9)
    return _save(fig, path)


def _layer_figure(plot, alias: str):
    """A figure drawn by a layer's own plot function from one Dataset."""
    return lambda data, path: plot(data[alias], path)


#: Figures the layers already draw: name -> (plot function, the Dataset's alias).
LAYER_FIGURES = {
    "phase_2x1": (plot_phase_diagram, "diagram_2x1"),
    "phase_3x2": (plot_phase_diagram, "diagram_3x2"),
    "phase_5x2": (plot_phase_diagram, "diagram_5x2"),
    "compare_2x1": (plot_phase_maps, "compare_2x1"),
    "edge_2x1": (plot_edge, "compare_2x1"),
    "compare_5x2": (plot_phase_maps, "compare_5x2"),
    "compare_20x5": (plot_loss_ratios, "compare_20x5"),
}
FIGURES.update({name: _layer_figure(plot, alias) for name, (plot, alias) in LAYER_FIGURES.items()})


#: The importance profile the 20-in-5 diagram is drawn at (the TMS article's).
TWENTY_IN_FIVE_DECAY = 0.7


@figure("phase_20x5")
def phase_20x5(data, path: Path) -> Path:
    """The 20-in-5 optimum over (density, p) at importance 0.7**i (the diagram holds every profile)."""
    return plot_phase_diagram(data["diagram_20x5"].sel(importance_decay=TWENTY_IN_FIVE_DECAY), path)


@figure("lone_feature")
def lone_feature(data, path: Path) -> Path:
    """b* and a* against density per p (one unit); L* against k per p (dense), with the global search."""
    ds = data["lone_feature"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    colours = plt.cm.viridis(np.linspace(0, 0.85, ds.sizes["p"]))
    one = ds.sel(k=ds.k.min())
    dense = ds.sel(density=ds.density.max())
    for colour, p in zip(colours, ds.p.values, strict=True):
        label = f"p = {p:g}"
        axes[0].semilogx(one.density, one.bias.sel(p=p), color=colour, label=label)
        axes[1].semilogx(one.density, one.norm_squared.sel(p=p), color=colour, label=label)
        axes[2].plot(dense.k, dense.loss.sel(p=p), "-", color=colour, label=label)
        axes[2].plot(dense.k, dense.searched_loss.sel(p=p), "x", color="k", ms=5)
    axes[0].set_ylabel("optimal bias b*")
    axes[1].set_ylabel("optimal ||W||² = mean gain a*")
    for ax in axes[:2]:
        ax.set_xlabel("density (one unit)")
    axes[2].set_xlabel("units k the feature is spread over (density 1)")
    axes[2].set_ylabel("optimal loss L*")
    axes[2].set_xticks(ds.k.values)
    axes[2].plot([], [], "x", color="k", label="search over all W, b")
    for ax in axes:
        ax.legend(fontsize=7)
    return _save(fig, path)


@figure("antipodal_pair")
def antipodal_pair(data, path: Path) -> Path:
    """Two features in k units: the fitted antipodal pair's loss and the search's least loss over all of W
    and b, each over the first-order closed form, against density; one panel per k, one colour per p."""
    ds = data["antipodal_pair"]
    fig, axes = plt.subplots(1, ds.sizes["k"], figsize=(4 * ds.sizes["k"], 3.6), sharey=True, squeeze=False)
    colours = plt.cm.viridis(np.linspace(0, 0.85, ds.sizes["p"]))
    for ax, k in zip(axes[0], ds.k.values, strict=True):
        at = ds.sel(k=k)
        for colour, p in zip(colours, ds.p.values, strict=True):
            cell = at.sel(p=p)
            ax.semilogx(
                cell.density, cell.pair_loss / cell.first_order, "-", color=colour, label=f"p = {p:g}"
            )
            ax.semilogx(cell.density, cell.searched_loss / cell.first_order, "x", color=colour, ms=5)
        ax.axhline(1.0, color="k", lw=0.8, ls=":")
        ax.set_title(f"{k} unit{'s' if k > 1 else ''}", fontsize=9)
        ax.set_xlabel("density s")
    axes[0, 0].set_ylabel("loss / first-order closed form")
    axes[0, 0].plot([], [], "x", color="k", label="search over all W, b")
    axes[0, 0].legend(fontsize=7)
    return _save(fig, path)


@figure("polygon_rotation")
def polygon_rotation(data, path: Path) -> Path:
    """A regular k-gon turned in two neurons: its first-order loss against the turn at p nearest 0.4 (left),
    and the half period's loss over the aligned one's against p (right), lines the closed form, crosses the
    exact loss at the sparsest density; one colour per k of three or more vertices."""
    ds = data["polygon_rotation"]
    ds = ds.sel(k=ds.k[ds.k >= 3])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = plt.cm.tab10(np.arange(ds.sizes["k"]))
    p_max = ds.p.sel(p=0.4, method="nearest").item()
    sparse = ds.exact_over_first_order.isel(density=0) * ds.first_order
    for colour, k in zip(colours, ds.k.values, strict=True):
        at = ds.sel(k=k)
        label = f"k = {k} (T = {at.period_degrees.item():.3g}°)"
        line = at.first_order.sel(p=p_max)
        axes[0].plot(at.turn, 100 * (line / line.isel(turn=0) - 1), "-", color=colour, label=label)
        axes[1].plot(at.p, 100 * at.turned_gain, "-", color=colour, label=label)
        exact = sparse.sel(k=k)
        axes[1].plot(at.p, 100 * (exact.isel(turn=-1) / exact.isel(turn=0) - 1), "x", color=colour, ms=6)
    for ax in axes:
        ax.axhline(0.0, color="k", lw=0.8, ls=":")
    axes[0].set_xlabel("turn φ / period T (0: a vertex on a neuron)")
    axes[0].set_ylabel(f"first-order loss, % above turn 0 (p = {p_max:g})")
    axes[1].set_xlabel("dropout p")
    axes[1].set_ylabel("loss at T/2, % above turn 0")
    axes[1].plot([], [], "x", color="k", label=f"exact loss, density {ds.density.min().item():g}")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    return _save(fig, path)


GROUP_CONFIGS = {
    "groups_2x2": "2 in 2, units one by one",
    "groups_2x2_one": "2 in 2, one group",
    "groups_5x4": "5 in 4, units one by one",
    "groups_5x4_pairs": "5 in 4, two groups of two",
}


@figure("groups")
def groups(data, path: Path) -> Path:
    """Superposition and spread over groups against p: theory's optimum (lines), best trained seed (marks)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for k, (alias, label) in enumerate(GROUP_CONFIGS.items()):
        ds = data[alias]
        n_groups = len(set(json.loads(ds.attrs["unit_groups"])))
        for ax, variable, scale in (
            (axes[0], "superposition", 1.0),
            (axes[1], "groups", 1.0 / n_groups),
        ):
            theory = ds[f"theory_{variable}"].mean([d for d in ds[f"theory_{variable}"].dims if d != "p"])
            trained = ds[f"trained_{variable}"].mean([d for d in ds[f"trained_{variable}"].dims if d != "p"])
            keep = ds.p > 0 if variable == "groups" else ds.p >= 0
            ax.plot(ds.p[keep], theory[keep] * scale, "-", color=f"C{k}", label=f"{label}: theory")
            ax.plot(
                ds.p[keep],
                trained[keep] * scale,
                "o",
                color=f"C{k}",
                ms=5,
                mfc="none",
                label=f"{label}: best trained seed",
            )
    axes[0].set_ylabel("superposition per represented feature")
    axes[1].set_ylabel("groups per feature / number of groups")
    for ax in axes:
        ax.set_xlabel("dropout p")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    return _save(fig, path)


@figure("series")
def series(data, path: Path) -> Path:
    """Blocks in series: their share of the loss, what one block's failure costs, the loss."""
    ds = data["series"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for k, name in enumerate(ds.config.values):
        at = ds.sel(config=name)
        blocks, direct = int(at.blocks), bool(at.direct)
        label = f"{blocks} x {int(at.units)} units" + ("" if direct else ", no direct path")
        style = "-" if direct else "--"
        axes[2].plot(ds.p, at.loss.mean("seed"), style, marker="o", ms=3, color=f"C{k}", label=label)
        if blocks > 1:
            axes[0].plot(
                ds.p, at.blocks_benefit.mean("seed"), style, marker="o", ms=3, color=f"C{k}", label=label
            )
            axes[1].plot(
                ds.p, at.lost_alone.mean("seed"), style, marker="o", ms=3, color=f"C{k}", label=label
            )
            axes[1].axhline(1 / blocks, color=f"C{k}", lw=0.8, ls=":")
    axes[0].set_ylabel("share of the loss the blocks remove")
    axes[1].set_ylabel("share of it lost when one block fails")
    axes[2].set_ylabel("loss with dropout")
    for ax in axes:
        ax.set_xlabel("dropout p (each block)")
        ax.legend(fontsize=7)
    return _save(fig, path)


@figure("study")
def study(data, path: Path) -> Path:
    """The study's experiments over seeds: features represented at 5 in 2 (trained beside the optimum),
    neuron alignment against p at 20 in 5, dimensions per feature at 20 in 5."""
    five, theory = data["study_5x2"], data["diagram_5x2"]
    basis, twenty = data["study_basis"], data["study_20x5"].sel(importance_decay=1.0)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    norms = feature_norms(theory)
    for k, p in enumerate(five.p.values):
        count = (five.feature_norm.sel(p=p) > REPRESENTED).sum("feature")
        axes[0].plot(five.density, count.mean("seed"), "o", color=f"C{k}", ms=4, label=f"trained, p = {p:g}")
        if p in theory.p.values:
            at = theory.sortby("density")
            axes[0].plot(
                at.density,
                (norms.sel(p=p) > REPRESENTED).sum("feature").sortby(at.density),
                "-",
                color=f"C{k}",
                label=f"optimum, p = {p:g}",
            )
        axes[2].plot(
            twenty.density,
            twenty.dimensions_per_feature.sel(p=p).mean("seed"),
            "o-",
            ms=3,
            color=f"C{k}",
            label=f"p = {p:g}",
        )
    axes[0].set_xscale("log")
    axes[0].set_xlabel("density")
    axes[0].set_ylabel(f"features with norm > {REPRESENTED:g} (5 in 2)")
    axes[0].legend(fontsize=7)
    alignment = basis.neuron_alignment.where(basis.feature_norm > REPRESENTED).mean("feature")
    for k, s in enumerate(basis.sparsity.values):
        at = alignment.sel(sparsity=s)
        axes[1].plot(basis.p, at.mean("seed"), "o-", ms=3, color=f"C{k}", label=f"density {1 - s:.2g}")
        axes[1].fill_between(basis.p, at.min("seed"), at.max("seed"), color=f"C{k}", alpha=0.15)
    axes[1].set_xlabel("dropout p")
    axes[1].set_ylabel("neuron alignment of represented features")
    axes[1].legend(fontsize=7)
    axes[2].set_xscale("log")
    axes[2].set_xlabel("density")
    axes[2].set_ylabel("dimensions per feature m / ||W||² (20 in 5)")
    axes[2].legend(fontsize=7)
    return _save(fig, path)
