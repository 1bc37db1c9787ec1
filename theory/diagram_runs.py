"""The `theory phase-diagram` command's work: compute a diagram, save it and its figure, print a summary.

Kept apart from theory.cli, whose import must stay light (the command line
answers --help and input errors without importing numpy, sympy or torch).
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from theory.cli import MAX_POLYGON
from theory.errors import InputError


def run(
    grid,
    out: Path,
    figure: Path | None,
    max_polygon: int = MAX_POLYGON,
    completeness: int = 0,
    search: bool | None = None,
) -> None:
    """theory.phase_diagram on grid (search: theory.phase_diagram's), with completeness cells per p; write
    OUT and its figure (None: OUT with .png); summarise. The defaults are the command's."""
    from theory.candidates import catalogue
    from theory.diagram import completeness as check_completeness
    from theory.diagram import phase_diagram
    from theory.loss import MAX_EXACT_FEATURES
    from theory.phase_plots import plot_phase_diagram
    from theory.storage import save_dataset

    if completeness and 8 < grid.n_features <= MAX_EXACT_FEATURES:
        raise InputError(
            "--completeness searches all of W, b on the exact loss up to 8 features (9 to "
            f"{MAX_EXACT_FEATURES}: too slow) and on the truncated loss past {MAX_EXACT_FEATURES}"
        )
    ds = phase_diagram(grid, catalogue(grid.n_features, grid.n_hidden, max_polygon), search=search)
    if completeness:
        ds = check_completeness(ds, cells=completeness)
    save_dataset(ds, out)
    figure = plot_phase_diagram(ds, figure or out.with_suffix(".png"))
    click.echo(f"wrote {out} and {figure}")
    if "assumptions" in ds.attrs:
        click.echo(f"assumptions: {ds.attrs['assumptions']}")
    for line in summary(ds):
        click.echo(line)


def run_direct(grid, out: Path, figure: Path | None, starts: int, samples: int) -> None:
    """theory.direct_diagram on grid; write OUT and its figure; summarise."""
    from theory.direct_diagram import direct_diagram
    from theory.direct_plots import plot_direct_diagram
    from theory.storage import save_dataset

    ds = direct_diagram(grid, n_starts=starts, samples=samples)
    save_dataset(ds, out)
    figure = plot_direct_diagram(ds, figure or out.with_suffix(".png"))
    click.echo(f"wrote {out} and {figure}")
    for line in direct_summary(ds):
        click.echo(line)


def direct_summary(ds) -> list[str]:
    """Per p and importance value, each density: the optimum's loss, its Monte Carlo check, features
    represented, groups per represented feature and features per unit in the busiest group."""
    from theory.direct_plots import busiest_group, group_label, represented_mean
    from theory.phase_plots import importance_axis

    axis = importance_axis(ds)
    lines = [group_label(ds)]
    z = float(np.abs(ds.monte_carlo_z).max())
    lines.append(f"Monte Carlo check of every optimum: largest |MC - exact| / stderr {z:.2f}")
    view = ds.transpose("p", *([axis] if axis else []), "sparsity", ...)
    for k, p in enumerate(view.p.values):
        for label in view[axis].values if axis else [None]:
            cell = view.isel(p=k).sel({axis: label}) if axis else view.isel(p=k)
            lines.append(f"p = {p:g}" + (f", {axis} = {label:.4g}" if axis else "") + " (density: loss, "
                         "represented, superposition, groups per feature, features per unit in the busiest "
                         "group)")  # fmt: skip
            overlap = represented_mean(cell, "superposition")
            groups, busiest = represented_mean(cell, "groups_per_feature"), busiest_group(cell)
            for i in np.argsort(cell.density.values):
                lines.append(
                    f"  {cell.density.values[i]:.3g}: {float(cell.optimal_loss[i]):.6g}, "
                    f"{int(cell.represented[i])}, {float(overlap[i]):.2f}, {float(groups[i]):.2f}, "
                    f"{float(busiest[i]):.2f}"
                )
    return lines


def _order(vertices) -> str:
    """A polygon's vertex order for printing ('' for none)."""
    vertices = [int(v) for v in vertices if v >= 0]
    return f" [{' '.join(map(str, vertices))}]" if vertices else ""


def summary(ds) -> list[str]:
    """Per p and importance value: each density's phase (or, on large grids, cells per phase), the
    superposition onset, and the completeness check where it was run."""
    from theory.phase_plots import importance_axis

    axis = importance_axis(ds)
    names = [str(g) for g in ds.geometry.values]
    lines = []
    view = ds.transpose("p", *([axis] if axis else []), "sparsity", ...)
    labels = view[axis].values if axis else [None]
    for k, p in enumerate(view.p.values):
        for a, label in enumerate(labels):
            cell = view.isel(p=k, **({axis: a} if axis else {}))
            where = f"p = {p:g}" + (f", {axis} = {label:.4g}" if axis else "")
            phase = cell.phase.values
            if phase.size <= 30:
                parts = []
                for i, g in enumerate(phase):
                    text = f"{names[g]} ({cell.composite.values[i]})" if "composite" in cell else names[g]
                    order = "" if "composite" in cell else _order(cell.vertex_order.values[i, g])
                    parts.append(f"{cell.density.values[i]:.3g}: {text}{order}")
                lines.append(f"{where} (density: phase) " + " | ".join(parts))
            else:
                counts = {names[g]: int((phase == g).sum()) for g in np.unique(phase)}
                lines.append(f"{where}: cells per phase {counts}")
            lines.append(f"  superposition onset: density {float(cell.superposition_onset):.3g}")
            if "search_wins" in cell:
                wins = np.flatnonzero(cell.search_wins.values)
                total = cell.search_wins.size
                lines.append(f"  search over all of W, b beats the candidates in {len(wins)} of {total}")
                for i in wins:
                    family, found = float(cell.family_loss.values[i]), float(cell.search_loss.values[i])
                    lines.append(
                        f"    density {cell.density.values[i]:.3g}: candidates {family:.6g}, search "
                        f"{found:.6g} +- {float(cell.search_loss_stderr.values[i]):.2g} (candidates / search "
                        f"{family / found:.4f}), {int(cell.represented.values[i])} features represented"
                    )
            if "exact_minimum" in cell:
                for i in np.flatnonzero(np.isfinite(cell.exact_minimum.values)):
                    best, exact = float(cell.optimal_loss.values[i]), float(cell.exact_minimum.values[i])
                    flag = "MISSING PHASE" if bool(cell.missing_phase.values[i]) else "ok"
                    lines.append(
                        f"  completeness, density {cell.density.values[i]:.3g}: catalogue {best:.8g}, exact "
                        f"minimum {exact:.8g} ({(best - exact) / exact:+.2e} relative) {flag}"
                    )
            if "direct_upper" in cell:
                family = cell.family_loss if "family_loss" in cell else cell.optimal_loss
                for i in np.flatnonzero(np.isfinite(cell.direct_upper.values)):
                    best = float(family.values[i])
                    low, high = float(cell.direct_lower.values[i]), float(cell.direct_upper.values[i])
                    mc, se = (
                        float(cell.direct_monte_carlo.values[i]),
                        float(cell.direct_monte_carlo_stderr.values[i]),
                    )
                    flag = "MISSING PHASE" if bool(cell.missing_phase.values[i]) else "ok"
                    lines.append(
                        f"  completeness, density {cell.density.values[i]:.3g}: catalogue {best:.6g}, least "
                        f"found over all W, b in [{low:.6g}, {high:.6g}] (Monte Carlo {mc:.6g} +- {se:.2g}; "
                        f"catalogue / Monte Carlo {best / mc:.4f}) {flag}"
                    )
    return lines
