"""Theory's optimum against models trained by an independent loop and scored by an independent Monte Carlo.

    tms-dropout theory phase-diagram CONFIG --out THEORY.nc
    python scripts/independent_check.py CONFIG --theory THEORY.nc --out DIR
                                        [--seeds S] [--steps N] [--samples N] [--seed 0]
                                        [--tolerance 0.01] [--exit-zero] [--no-search] [--device cuda]

The phase diagram writes the optimum's W and b at every cell of CONFIG's grid.
Without --theory the script computes it first, as `tms-dropout theory
phase-diagram CONFIG` does with its defaults (--no-search: as it does with
--no-search), into DIR/theory.nc (and its figure, DIR/theory.png).
This trains every cell S times (default: as many as CONFIG's seeds) for N steps
(default: CONFIG's) with the published TMS notebook's loop (sim.published:
autograd, AdamW at CONFIG's learning rate and batch, xavier_normal_, F.dropout
on the hidden layer; none of sim's trainers, all of a p's cells as instances
of one model; on --device, the CPU by default: on a GPU many seeds per cell
cost little), then scores every trained model and theory's optimum with
theory.montecarlo (numpy; it shares no code with the exact loss, the sampled
loss or the trainers) on the same fresh samples per cell, picks the best
trained model on them, and scores it and theory's optimum again on samples
of their own: the least of many noisy scores is biased low (with 100 seeds
at a sparse cell, by a few standard errors), the second score is not, and
on shared samples their difference has a standard error far below either
loss's.

Per cell: theory's loss over the best trained model's on the second samples
(`ratio`; above 1 where training found a lower loss) and its standard
error. The check: theory's
optimum at most --tolerance (default 1%) above the best trained model at every
cell. Writes DIR/independent.nc (the losses, ratios, trained W and b, with the
config and the command's settings, `passed` among its attributes) and
DIR/independent.md (a row per cell and the verdict), prints the table, and
exits 1 where a cell fails the check (0 with --exit-zero, for a caller that
reads the verdict from the Dataset).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from sim.config import TrainConfig
from sim.published import ReferenceModel, reference_optimize
from sim.trainer import resolve_device
from theory import diagram_runs
from theory.diagram import grid_of
from theory.errors import InputError
from theory.montecarlo import monte_carlo_losses
from theory.progress import Progress
from theory.storage import save_dataset, save_text


def train_published(
    config: TrainConfig, seeds: int, steps: int, seed: int = 0, progress=None, device: str = "cpu"
):
    """W (grid dims..., seed, m, n) and b (grid dims..., seed, n) of models trained by the published
    loop on `device`: per p, one model whose instances are every cell of that p times `seeds` (torch
    seeded with seed + the p's index; the initial W is drawn on the CPU, the same on every device)."""
    grid = config.grid
    if grid.dropout_groups is not None:
        raise InputError("the published loop drops every unit on its own; CONFIG has dropout_groups")
    setups = grid.setups()  # (p, importance values, sparsity), one importance value without an axis
    P, A, D = setups.shape
    m, n = grid.n_hidden, grid.n_features
    W = np.empty((P, A, D, seeds, m, n))
    b = np.empty((P, A, D, seeds, n))
    with Progress.of(progress, P * steps, "published loop", "step") as bar:
        for k in range(P):
            cells = setups[k].ravel()
            density = np.repeat([s.density for s in cells], seeds, axis=0)
            importance = np.repeat([s.importance_array for s in cells], seeds, axis=0)
            torch.manual_seed(seed + k)
            model = ReferenceModel(
                len(density),
                n,
                m,
                torch.tensor(density, dtype=torch.float32, device=device),
                torch.tensor(importance, dtype=torch.float32, device=device),
                float(grid.p[k]),
            )
            reference_optimize(model.to(device), config.batch, steps, config.lr, on_step=bar.update)
            trained = model.W.detach().double().cpu().numpy().transpose(0, 2, 1)  # (instances, m, n)
            W[k] = trained.reshape(A, D, seeds, m, n)
            b[k] = model.b_final.detach().double().cpu().numpy().reshape(A, D, seeds, n)
    return W.reshape(grid.shape + (seeds, m, n)), b.reshape(grid.shape + (seeds, n))


def check_grid(grid, theory: xr.Dataset) -> None:
    """An InputError unless theory is a phase diagram of grid's cells (the grid it records, model and
    importance included, and its shape)."""
    if grid_of(theory) != grid or theory.optimal_loss.shape != grid.shape:
        wanted = dict(zip(grid.dims, grid.shape, strict=True))
        raise InputError(
            f"THEORY's grid {dict(theory.optimal_loss.sizes)} is not CONFIG's {wanted} (or its model or "
            "importance differ): write it with `tms-dropout theory phase-diagram CONFIG`"
        )


def score(config: TrainConfig, theory: xr.Dataset, W, b, samples: int, progress=None) -> xr.Dataset:
    """Every trained model scored on the same samples per cell (seed: the cell's flat index), the best
    chosen on them, then it and theory's optimum scored again on samples of their own (seed: the grid's
    size plus the cell's flat index); the Dataset of the module docstring."""
    grid = config.grid
    dims = grid.dims
    check_grid(grid, theory)
    theory_W = theory.W.transpose(*dims, "hidden", "feature").values
    theory_b = theory.b.transpose(*dims, "feature").values
    setups = grid.setups().reshape(grid.shape)
    S = W.shape[len(dims)]
    mean, stderr = np.empty(grid.shape + (S,)), np.empty(grid.shape + (S,))
    again, again_stderr = np.empty(grid.shape + (2,)), np.empty(grid.shape + (2,))  # theory, best
    gap_stderr = np.empty(grid.shape)
    best = np.empty(grid.shape, dtype=int)
    with Progress.of(progress, setups.size, "Monte Carlo", "cell") as bar:
        for flat, cell in enumerate(np.ndindex(*grid.shape)):
            found = monte_carlo_losses(setups[cell], W[cell], b[cell], n_samples=samples, seed=flat)
            mean[cell], stderr[cell] = found.mean, found.stderr
            best[cell] = int(np.argmin(found.mean))
            pair_W = np.stack([theory_W[cell], W[cell][best[cell]]])
            pair_b = np.stack([theory_b[cell], b[cell][best[cell]]])
            fresh = monte_carlo_losses(
                setups[cell], pair_W, pair_b, n_samples=samples, seed=setups.size + flat
            )
            again[cell], again_stderr[cell] = fresh.mean, fresh.stderr
            gap_stderr[cell] = fresh.difference_stderr(0, 1)
            bar.update()
    coords = grid.coords()
    return xr.Dataset(
        {
            "theory_loss": (
                dims,
                again[..., 0],
                {"description": "theory's optimum, by Monte Carlo on the second samples"},
            ),
            "theory_stderr": (dims, again_stderr[..., 0]),
            "trained_loss": (
                dims + ("seed",),
                mean,
                {"description": "each model of the published loop, by Monte Carlo on the first samples"},
            ),
            "trained_stderr": (dims + ("seed",), stderr),
            "best_seed": (dims, best, {"description": "the seed of least trained_loss"}),
            "best_loss": (
                dims,
                again[..., 1],
                {"description": "the best seed's loss on the second samples (not chosen on them: unbiased)"},
            ),
            "best_stderr": (dims, again_stderr[..., 1]),
            "ratio": (
                dims,
                again[..., 0] / again[..., 1],
                {"description": "theory_loss / best_loss (above 1: training lower)"},
            ),
            "ratio_stderr": (
                dims,
                gap_stderr / again[..., 1],
                {"description": "its standard error (the difference's, on shared samples)"},
            ),
            "importance": (
                dims + ("feature",),
                np.array([s.importance_array for s in setups.ravel()]).reshape(grid.shape + (-1,)),
            ),
            "trained_W": (dims + ("seed", "hidden", "feature"), W),
            "trained_b": (dims + ("seed", "feature"), b),
        },
        coords={**coords, "seed": np.arange(S)},
    )


def table(ds: xr.Dataset, tolerance: float) -> str:
    """A row per cell (theory, best trained, ratio +- se) and the verdict."""
    dims = list(ds.ratio.dims)
    lines = [
        f"| {' | '.join(d for d in dims if d != 'sparsity')} | density | theory | best trained | "
        "theory / best trained (se) |",
        "|" + "---|" * (len(dims) + 3),
    ]
    for cell in ds.stack(cell=dims).transpose("cell", ...).cell.values:
        c = ds.sel(dict(zip(dims, cell, strict=True)))
        label = " | ".join(f"{float(c[d]):g}" for d in dims if d != "sparsity")
        best = float(c.best_loss)
        flag = " **above**" if float(c.ratio) > 1 + tolerance else ""
        lines.append(
            f"| {label} | {float(c.density):.3g} | {float(c.theory_loss):.5f} | {best:.5f} | "
            f"{float(c.ratio):.4f} ({float(c.ratio_stderr):.4f}){flag} |"
        )
    worst = ds.ratio.argmax(...)
    cell = {d: float(ds[d].isel(**{d: int(i)})) for d, i in worst.items() if d != "sparsity"}
    cell["density"] = float(ds.density.isel(sparsity=int(worst["sparsity"])))
    above = int((ds.ratio > 1 + tolerance).sum())
    lines += [
        "",
        f"- theory / best trained: {float(ds.ratio.min()):.4f} to {float(ds.ratio.max()):.4f} "
        f"(the greatest at {', '.join(f'{d} = {v:g}' for d, v in cell.items())}); "
        f"{int((ds.ratio > 1).sum())} of {ds.ratio.size} cells above 1, "
        f"{int((ds.ratio > 1 + 2 * ds.ratio_stderr).sum())} by more than 2 se",
        f"- the check (theory at most {tolerance:.1%} above the best trained model): "
        + ("holds at every cell" if not above else f"fails at {above} of {ds.ratio.size} cells"),
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="the sweep config (its [model], [grid] and [train])")
    parser.add_argument(
        "--theory",
        type=Path,
        default=None,
        help="the phase diagram of CONFIG (netCDF) [default: computed into DIR/theory.nc]",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for independent.nc and .md")
    parser.add_argument("--seeds", type=int, default=None, help="models per cell (default: CONFIG's seeds)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: CONFIG's)")
    parser.add_argument("--samples", type=int, default=1_000_000, help="Monte Carlo samples per cell")
    parser.add_argument("--seed", type=int, default=0, help="torch's seed for the first p (then + 1 each)")
    parser.add_argument("--device", default="cpu", help="the training loop's device: cpu, cuda, auto")
    parser.add_argument("--tolerance", type=float, default=0.01, help="the check's allowance (0.01: 1%%)")
    parser.add_argument(
        "--exit-zero",
        action="store_true",
        help="exit 0 where the check fails (the verdict is in the Dataset)",
    )
    parser.add_argument(
        "--search",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="without --theory: the phase diagram's search over all of W, b [default: the command's]",
    )
    args = parser.parse_args(argv)
    try:
        config = TrainConfig.from_toml(args.config)
        seeds = len(config.seeds) if args.seeds is None else args.seeds
        steps = config.steps if args.steps is None else args.steps
        for name, value in (("--seeds", seeds), ("--steps", steps), ("--samples", args.samples - 1)):
            if value < 1:
                raise InputError(f"{name} must be at least {1 if name != '--samples' else 2}")
        if not args.tolerance >= 0:
            raise InputError(f"--tolerance = {args.tolerance} is not allowed; it must be >= 0 (0.01: 1%)")
        if args.theory is not None and not args.theory.is_file():
            raise InputError(
                f"--theory {args.theory}: no such file (write it with `tms-dropout theory phase-diagram`, "
                "or leave --theory out to compute it here)"
            )
        if args.theory is not None and args.search is not None:
            raise InputError(
                "--search and --no-search choose how the diagram is computed; with --theory it is not"
            )
        if args.theory is None:
            args.theory = args.out / "theory.nc"
            args.out.mkdir(parents=True, exist_ok=True)
            diagram_runs.run(config.grid, args.theory, None, search=args.search)
        theory = xr.load_dataset(args.theory)
        check_grid(config.grid, theory)
        device = resolve_device(args.device)
        W, b = train_published(config, seeds, steps, args.seed, progress=True, device=device)
        ds = score(config, theory, W, b, args.samples, progress=True)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    ds.attrs.update(
        config=json.dumps(config.to_dict()),
        theory=str(args.theory),
        seeds=seeds,
        steps=steps,
        samples=args.samples,
        seed=args.seed,
        device=device.type,
        tolerance=args.tolerance,
        trainer="sim.published (the TMS notebook's loop)",
        passed=int(not (ds.ratio > 1 + args.tolerance).any()),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    save_dataset(ds, args.out / "independent.nc")
    text = table(ds, args.tolerance)
    save_text(text + "\n", args.out / "independent.md")
    print(text)
    print(f"wrote {args.out / 'independent.nc'} and {args.out / 'independent.md'}")
    return 0 if args.exit_zero else 1 - ds.attrs["passed"]


if __name__ == "__main__":
    sys.exit(main())
