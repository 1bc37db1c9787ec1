"""One 20-in-5 cell where training beats the composite family: are the features it does not represent
working as a bias of the hidden layer?

    python scripts/hidden_offset.py [--decay 0.7] [--p 0.15] [--density 0.3684 ...] [--seeds 12]
                                    [--steps 10000] [--samples 2000000] [--tail-starts 4]
                                    [--out runs/hidden_offset.nc]

The model x' = ReLU(W^T D W x / (1 - p) + b) has a bias on its outputs only.
Under dropout an offset c in the hidden layer would be worth having: it
reaches output i as w_i . D c / (1 - p), a bias that moves with the dropout
mask D, as the signal does. The trained models at such cells give the
features they do not represent small columns that all point one way; their
sum over the active ones is such an offset (random, through the count of
active features, but passed through the same mask as the signal).

At each --density the script trains --seeds models (sim.trainer, the study's loop)
and takes the one of least loss on --samples fresh samples; runs theory's
phase diagram at the cell (the composite family, and its search over all of
W and b on the sampled loss, theory.diagram.search_optimum: the independent
check); fits the --head most important features with all of W and b free
on the exact loss, the rest ignored (theory.minimize_loss: the best any
geometry of those features alone can do). For the best trained model and
the search's, it describes the unrepresented columns (norms, mean pairwise
cosine, the offset their mean inputs make) and scores the model on one
stream of samples three ways:

- as it is (checked against theory.monte_carlo_loss on another stream:
  the two must agree within 4 standard errors, or the script stops);
- each unrepresented feature's input replaced by its mean, density / 2:
  their columns then add a constant offset to the hidden layer, passed
  through the dropout mask;
- the same offset added after the mask (not dropped): a constant bias of
  the outputs, which b already provides.

Beside them, theory.tail_offset's structure fitted from --tail-starts random
starts (the --head most important features free, the rest along one shared
direction, with a norm each or one norm for all; sampled loss, re-scored by
Monte Carlo), scored the same three ways: if it reaches the search's loss,
it is the optimum's shape, named with a few parameters.

If the second is as low as the first and the third is not, the unrepresented
features work as a hidden-layer bias that dropout modulates. What it is for:
output i is b_i + s_i (x_i - a_i) + ... with the random gain
s_i = w_i . D w_i / (1 - p) and a_i = -w_i . c / |w_i|^2 the part of the
offset along w_i; the gain's noise costs Var(s_i) E[(x_i - a_i)^2], least
with the input centred (a_i at its mean), which b alone, added after the
mask, cannot do. The script reports a_i as a fraction of each represented
feature's mean input (centred_fraction) and b_i over that mean. Writes the
numbers to --out (a Dataset with the config) and prints them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from sim.trainer import sampled_loss, train
from theory import Grid, Setup, metrics, minimize_loss, phase_diagram
from theory.candidates import catalogue
from theory.composite import ignore_loss
from theory.diagram import SEARCH_REPRESENTED
from theory.montecarlo import monte_carlo_loss
from theory.storage import save_dataset
from theory.tail_offset import minimize_tail_offset

VARIANTS = ("as it is", "unrepresented inputs at their mean", "that offset not dropped")
#: theory.tail_offset's structure, each name with its equal_tail: the features past the head along one
#: direction with a norm each, or with one norm for all.
STRUCTURES = {"head + one tail direction": False, "head + one tail direction, one norm": True}


@dataclass(frozen=True)
class VariantLosses:
    """The loss of one model scored three ways (VARIANTS) on the same samples, with standard errors."""

    mean: np.ndarray  # (3,)
    stderr: np.ndarray  # (3,)
    n_samples: int


def variant_losses(
    setup: Setup, W, b, unrepresented, n_samples: int, seed: int, chunk: int = 200_000
) -> VariantLosses:
    """The loss of (W, b) at setup on n_samples samples (one stream for all three), with the inputs of
    the features `unrepresented` (a boolean mask) as drawn, replaced by their mean density / 2 (an
    offset of the hidden layer that the dropout mask multiplies), and that offset added after the
    mask."""
    W, b = setup.check_parameters(W, b)
    rest = np.asarray(unrepresented, dtype=bool)
    rng = np.random.default_rng(seed)
    density, importance, keep = setup.density, setup.importance_array, 1.0 - setup.p
    offset = metrics.mean_offset(W, density, rest)
    sums, squares, done = np.zeros(3), np.zeros(3), 0
    while done < n_samples:
        size = min(chunk, n_samples - done)
        x = rng.random((size, setup.n_features)) * (rng.random((size, setup.n_features)) < density)
        mask = (rng.random((size, setup.n_groups)) < keep)[:, setup.unit_groups] / keep
        signal = x[:, ~rest] @ W[:, ~rest].T
        hidden = (
            mask * (signal + x[:, rest] @ W[:, rest].T),
            mask * (signal + offset),
            mask * signal + offset,
        )
        for v, h in enumerate(hidden):
            loss = (importance * (x - np.maximum(h @ W + b, 0.0)) ** 2).sum(1)
            sums[v] += loss.sum()
            squares[v] += (loss**2).sum()
        done += size
    mean = sums / n_samples
    stderr = np.sqrt(np.maximum(squares / n_samples - mean**2, 0.0) / (n_samples - 1))
    return VariantLosses(mean, stderr, n_samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decay", type=float, default=0.7, help="importance decay**i [default: 0.7]")
    parser.add_argument("--p", type=float, default=0.15, help="dropout rate [default: 0.15]")
    parser.add_argument(
        "--density",
        type=float,
        nargs="+",
        default=[0.36840315],
        help="one cell per density [default: the TMS schedule's 0.368]",
    )
    parser.add_argument("--seeds", type=int, default=12, help="models trained [default: 12]")
    parser.add_argument(
        "--steps", type=int, default=10_000, help="training steps [default: 10000, the study's]"
    )
    parser.add_argument(
        "--head", type=int, default=6, help="features fitted free on the exact loss [default: 6]"
    )
    parser.add_argument("--samples", type=int, default=2_000_000, help="samples of each score [default: 2e6]")
    parser.add_argument(
        "--tail-starts",
        type=int,
        default=4,
        help="random starts of the head + one tail direction structure [default: 4]",
    )
    parser.add_argument("--out", default="runs/hidden_offset.nc")
    args = parser.parse_args()
    cells = [at_density(args, density) for density in args.density]
    ds = xr.concat(cells, dim="density", data_vars="all", coords="minimal", compat="override")
    ds = ds.assign_coords(density=args.density)
    ds.attrs.update(
        config=json.dumps(vars(args)),
        command="python scripts/hidden_offset.py",
        p=args.p,
        decay=args.decay,
        head=args.head,
    )
    save_dataset(ds, Path(args.out))
    print(f"wrote {args.out}")


def at_density(args, density: float) -> xr.Dataset:
    """The script's numbers at one cell (module docstring), printed and as a Dataset."""
    n, m = 20, 5
    importance = args.decay ** np.arange(n)
    setup = Setup(n, m, sparsity=1 - density, importance=importance, p=args.p)
    print(f"== importance {args.decay}**i, p = {args.p}, density {density:.4g}")

    print(f"   training {args.seeds} models, {args.steps} steps")
    trained = train([setup] * args.seeds, steps=args.steps, seed=0)
    scores = sampled_loss([setup] * args.seeds, trained.W, trained.b, n_samples=args.samples, seed=1)
    best = int(np.argmin(scores.mean))

    print("   theory at the cell: the composite family, its search over all of W and b, the free head")
    grid = Grid(n_features=n, n_hidden=m, sparsity=[1 - density], p=[args.p], importance=tuple(importance))
    theory = phase_diagram(grid, catalogue(n, m), search=True, progress=False)
    cell = {d: 0 for d in theory.optimal_loss.dims}
    family_loss = float(theory.family_loss[cell])
    k = args.head
    head = Setup(k, m, sparsity=1 - density, importance=importance[:k], p=args.p)
    tail = float((importance[k:] * ignore_loss(np.full(n - k, density))).sum())
    free_loss = minimize_loss(head, n_starts=8).loss + tail

    print(f"   the structure: {k} free columns and the rest along one direction, from random starts")
    structures = {
        name: minimize_tail_offset(setup, k, random_starts=args.tail_starts, equal_tail=equal, seed=4)
        for name, equal in STRUCTURES.items()
    }
    models = {
        "best trained": (trained.W[best], trained.b[best]),
        "theory's search": (
            theory.search_W[cell].transpose("hidden", "feature").values,
            theory.search_b[cell].values,
        ),
    } | {name: (fit.W, fit.b) for name, fit in structures.items()}
    looks = {
        name: metrics.hidden_offset(W, setup.density, SEARCH_REPRESENTED) for name, (W, _) in models.items()
    }
    scored = {}
    for name, (W, b) in models.items():
        scored[name] = variant_losses(setup, W, b, looks[name].unrepresented, args.samples, seed=2)
        check = monte_carlo_loss(setup, W, b, n_samples=args.samples, seed=3)
        if abs(check.mean - scored[name].mean[0]) > 4 * np.hypot(check.stderr, scored[name].stderr[0]):
            raise SystemExit(
                f"the scorer disagrees with theory.monte_carlo_loss on the {name} model: "
                f"{scored[name].mean[0]} vs {check.mean} +- {check.stderr}"
            )

    names = list(models)
    ds = xr.Dataset(
        {
            "variant_loss": (
                ("model", "variant"),
                np.stack([scored[x].mean for x in names]),
                {"description": "each model scored three ways on one stream"},
            ),
            "variant_stderr": (("model", "variant"), np.stack([scored[x].stderr for x in names])),
            "trained_loss": ((), float(scores.mean[best]), {"description": "best seed, fresh samples"}),
            "family_loss": ((), family_loss, {"description": "composite family's optimum (exact)"}),
            "family_composite": ((), str(theory.composite[cell].values)),
            "search_loss": ((), float(theory.search_loss[cell]), {"description": "its own Monte Carlo"}),
            "structure_loss": (
                "structure",
                [fit.monte_carlo for fit in structures.values()],
                {"description": "theory.tail_offset's fit from random starts: its own Monte Carlo"},
            ),
            "structure_stderr": ("structure", [fit.monte_carlo_stderr for fit in structures.values()]),
            "free_head_loss": (
                (),
                free_loss,
                {"description": f"{k} features free on the exact loss, rest ignored"},
            ),
            "represented": ("model", [int((~looks[x].unrepresented).sum()) for x in names]),
            "unrepresented_norm": (
                ("model", "feature"),
                np.stack([np.where(looks[x].unrepresented, looks[x].norms, np.nan) for x in names]),
            ),
            "unrepresented_mean_cosine": ("model", [looks[x].tail_cosine for x in names]),
            "offset_norm": ("model", [looks[x].offset_norm for x in names]),
            "centred_fraction": (
                ("model", "feature"),
                np.stack([looks[x].centred for x in names]),
                {
                    "description": "represented features: the fraction of the mean input density / 2 that "
                    "the offset removes before the mask, -w_i . c / |w_i|^2 / (density / 2) (NaN: not "
                    "represented)"
                },
            ),
            "bias_over_mean": (
                ("model", "feature"),
                np.stack([models[x][1] / (density / 2) for x in names]),
                {"description": "b_i over the mean input density / 2"},
            ),
            "W": (("model", "hidden", "feature"), np.stack([models[x][0] for x in names])),
            "b": (("model", "feature"), np.stack([models[x][1] for x in names])),
        },
        coords={
            "model": names,
            "variant": list(VARIANTS),
            "structure": list(STRUCTURES),
            "feature": np.arange(n),
            "hidden": np.arange(m),
        },
    )
    trained_loss = float(scores.mean[best])
    print(
        f"best of {args.seeds} trained: {trained_loss:.5f}; family ({ds.family_composite.item()}): "
        f"{family_loss:.5f} (trained / family {trained_loss / family_loss:.4f}); theory's search: "
        f"{float(ds.search_loss):.5f}; {k} features free on the exact loss, the rest ignored: "
        f"{free_loss:.5f} "
        f"(trained / that {trained_loss / free_loss:.4f})"
    )
    for name, fit in structures.items():
        print(
            f"{name} ({k} free): {fit.monte_carlo:.5f} +- {fit.monte_carlo_stderr:.5f} (over the "
            f"search's {fit.monte_carlo / float(ds.search_loss):.4f}, over trained "
            f"{fit.monte_carlo / trained_loss:.4f})"
        )
    for name in names:
        look = looks[name]
        rest, kept = look.unrepresented, ~look.unrepresented
        print(
            f"{name}: {int(kept.sum())} features represented; the other {int(rest.sum())}: "
            f"norms {np.round(look.norms[rest], 3)}, mean pairwise cosine {look.tail_cosine:.3f}; "
            f"their mean input makes a hidden offset of norm {look.offset_norm:.3f}; it removes "
            f"{np.round(look.centred[kept], 2)} of the represented features' mean inputs before the "
            f"mask, and their biases are {np.round(models[name][1][kept] / (density / 2), 2)} of it"
        )
        for variant, value, error in zip(VARIANTS, scored[name].mean, scored[name].stderr, strict=True):
            print(
                f"  {variant:36s} {value:.5f} +- {error:.5f}  ({value / scored[name].mean[0]:.4f} of as is)"
            )
    return ds


if __name__ == "__main__":
    main()
