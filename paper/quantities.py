"""Helpers the paper's `num(...)` expressions may call, beside `ds`, `np` and `xr`: each reduces a
Dataset to the quantities a sentence quotes, through the layers' own summaries."""

from __future__ import annotations

import xarray as xr

from compare.phases import summary
from theory.phase_plots import published_boundary


def comparison(ds: xr.Dataset, p: float) -> dict:
    """compare.phases.summary's row at p (agreement over all cells and away from boundaries, single-run
    misses, loss gaps) for a comparison Dataset."""
    rows = [row for row in summary(ds) if abs(row["p"] - p) < 1e-12]
    if not rows:
        raise KeyError(f"no p = {p} in the comparison (it has {[float(v) for v in ds.p.values]})")
    return rows[0]


HELPERS = {"comparison": comparison, "published_boundary": published_boundary}
