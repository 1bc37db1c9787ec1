"""`tms-dropout theory ...`: the exact expected loss from the command line."""

from __future__ import annotations

import json

import click
import numpy as np

from theory.errors import InputError
from theory.loss import expected_loss, expected_loss_bounds
from theory.montecarlo import monte_carlo_loss
from theory.setup import Setup


def _numbers(name: str, text: str | None):
    """'0.9' -> 0.9; '1,0.5' -> [1.0, 0.5]; a JSON array is accepted too."""
    if text is None:
        return None
    try:
        value = json.loads(text if text.strip().startswith("[") else f"[{text}]")
    except json.JSONDecodeError:
        raise InputError(
            f"--{name} = {text!r} is not a number or a comma-separated list of numbers"
        ) from None
    return value[0] if len(value) == 1 and not text.strip().startswith("[") else value


@click.group()
def group():
    """Exact theory of the toy model under dropout."""


@group.command("loss")
@click.option("--n-features", type=int, required=True)
@click.option("--n-hidden", type=int, required=True)
@click.option(
    "--sparsity", default="0", show_default=True, help="One value, or one per feature (comma list)."
)
@click.option("--importance", default=None, help="One value per feature (comma list); default all ones.")
@click.option("--p", "p", default="0", show_default=True, help="Dropout rate on the hidden layer, in [0, 1).")
@click.option("--W", "W", required=True, help='JSON array of shape (n_hidden, n_features), e.g. "[[1,-1]]".')
@click.option("--b", "b", default=None, help="JSON array of shape (n_features,); default zeros.")
@click.option("--max-active", type=int, default=None, help="Truncate to active sets of at most this size.")
@click.option("--samples", type=int, default=0, show_default=True, help="Also a Monte Carlo estimate.")
def loss_command(n_features, n_hidden, sparsity, importance, p, W, b, max_active, samples):
    """Print the exact expected loss L (sum over features) of one model."""
    setup = Setup(
        n_features,
        n_hidden,
        sparsity=_numbers("sparsity", sparsity),
        importance=_numbers("importance", importance),
        p=_numbers("p", p),
    )
    W_array = _numbers("W", W)
    b_array = np.zeros(n_features) if b is None else _numbers("b", b)
    if max_active is None:
        value = float(expected_loss(setup, W_array, b_array))
        click.echo(f"expected loss (sum over features): {value:.12g}")
        click.echo(f"expected loss (mean over features, TMS notebook): {value / n_features:.12g}")
    else:
        bounds = expected_loss_bounds(setup, W_array, b_array, max_active)
        click.echo(
            f"expected loss (sum over features) in [{float(bounds.lower):.12g}, {float(bounds.upper):.12g}]"
            f" (active sets of at most {bounds.max_active} features; omitted mass "
            f"{bounds.omitted_mass:.3g})"
        )
    if samples:
        mc = monte_carlo_loss(setup, W_array, b_array, n_samples=samples)
        click.echo(f"Monte Carlo ({samples} samples): {mc.mean:.8g} +- {mc.stderr:.2g}")


def _range(name: str, text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(":"))
    except ValueError:
        raise InputError(f"--{name} = {text!r} must be LOW:HIGH, e.g. 0.01:1") from None
    if not 0 < low < high:
        raise InputError(f"--{name} = {text!r} must have 0 < LOW < HIGH")
    return low, high


