"""The figure of a direct diagram (theory.direct_diagram): what the optimum over all W, b does with its
dropout groups, against density, one line per p, one row per importance value."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import xarray as xr
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from theory.phase_plots import finish, importance_axis, plain_log_axis


def represented_mean(ds: xr.Dataset, variable: str) -> xr.DataArray:
    """The mean of a per-feature variable over the features the optimum represents (NaN where none)."""
    threshold = float(ds.attrs["represented_above"])
    return ds[variable].where(ds.norm > threshold).mean("feature")


def busiest_group(ds: xr.Dataset) -> xr.DataArray:
    """Features per unit in the group that packs the most, max over groups of ||W_g||_F^2 / units."""
    return (1.0 / ds.group_dimensions_per_feature).max("group")


def group_label(ds: xr.Dataset) -> str:
    groups = json.loads(ds.attrs["unit_groups"])
    count = max(groups) + 1
    if count == len(groups):
        return f"every unit its own dropout group ({count})"
    return f"{count} dropout group{'s' if count > 1 else ''}, units {tuple(groups)}"


#: The figure's panels: (what is drawn, its axis label, title, the reference line's value or None).
PANELS = (
    ("represented", "features represented", "represented (dotted: units)", "units"),
    ("superposition", "superposition per represented feature", "superposition (TMS)", None),
    ("groups", "groups per represented feature", "groups per feature (> 1: redundant)", 1.0),
    ("busiest", "features per unit, busiest group", "features per unit in a group", 1.0),
)


def profile_name(axis: str | None, label) -> str:
    """A row's importance profile in words, ending in ': ' ('' without an importance axis)."""
    if axis is None:
        return ""
    if axis == "importance_decay":
        return "uniform importance: " if label == 1 else f"importance {label:g}**i: "
    return f"{axis} = {label:g}: "


def panel_values(ds: xr.Dataset, name: str) -> xr.DataArray:
    """What a panel of the figure draws, over the diagram's dims."""
    if name == "represented":
        return ds.represented
    if name == "superposition":
        return represented_mean(ds, "superposition")
    if name == "groups":
        return represented_mean(ds, "groups_per_feature")
    if name == "layer":  # features per unit in the whole layer, ||W||_F^2 / m: rotation-invariant
        return 1.0 / ds.dimensions_per_feature
    return busiest_group(ds)


def plot_direct_diagram(ds: xr.Dataset, out: str | Path, trained: xr.Dataset | None = None) -> Path:
    """The direct diagram's figure; with `trained` (the same variables for trained models, over the same
    dims: the best seed per cell), those as crosses beside theory's lines."""
    axis = importance_axis(ds)
    ds = ds.sortby(ds.density)
    if trained is not None:
        trained = trained.sortby(ds.density)
    rows = list(ds[axis].values) if axis else [None]
    fig, axes = plt.subplots(len(rows), len(PANELS), figsize=(16, 3.6 * len(rows)), squeeze=False)
    n, m = ds.sizes["feature"], ds.sizes["hidden"]
    for row, label in zip(axes, rows, strict=True):
        cell = ds.sel({axis: label}) if axis else ds
        models = None if trained is None else trained.sel({axis: label}) if axis else trained
        where = profile_name(axis, label)
        for ax, (name, ylabel, title, line) in zip(row, PANELS, strict=True):
            values = panel_values(cell, name)
            for k, p in enumerate(cell.p.values):
                ax.plot(cell.density, values.sel(p=p), marker="o", ms=3, color=f"C{k}")
                if models is not None:
                    ax.plot(cell.density, panel_values(models, name).sel(p=p), "x", ms=6, color=f"C{k}")
            if name == "represented":
                ax.set_ylim(0, n + 0.5)
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            if line is not None:
                ax.axhline(m if line == "units" else line, color="k", lw=0.8, ls=":")
            ax.set_ylabel(ylabel, fontsize=8)
            ax.set_title(where + title, fontsize=9)
            plain_log_axis(ax, "x")
            ax.set_xlabel("density 1 - S", fontsize=8)
            ax.tick_params(labelsize=7)
    title = f"Optimum over all W, b on the exact loss: {n} features in {m} units, {group_label(ds)}"
    if trained is not None:
        title += " (lines); best trained seed per cell (crosses)"
    caption = (
        f"A feature is represented when its column of W is longer than {ds.attrs['represented_above']:g}; "
        "the per-feature values are means over the represented features. Superposition: sum over the other "
        "features j of (W_i_hat . W_j)^2. Groups per feature: participation ratio of its squared norm over "
        "the dropout groups (1: inside one group; G: spread evenly over all G). Features per unit: "
        "||W_g||_F^2 / (units in g), the most over the groups. At p = 0 every rotation of the hidden space "
        "is optimal too, so how features spread over groups there is arbitrary."
    )
    handles = [Line2D([], [], marker="o", ms=3, color=f"C{k}") for k in range(ds.sizes["p"])]
    labels = [f"p = {p:g}" for p in ds.p.values]
    if trained is not None:
        handles.append(Line2D([], [], marker="x", ls="none", ms=6, color="k"))
        labels.append("best trained seed")
    return finish(fig, out, title, handles, labels, caption, ncol=len(handles))
