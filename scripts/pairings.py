"""Which features the composite family pairs: the best pairing of singles and pairs, exact, cell by cell.

    python scripts/pairings.py THEORY.nc [--first 12] [--out FILE.md]

THEORY.nc: a composite phase diagram (`tms-dropout theory phase-diagram`,
or the theory.nc that scripts/twenty_in_five.py writes). The family puts its
dedicated features and pairs (blocks of one neuron) on the most important
features, in any matching of the features they share, and fits each pair
by its closed forms. Here, independently, every composite made only of
blocks on one neuron each (a dedicated feature, or two features on one
neuron) is tried with any features in any block, among the --first most
important, the others ignored (each bias at its mean; a more important
feature may be ignored where a less important one is represented, which
the family never does): blocks on neurons of their own make the loss the
sum of their exact losses (each block its own problem, minimised by
theory.optimize.minimize_loss from 12 starts, not the family's fits), so
the least of them is found by trying every choice (a recursion over the
features in importance order, each block's loss computed once). Per cell:
that least loss and its blocks, the family's optimum and the diagram's
(optimal_loss), and the ratio of the first to the last; below 1 where such
a composite is lower than anything the diagram holds. Prints the table (and
writes it to --out).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import xarray as xr

from theory import Setup
from theory.composite import ignore_loss
from theory.errors import InputError
from theory.optimize import minimize_loss
from theory.progress import Progress
from theory.storage import save_text


def composite(blocks: Sequence[tuple[int, ...]], importance, density: float, p: float = 0.0) -> float:
    """Exact loss: each block (its features) on a neuron of its own, every other feature ignored."""
    importance = np.asarray(importance, dtype=float)
    fitted = 0.0
    for block in blocks:
        setup = Setup(len(block), 1, sparsity=1 - density, importance=importance[list(block)], p=p)
        fitted += minimize_loss(setup, n_starts=12).loss
    ignored = [f for f in range(len(importance)) if all(f not in block for block in blocks)]
    return float(fitted + importance[ignored].sum() * ignore_loss(density))


def best_singles_and_pairs(importance, density: float, neurons: int, first: int, p: float = 0.0):
    """(least exact loss, its blocks) over every choice of at most `neurons` disjoint singles and pairs
    among features 0..first-1, the rest ignored."""
    importance = np.asarray(importance, dtype=float)
    base = composite([], importance, density, p)

    @cache
    def gain(block):  # what the block saves over ignoring its features
        return composite([block], importance, density, p) - base

    @cache
    def best(left: tuple[int, ...], units: int):
        if not left or not units:
            return 0.0, ()
        f, rest = left[0], left[1:]
        options = [best(rest, units)]  # f ignored
        for block in [(f,)] + [(f, g) for g in rest]:
            value, blocks = best(tuple(x for x in rest if x not in block), units - 1)
            options.append((value + gain(block), (block,) + blocks))
        return min(options)

    value, blocks = best(tuple(range(min(first, len(importance)))), neurons)
    return base + value, blocks


def table(theory: xr.Dataset, first: int, progress=None) -> tuple[str, int]:
    """The markdown table of every cell and the number of cells where the pairing is below the optimum."""
    dims = [d for d in theory.optimal_loss.dims if d != "sparsity"] + ["sparsity"]
    ordered = theory.optimal_loss.transpose(*dims)
    neurons = int(theory.sizes["hidden"])
    lines = [
        f"| {' | '.join(d for d in dims if d != 'sparsity')} | density | singles and pairs | their blocks | "
        "family | optimum | pairs / optimum |",
        "|" + "---|" * (len(dims) + 5),
    ]
    below = 0
    with Progress.of(progress, ordered.size, "pairings", "cell") as bar:
        for index in np.ndindex(*ordered.shape):
            cell = theory.isel(dict(zip(dims, index, strict=True)))
            importance = cell.importance.values
            density = float(1 - cell.sparsity)
            value, blocks = best_singles_and_pairs(importance, density, neurons, first, float(cell.p))
            optimum = float(cell.optimal_loss)
            family = float(cell.family_loss) if "family_loss" in cell else optimum
            ratio = value / optimum
            lower = ratio < 1 - 1e-6
            below += lower
            label = " | ".join(f"{float(cell[d]):g}" for d in dims if d != "sparsity")
            named = ", ".join("(" + " ".join(map(str, b)) + ")" for b in blocks)
            lines.append(
                f"| {label} | {density:.3g} | {value:.6f} | {named} | {family:.6f} | {optimum:.6f} | "
                f"{ratio:.4f}{' **below**' if lower else ''} |"
            )
            bar.update()
    lines += ["", f"- singles and pairs in any pairing below the diagram's optimum at {below} of "
              f"{ordered.size} cells"]  # fmt: skip
    return "\n".join(lines), below


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("theory", type=Path, help="a composite phase diagram (netCDF)")
    parser.add_argument("--first", type=int, default=12, help="the features blocks may take (most important)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (markdown)")
    args = parser.parse_args(argv)
    try:
        if not args.theory.is_file():
            raise InputError(f"{args.theory}: no such file (`tms-dropout theory phase-diagram` writes one)")
        if args.first < 1:
            raise InputError(f"--first = {args.first} must be at least 1")
        theory = xr.load_dataset(args.theory)
        missing = [v for v in ("optimal_loss", "importance") if v not in theory]
        missing += [axis for axis in ("hidden", "p", "sparsity") if axis not in theory.coords]
        if missing:
            raise InputError(f"{args.theory} is not a phase diagram: it has no {', '.join(missing)}")
        text, _ = table(theory, args.first, progress=True)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(text)
    if args.out is not None:
        save_text(text + "\n", args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