@group.command("phase-diagram")
@click.option(
    "--problem",
    type=click.Choice(["2x1", "3x2", "5x2", "20x5"]),
    default="2x1",
    show_default=True,
    help="n features x m hidden. 2x1 and 3x2: a (density, r) diagram per p; 5x2: one (density, p) "
    "diagram; 20x5: one (density, p) diagram of composites of blocks (theory.composite_phase).",
)
@click.option("--density", "density_range", default="0.01:1", show_default=True, help="LOW:HIGH, log-spaced.")
@click.option(
    "--r",
    "r_range",
    default="0.1:10",
    show_default=True,
    help="2x1, 3x2: relative importance of the last feature, LOW:HIGH, log-spaced.",
)
@click.option(
    "--decay",
    type=float,
    default=None,
    help="5x2, 20x5: importance of feature i is DECAY**i [default: 5x2 0.9, 20x5 0.7 (the TMS article)].",
)
@click.option(
    "--max-polygon",
    type=int,
    default=5,
    show_default=True,
    help="20x5: the largest k-gon block (3 to 6; 2: none); each k is one (k, 2) diagram, every vertex order.",
)
@click.option(
    "--points", type=int, default=None, help="Grid points per axis [default: 60; 5x2: 12 densities]."
)
@click.option(
    "--p", "p", default=None, help="Dropout rates (comma list) [default: 0,0.15,0.4; 5x2: 0,0.1,...,0.5]."
)
@click.option(
    "--completeness",
    type=int,
    default=0,
    show_default=True,
    help="Cells (5x2: densities) per p at which to minimise the exact loss over all W, b.",
)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="netCDF file to write.")
@click.option("--figure", type=click.Path(dir_okay=False), default=None, help="PNG (default: OUT with .png).")
def phase_diagram_command(
    problem, density_range, r_range, decay, max_polygon, points, p, completeness, out, figure
):
    """Analytic phase diagram: the catalogue's optimal geometry at every cell, every parameter optimised."""
    import sys
    from pathlib import Path

    n, m = (int(v) for v in problem.split("x"))
    by_density = problem in ("5x2", "20x5")
    points = (12 if by_density else 60) if points is None else points
    if points < 2:
        raise InputError(f"--points = {points} is not allowed; it must be at least 2")
    p = ("0,0.1,0.2,0.3,0.4,0.5" if problem == "5x2" else "0,0.15,0.4") if p is None else p
    decay = (0.7 if problem == "20x5" else 0.9) if decay is None else decay
    densities = np.geomspace(*_range("density", density_range), points)
    if densities.max() > 1:
        raise InputError(f"--density = {density_range!r}: a density is at most 1")
    ps = np.atleast_1d(_numbers("p", p)).astype(float)
    show = sys.stderr.isatty()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if problem == "20x5":
        if completeness:
            raise InputError("--completeness needs the exact loss over all W, b: 2x1, 3x2 and 5x2 only")
        _composite_diagram(n, m, decay, max_polygon, densities, ps, out, figure, show)
    elif problem == "5x2":
        _density_diagram(n, m, decay, densities, ps, completeness, out, figure, show)
    else:
        _ratio_diagram(
            n, m, densities, np.geomspace(*_range("r", r_range), points), ps, completeness, out, figure, show
        )


def _ratio_diagram(n, m, densities, ratios, ps, completeness, out, figure, show):
    from theory.phase import completeness as check_completeness
    from theory.phase import phase_diagram
    from theory.phase_plots import plot_phase_diagram

    def progress(done, total):
        if show:
            click.echo(f"  p {done}/{total} done", err=True)

    ds = phase_diagram(n, m, densities, ratios, ps, progress=progress)
    if completeness:
        ds = check_completeness(ds, cells_per_p=completeness)
    ds.to_netcdf(out)
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


def _density_diagram(n, m, decay, densities, ps, completeness, out, figure, show):
    from theory.phase_plots import plot_density_diagram
    from theory.sparsity_phase import completeness as check_completeness
    from theory.sparsity_phase import density_diagram

    if not (np.isfinite(decay) and 0 < decay <= 1):
        raise InputError(f"--decay = {decay} is not allowed; it must be in (0, 1]")

    def progress(done, total, seconds):
        if show:
            click.echo(f"  density {done}/{total} done ({seconds:.0f} s)", err=True)

    ds = density_diagram(n, m, decay ** np.arange(n), densities, ps, progress=progress)
    if completeness:
        ds = check_completeness(ds, cells_per_p=completeness)
    ds.to_netcdf(out)
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


def _composite_diagram(n, m, decay, max_polygon, densities, ps, out, figure, show):
    from theory.composite_phase import composite_diagram
    from theory.phase_plots import plot_density_diagram

    def progress(shape, seconds):
        if show:
            click.echo(f"  {shape} blocks fitted ({seconds:.0f} s)", err=True)

    ds = composite_diagram(n, m, decay, densities, ps, max_polygon=max_polygon, progress=progress)
    ds.to_netcdf(out)
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
