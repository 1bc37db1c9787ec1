"""A phase diagram of a few cells, indexed by density (the grid's sparsity dim swapped for it)."""

import numpy as np

from theory import Grid, phase_diagram


def diagram(n, m, density, p, *, importance=None, r=(), candidates=None, progress=False, search=False):
    """theory.phase_diagram over densities (in this order), p and an importance profile or r axis: the
    candidates' diagram (search: phase_diagram's, off by default)."""
    grid = Grid(
        n,
        m,
        sparsity=tuple(1 - np.asarray(density, dtype=float)),
        p=tuple(p),
        importance=None if importance is None else tuple(importance),
        r=tuple(r),
    )
    return phase_diagram(grid, candidates, progress=progress, search=search).swap_dims(sparsity="density")
