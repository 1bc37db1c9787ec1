"""Helpers the paper's `num(...)` expressions may call, beside `ds`, `np` and `xr`: each reduces a
Dataset to the quantities a sentence quotes, through the layers' own summaries."""

from __future__ import annotations

import re

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


def in_phase(ds: xr.Dataset, prefix: str) -> xr.DataArray:
    """A phase diagram's cells whose optimal geometry's name starts with `prefix` (True there)."""
    names = np.array([str(name).startswith(prefix) for name in ds.geometry.values])
    return xr.DataArray(names[ds.phase.values], coords=ds.phase.coords, dims=ds.phase.dims)


#: A pair on one neuron in a composite's description: "antipodal 1 8" or "same-sign 3 4".
_PAIR = re.compile(r"(?:^|, )(?:antipodal|same-sign) (\d+) (\d+)(?=,|$)")


def apart_pairs(ds: xr.Dataset) -> xr.DataArray:
    """Per cell of a composite phase diagram, the pairs on one neuron (antipodal or same-sign) of the
    family's best composite (ds.composite) whose two features are not next to each other in importance
    (nested pairs: 1 with 8, 2 with 7, ...)."""

    def count(text) -> int:
        return sum(int(b) - int(a) > 1 for a, b in _PAIR.findall(str(text)))

    return xr.apply_ufunc(np.vectorize(count, otypes=[int]), ds.composite)


def phase_share(ds: xr.Dataset, p: float, prefix: str) -> float:
    """Share of a phase diagram's cells at p whose optimal geometry's name starts with `prefix`."""
    return float(in_phase(ds, prefix).sel(p=p).mean())


def worst_checked_cell(ds: xr.Dataset) -> xr.Dataset:
    """A phase diagram at the cell where its optimum is furthest above the least exact loss found over
    all of W and b (`completeness`: exact_minimum, exact_W, exact_b)."""
    excess = (ds.optimal_loss / ds.exact_minimum - 1).fillna(-np.inf)
    where = np.unravel_index(int(np.argmax(excess.values)), excess.shape)
    return ds.isel(dict(zip(excess.dims, where, strict=True)))


def plane_gaps(ds: xr.Dataset | xr.DataArray) -> xr.DataArray:
    """For models in a plane (two hidden units; a Dataset's W, or W itself): the angles in degrees
    between neighbouring feature directions going round the circle, smallest first, over a new dim `gap`
    (one per feature; they sum to 360). A regular polygon has equal gaps; an antipodal pair a gap of
    180; parallel features 0. A column of zeros (an ignored feature) counts as the direction 0."""

    def gaps(W):
        if W.shape[-2] != 2:
            raise ValueError(f"plane_gaps needs two hidden units, got {W.shape[-2]}")
        turn = np.sort(np.degrees(np.arctan2(W[..., 1, :], W[..., 0, :])) % 360, axis=-1)
        around = np.concatenate([turn, turn[..., :1] + 360], axis=-1)
        return np.sort(np.diff(around, axis=-1), axis=-1)

    W = ds.W if isinstance(ds, xr.Dataset) else ds
    return xr.apply_ufunc(gaps, W, input_core_dims=[["hidden", "feature"]], output_core_dims=[["gap"]])


def factor_names(W: xr.DataArray) -> xr.DataArray:
    """Each model's tegum factors (theory.metrics.tegum_factors) by kind, joined by " + " ("5-demicube",
    "antipodal pair + pentagon", ...), over W's dims but hidden and feature."""

    def names(w):
        return " + ".join(factor.kind for factor in metrics.tegum_factors(w))

    return xr.apply_ufunc(
        names, W, input_core_dims=[["hidden", "feature"]], vectorize=True, output_dtypes=[object]
    ).astype(str)


def neurons_per_feature(W: xr.DataArray) -> xr.DataArray:
    """theory.metrics.neurons_per_feature over W's dims but hidden: each column's participation ratio of
    its squared entries (1 on one neuron, m spread evenly over all)."""
    return xr.apply_ufunc(
        metrics.neurons_per_feature,
        W,
        input_core_dims=[["hidden", "feature"]],
        output_core_dims=[["feature"]],
    )


def sampled_bound(ds: xr.Dataset, name: str, side: str) -> xr.DataArray:
    """A composite diagram's candidate `name` (a block fitted on the sampled loss on the first features,
    importance 1 there, the rest ignored) with its block's Monte Carlo score replaced by the block's
    rigorous bound, side 'lower' or 'upper' (NaN where it has none)."""
    return (
        ds.loss.sel(geometry=name) - ds.block_loss.sel(shape=name) + ds[f"block_loss_{side}"].sel(shape=name)
    )


HELPERS = {
    "apart_pairs": apart_pairs,
    "best_seed_share": best_seed_share,
    "largest_jump": largest_jump,
    "comparison": comparison,
    "factor_names": factor_names,
    "feature_norms": feature_norms,
    "in_phase": in_phase,
    "neurons_per_feature": neurons_per_feature,
    "phase_share": phase_share,
    "plane_gaps": plane_gaps,
    "sampled_bound": sampled_bound,
    "worst_checked_cell": worst_checked_cell,
    "published_boundary": published_boundary,
}
