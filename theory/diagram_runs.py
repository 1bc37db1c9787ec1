"""The `theory phase-diagram` command's work: compute a diagram, save it and its figure, print a summary.

Kept apart from theory.cli, whose import must stay light (the command line
answers --help and input errors without importing numpy, sympy or torch).
"""

from __future__ import annotations

import click
import numpy as np

from theory.storage import save_dataset


def ratio_diagram(n, m, densities, ratios, ps, completeness, out, figure):
    """2x1, 3x2: a (density, r) diagram per p from the closed forms (theory.phase)."""
    from theory.phase import completeness as check_completeness
    from theory.phase import phase_diagram
    from theory.phase_plots import plot_phase_diagram

    ds = phase_diagram(n, m, densities, ratios, ps)
    if completeness:
        ds = check_completeness(ds, cells_per_p=completeness)
    save_dataset(ds, out)
    figure = plot_phase_diagram(ds, figure or out.with_suffix(".png"))
    click.echo(f"wrote {out} and {figure}")
    for k, p_value in enumerate(ds.p.values):
        counts = {
            str(ds.geometry.values[i]): int((ds.phase.values[k] == i).sum())
            for i in np.unique(ds.phase.values[k])
        }
        click.echo(f"p = {p_value:g}: cells per phase {counts}")
    if completeness:
        click.echo(
            f"completeness: {int(ds.missing_phase.sum())} of {int(np.isfinite(ds.exact_minimum).sum())} "
            "sampled cells have an exact minimum below the catalogue's best"
        )


def _order(vertices) -> str:
    """A polygon's vertex order for printing ('' for none)."""
    vertices = [int(v) for v in vertices if v >= 0]
    return f" [{' '.join(map(str, vertices))}]" if vertices else ""


def density_diagram(n, m, decay, densities, ps, completeness, out, figure):
    """5x2: one (density, p) diagram, polygons fitted on the exact loss (theory.sparsity_phase)."""
    from theory.phase_plots import plot_density_diagram
    from theory.sparsity_phase import completeness as check_completeness
    from theory.sparsity_phase import density_diagram as fit_density_diagram

    ds = fit_density_diagram(n, m, decay ** np.arange(n), densities, ps)
    if completeness:
        ds = check_completeness(ds, cells_per_p=completeness)
    save_dataset(ds, out)
    figure = plot_density_diagram(ds, figure or out.with_suffix(".png"))
    click.echo(f"wrote {out} and {figure}")
    names = ds.geometry.values
    for k, p_value in enumerate(ds.p.values):
        phases = " | ".join(
            f"{d:.3g}: {names[g]}{_order(ds.vertex_order.values[k, i, g])}"
            for i, (d, g) in enumerate(zip(ds.density.values, ds.phase.values[k], strict=True))
        )
        click.echo(f"p = {p_value:g} (density: phase) {phases}")
        click.echo(f"  superposition onset: density {float(ds.superposition_onset.values[k]):.3g}")
    if completeness:
        for k, i in zip(*np.nonzero(np.isfinite(ds.exact_minimum.values)), strict=True):
            best, exact = float(ds.optimal_loss.values[k, i]), float(ds.exact_minimum.values[k, i])
            flag = "MISSING PHASE" if bool(ds.missing_phase.values[k, i]) else "ok"
            click.echo(
                f"completeness p = {ds.p.values[k]:g}, density {ds.density.values[i]:.3g}: catalogue "
                f"{best:.8g}, exact minimum {exact:.8g} ({(best - exact) / exact:+.2e} relative) {flag}"
            )


def composite_diagram(n, m, decay, max_polygon, densities, ps, out, figure):
    """20x5: one (density, p) diagram of composites of blocks (theory.composite_phase)."""
    from theory.composite_phase import composite_diagram as fit_composite_diagram
    from theory.phase_plots import plot_density_diagram

    ds = fit_composite_diagram(n, m, decay, densities, ps, max_polygon=max_polygon)
    save_dataset(ds, out)
    figure = plot_density_diagram(ds, figure or out.with_suffix(".png"))
    click.echo(f"wrote {out} and {figure}")
    click.echo(f"assumptions: {ds.attrs['assumptions']}")
    names = ds.geometry.values
    for k, p_value in enumerate(ds.p.values):
        click.echo(
            f"p = {p_value:g}: superposition onset density {float(ds.superposition_onset.values[k]):.3g}"
        )
        for i, d in enumerate(ds.density.values):
            click.echo(
                f"  density {d:.3g}: {names[ds.phase.values[k, i]]} ({int(ds.represented.values[k, i])} "
                f"features, {float(ds.dimensions_per_feature.values[k, i]):.3g} dims/feature; runner-up "
                f"{names[ds.runner_up.values[k, i]]} +{float(ds.margin.values[k, i]):.2g}): "
                f"{ds.composite.values[k, i]}"
            )
