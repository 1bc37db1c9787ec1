"""Helpers the paper's `num(...)` expressions may call, beside `ds`, `np` and `xr`: each reduces a
Dataset to the quantities a sentence quotes, through the layers' own summaries."""

from __future__ import annotations

import numpy as np
import xarray as xr

from compare.phases import summary
from theory import metrics
from theory.phase_plots import published_boundary


def comparison(ds: xr.Dataset, p: float) -> dict:
    """compare.phases.summary's row at p (agreement over all cells and away from boundaries, single-run
    misses, loss gaps) for a comparison Dataset."""
    rows = [row for row in summary(ds) if abs(row["p"] - p) < 1e-12]
    if not rows:
        raise KeyError(f"no p = {p} in the comparison (it has {[float(v) for v in ds.p.values]})")
    return rows[0]


def best_seed_share(ds: xr.Dataset, prefix: str, p=None, max_density: float = 1.0) -> float:
    """Share of a comparison's cells (at p, or every p > 0 when p is None; density <= max_density) whose
    lowest-loss seed is classified as a geometry whose name starts with `prefix`."""
    cells = ds.sel(p=p) if p is not None else ds.where(ds.p > 0, drop=True)
    cells = cells.where(cells.density <= max_density, drop=True)
    labels = np.array([str(v) for v in ds.label.values])
    phases = cells.empirical_phase.values.ravel()
    phases = phases[~np.isnan(phases.astype(float))].astype(int)
    return float(np.mean([labels[k].startswith(prefix) for k in phases]))


def feature_norms(ds: xr.Dataset) -> xr.DataArray:
    """||W_i|| (theory.metrics.feature_norms) over the Dataset's dims, for W over (..., hidden, feature)."""
    return xr.apply_ufunc(
        metrics.feature_norms, ds.W, input_core_dims=[["hidden", "feature"]], output_core_dims=[["feature"]]
    )


def largest_jump(ds: xr.Dataset, p: float) -> float:
    """The largest change of the optimum between neighbouring densities at p, over the other axes:
    sqrt(||G' - G||_F^2 + ||b' - b||^2) with G = W^T W (blind to the signs and rotations that leave the
    loss unchanged). A geometry that switches jumps by order one; one that deforms moves by order the
    grid's spacing."""
    cell = ds.sel(p=p).sortby("density")
    W = cell.W.transpose(..., "sparsity", "hidden", "feature").values
    b = cell.b.transpose(..., "sparsity", "feature").values
    G = metrics.gram(W)
    dG = np.diff(G, axis=-3)
    db = np.diff(b, axis=-2)
    jumps = np.sqrt((dG**2).sum(axis=(-1, -2)) + (db**2).sum(axis=-1))
    return float(np.nanmax(jumps))


HELPERS = {
    "best_seed_share": best_seed_share,
    "largest_jump": largest_jump,
    "comparison": comparison,
    "feature_norms": feature_norms,
    "published_boundary": published_boundary,
}
