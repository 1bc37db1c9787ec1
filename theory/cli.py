"""`tms-dropout theory ...`: the exact expected loss from the command line."""

from __future__ import annotations

import json
import math

import click

from theory.errors import InputError


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
    from theory.setup import Setup  # numpy only: input errors are reported before torch is imported

    setup = Setup(
        n_features,
        n_hidden,
        sparsity=_numbers("sparsity", sparsity),
        importance=_numbers("importance", importance),
        p=_numbers("p", p),
    )
    W_array, b_array = setup.check_parameters(
        _numbers("W", W), [0.0] * n_features if b is None else _numbers("b", b)
    )

    from theory.loss import expected_loss, expected_loss_bounds
    from theory.montecarlo import monte_carlo_loss

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
    from pathlib import Path

    import numpy as np

    from theory import diagram_runs as runs

    n, m = (int(v) for v in problem.split("x"))
    by_density = problem in ("5x2", "20x5")
    points = (12 if by_density else 60) if points is None else points
    if points < 2:
        raise InputError(f"--points = {points} is not allowed; it must be at least 2")
    p = ("0,0.1,0.2,0.3,0.4,0.5" if problem == "5x2" else "0,0.15,0.4") if p is None else p
    decay = (0.7 if problem == "20x5" else 0.9) if decay is None else decay
    if not (math.isfinite(decay) and 0 < decay <= 1):
        raise InputError(f"--decay = {decay} is not allowed; it must be in (0, 1]")
    densities = np.geomspace(*_range("density", density_range), points)
    if densities.max() > 1:
        raise InputError(f"--density = {density_range!r}: a density is at most 1")
    ps = np.atleast_1d(_numbers("p", p)).astype(float)
    out = Path(out)
    if problem == "20x5":
        if completeness:
            raise InputError("--completeness needs the exact loss over all W, b: 2x1, 3x2 and 5x2 only")
        runs.composite_diagram(n, m, decay, max_polygon, densities, ps, out, figure)
    elif problem == "5x2":
        runs.density_diagram(n, m, decay, densities, ps, completeness, out, figure)
    else:
        ratios = np.geomspace(*_range("r", r_range), points)
        runs.ratio_diagram(n, m, densities, ratios, ps, completeness, out, figure)
