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
