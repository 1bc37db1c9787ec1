"""`tms-dropout theory ...`: the exact expected loss from the command line."""

from __future__ import annotations

import json
import math

import click

from theory.errors import InputError

#: `theory phase-diagram`'s largest k-gon block by default (theory.diagram_runs.run's too).
MAX_POLYGON = 5


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


#: --problem's defaults: points per axis, p, importance decay (None: an r axis).
SHORTHANDS = {
    "2x1": (60, "0,0.15,0.4", None),
    "3x2": (12, "0,0.15,0.4", None),
    "5x2": (12, "0,0.1,0.2,0.3,0.4,0.5", 0.9),
    "20x5": (12, "0,0.15,0.4", 0.7),
}


def shorthand_grid(problem, density_range, r_range, decay, points, p):
    """The Grid --problem and its flags describe (numpy only)."""
    import numpy as np

    from theory.grid import Grid

    n, m = (int(v) for v in problem.split("x"))
    default_points, default_p, default_decay = SHORTHANDS[problem]
    points = default_points if points is None else points
    if points < 2:
        raise InputError(f"--points = {points} is not allowed; it must be at least 2")
    densities = np.geomspace(*_range("density", density_range), points)
    if densities.max() > 1:
        raise InputError(f"--density = {density_range!r}: a density is at most 1")
    ps = np.atleast_1d(_numbers("p", default_p if p is None else p)).astype(float)
    if default_decay is None:
        if decay is not None:
            raise InputError(f"--decay is for 5x2 and 20x5; {problem} has an r axis (--r)")
        ratios = np.geomspace(*_range("r", r_range), points)
        return Grid(n, m, sparsity=tuple(1 - densities), p=tuple(ps), r=tuple(ratios))
    decay = default_decay if decay is None else decay
    if not (math.isfinite(decay) and 0 < decay <= 1):
        raise InputError(f"--decay = {decay} is not allowed; it must be in (0, 1]")
    return Grid(n, m, sparsity=tuple(1 - densities), p=tuple(ps), importance=tuple(decay ** np.arange(n)))


@group.command("direct-diagram")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--starts", type=int, default=8, show_default=True, help="Random starts per cell.")
@click.option(
    "--samples",
    type=int,
    default=1 << 20,
    show_default=True,
    help="Monte Carlo samples checking each optimum.",
)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="netCDF file to write.")
@click.option("--figure", type=click.Path(dir_okay=False), default=None, help="PNG (default: OUT with .png).")
def direct_diagram_command(config, starts, samples, out, figure):
    """The optimum over all of W and b at every cell of CONFIG's grid, on the exact loss (at most 12
    features), with no candidate family: for problems the catalogue does not describe, above all hidden
    units dropped in groups ([model] dropout_groups). Each optimum is checked by Monte Carlo."""
    from pathlib import Path

    from theory.grid import Grid

    grid = Grid.from_toml(config)
    if starts < 1:
        raise InputError(f"--starts = {starts} is not allowed; it must be at least 1")
    if samples < 2:
        raise InputError(f"--samples = {samples} is not allowed; it must be at least 2")

    from theory import diagram_runs

    diagram_runs.run_direct(grid, Path(out), Path(figure) if figure else None, starts, samples)


@group.command("phase-diagram")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--problem",
    type=click.Choice(list(SHORTHANDS)),
    default=None,
    help="Without CONFIG: a grid for n features x m hidden. 2x1, 3x2: (density, r) per p; 5x2, 20x5: "
    "(density, p) at importance DECAY**i [default: 2x1].",
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
@click.option("--points", type=int, default=None, help="Grid points per axis [default: 2x1 60, others 12].")
@click.option(
    "--p", "p", default=None, help="Dropout rates (comma list) [default: 0,0.15,0.4; 5x2: 0,0.1,...,0.5]."
)
@click.option(
    "--max-polygon",
    type=int,
    default=MAX_POLYGON,
    show_default=True,
    help="Composites (every problem but 2x1, 3x2, 5x2): the largest k-gon block (3 to 6; 2: none).",
)
@click.option(
    "--completeness",
    type=int,
    default=0,
    show_default=True,
    help="Cells per p at which to minimise the loss over all W, b: on the exact loss up to 8 features; "
    "past 12, on the loss truncated to few active features, at density <= 0.1 only, bracketed rigorously.",
)
@click.option(
    "--search/--no-search",
    default=None,
    help="Also minimise the loss over all of W, b at every cell on a fixed sample of inputs and masks, "
    "and take that as the optimum where it beats the candidates (by 2 standard errors of its Monte Carlo "
    "loss) [default: past 12 features only; seconds a cell].",
)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="netCDF file to write.")
@click.option("--figure", type=click.Path(dir_okay=False), default=None, help="PNG (default: OUT with .png).")
@click.pass_context
def phase_diagram_command(
    ctx,
    config,
    problem,
    density_range,
    r_range,
    decay,
    points,
    p,
    max_polygon,
    completeness,
    search,
    out,
    figure,
):
    """Analytic phase diagram over CONFIG's grid ([model] and [grid], as `sim sweep` reads them; seeds
    and the other tables are ignored), or over --problem's: the catalogue's optimal candidate at every
    cell, every parameter optimised. Its dims match the sweep's of the same config."""
    from pathlib import Path

    from click.core import ParameterSource

    from theory.grid import Grid

    grid_flags = ("problem", "density_range", "r_range", "decay", "points", "p")
    given = [f for f in grid_flags if ctx.get_parameter_source(f) == ParameterSource.COMMANDLINE]
    if config is not None:
        if given:
            raise InputError(f"CONFIG describes the grid; leave out {', '.join('--' + g for g in given)}")
        grid = Grid.from_toml(config)
    else:
        grid = shorthand_grid(problem or "2x1", density_range, r_range, decay, points, p)
    if not 2 <= max_polygon <= 6:
        raise InputError(f"--max-polygon = {max_polygon} is not allowed; it must be 2 (no polygons) to 6")

    from theory import diagram_runs

    diagram_runs.run(grid, Path(out), Path(figure) if figure else None, max_polygon, completeness, search)
