"""Hold a phase diagram or comparison against one made by an earlier version of the code, cell by cell.

    python scripts/same_numbers.py OLD.nc NEW.nc [--rtol 1e-9]

Matches cells by their coordinates (p, importance value, density), whatever
the dims are called (density or sparsity) or ordered, and candidates by
name; prints how many cells have the same phase, the largest relative
difference of the optimal loss and of every candidate's loss, and each cell
whose phase differs with both candidates' losses there.
"""

from __future__ import annotations

import argparse

import numpy as np
import xarray as xr


def by_density(ds: xr.Dataset) -> xr.Dataset:
    """ds with dims p, [importance axis], density (sorted), so two versions line up."""
    if "sparsity" in ds.dims:
        ds = ds.swap_dims(sparsity="density")
    ds = ds.assign_coords(density=np.round(ds.density.values, 12))
    for axis in ("r", "importance_decay"):
        if axis in ds.dims:
            ds = ds.assign_coords({axis: np.round(ds[axis].values, 12)})
    order = [d for d in ("p", "r", "importance_decay", "density") if d in ds.dims]
    return ds.sortby("density").transpose(*order, ...)


def names(ds: xr.Dataset, variable: str) -> np.ndarray:
    labels = ds.geometry.values if "geometry" in ds.coords and variable == "phase" else ds.label.values
    return np.asarray(labels)[ds[variable].values]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rtol", type=float, default=1e-9)
    args = parser.parse_args()
    old, new = by_density(xr.load_dataset(args.old)), by_density(xr.load_dataset(args.new))
    old, new = xr.align(old, new, join="inner", exclude={"geometry", "label", "param", "vertex", "shape"})
    phase_var, loss_var = ("phase", "optimal_loss") if "phase" in old else ("analytic_phase", "analytic_loss")
    a, b = names(old, phase_var), names(new, phase_var)
    same = a == b
    print(f"{args.old} -> {args.new}: {same.size} common cells")
    print(f"  same phase: {int(same.sum())} of {same.size}")
    rel = np.abs(new[loss_var].values - old[loss_var].values) / np.abs(old[loss_var].values)
    print(
        f"  optimal loss: largest relative difference {np.nanmax(rel):.2e}; "
        f"cells above {args.rtol:g}: {int((rel > args.rtol).sum())}"
    )
    if "loss" in old and "geometry" in old.dims:
        for g in old.geometry.values:
            if g in new.geometry.values:
                x, y = old.loss.sel(geometry=g).values, new.loss.sel(geometry=g).values
                both = np.isfinite(x) & np.isfinite(y)
                r = np.abs(y[both] - x[both]) / np.maximum(np.abs(x[both]), 1e-300)
                worst = r.max() if r.size else 0.0
                flag = "" if worst <= args.rtol else "  <-- above rtol"
                print(f"  {g}: largest relative difference {worst:.2e}{flag}")
    for index in zip(*np.nonzero(~same), strict=True):
        where = {d: float(old[d].values[i]) for d, i in zip(old[phase_var].dims, index, strict=True)}
        print(
            f"  differs at {where}: {a[index]} -> {b[index]}, loss {float(old[loss_var].values[index]):.12g} "
            f"-> {float(new[loss_var].values[index]):.12g}"
        )


if __name__ == "__main__":
    main()
