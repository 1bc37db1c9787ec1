"""Does a trained 20-in-5 optimum gain from how it sits in the neuron basis? Exact losses, cell by cell.

    python scripts/neuron_rotation.py [--runs runs/twenty_in_five/runs_10000.nc]
                                      [--cells 0.4,0.9,0.05 0.4,1,0.264 ...] [--out FILE.md]

For each cell (p, importance decay, density) of the runs that
scripts/twenty_in_five.py trains, the best seed's model (least sampled
loss) is cut to its represented features (||W_i|| > 0.5; the others
ignored, each at its own best bias: theory.composite.ignore_loss) and
scored on the exact loss (theory.compiled_loss), then:

- polished: minimised on the exact loss from there (all of W and b of the
  represented features free);
- aligned: the polished model rotated in the hidden space so that each of
  its tegum factors (theory.metrics.tegum_factors) lies on its own neurons
  (a factor of d dims on d neurons; the rotation is the orthogonal matrix
  nearest to the factors' bases side by side), scored as it is and
  polished from there.

Without dropout the loss does not change under any rotation of the hidden
space; under dropout it does. aligned / polished above 1 is what the
spread over neurons is worth; a cell whose factor spans all m dimensions
cannot be aligned and says so. A model with 10 represented features takes
about 3 minutes a polish on 2 cores (5 features: seconds).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from sim.results import load
from theory import Setup, metrics
from theory.compiled_loss import expected_loss_compiled
from theory.composite import ignore_loss
from theory.optimize import minimize_from
from theory.storage import save_text

REPRESENTED = 0.5
DEFAULT_CELLS = ("0.4,0.9,0.05", "0.4,0.9,0.264", "0.4,1,0.264", "0.15,0.9,0.264", "0.4,0.7,0.264")


def aligning_rotation(W: np.ndarray, factors) -> np.ndarray | None:
    """The orthogonal Q (m, m) nearest to the factors' orthonormal bases side by side, so that Q^T W puts
    each factor on its own neurons; None when the factors span fewer than m dims together with a single
    factor spanning all of them (nothing to align)."""
    m = W.shape[0]
    if len(factors) == 1 and factors[0].dims == m:
        return None
    bases = [np.linalg.svd(W[:, list(f.features)], full_matrices=False)[0][:, : f.dims] for f in factors]
    Q = np.concatenate(bases, axis=1)
    if Q.shape[1] < m:  # unused dimensions: complete the basis
        rest = np.linalg.svd(np.eye(m) - Q @ Q.T)[0][:, : m - Q.shape[1]]
        Q = np.concatenate([Q, rest], axis=1)
    if Q.shape[1] > m:
        return None
    U, _, Vt = np.linalg.svd(Q)
    return U @ Vt


def cell_report(runs, p: float, decay: float, density: float) -> str:
    cell = runs.sel(p=p, importance_decay=decay).sel(sparsity=1 - density, method="nearest")
    density = float(cell.density)
    best = int(cell.sampled_loss.fillna(np.inf).argmin("seed"))
    W = cell.W.isel(seed=best).transpose("hidden", "feature").values.astype(float)
    b = cell.b.isel(seed=best).values.astype(float)
    m, n = W.shape
    importance = np.asarray(cell.importance.values, dtype=float)
    shown = np.flatnonzero(metrics.feature_norms(W) > REPRESENTED)
    rest = np.setdiff1d(np.arange(n), shown)
    tail = float((importance[rest] * ignore_loss(np.full(len(rest), density))).sum())
    setup = Setup(len(shown), m, sparsity=1 - density, importance=importance[shown], p=p)

    def exact(W_, b_):
        return float(expected_loss_compiled(setup, W_, b_)) + tail

    cut = exact(W[:, shown], b[shown])
    polished = minimize_from(setup, W[None, :, shown], b[None, shown])
    factors = metrics.tegum_factors(polished.W, REPRESENTED)
    Q = aligning_rotation(polished.W, factors)
    row = (
        f"| {p:g} | {decay:g} | {density:.3g} | {float(cell.sampled_loss[best]):.5f} | {cut:.5f} "
        f"| {polished.loss + tail:.5f} | {'; '.join(map(str, factors))} "
    )
    if Q is None:
        return row + "| one factor spans all neurons: nothing to align | | |"
    aligned_W = Q.T @ polished.W
    aligned = exact(aligned_W, polished.b)
    again = minimize_from(setup, aligned_W[None], polished.b[None])
    spread = "; ".join(f"{f.neurons:.1f}" for f in metrics.tegum_factors(again.W, REPRESENTED))
    return row + (
        f"| {aligned:.5f} ({aligned / (polished.loss + tail):.4f}) | {again.loss + tail:.5f} | {spread} |"
    )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", default="runs/twenty_in_five/runs_10000.nc")
    parser.add_argument("--cells", nargs="+", default=list(DEFAULT_CELLS), metavar="P,DECAY,DENSITY")
    parser.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = parser.parse_args()
    runs = load(Path(args.runs))
    lines = [
        "| p | importance decay | density | trained (sampled) | represented only (exact) | polished "
        "(exact) | polished's factors | aligned onto neurons (/ polished) | aligned, polished | its "
        "factors' neurons |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for text in args.cells:
        p, decay, density = (float(x) for x in text.split(","))
        lines.append(cell_report(runs, p, decay, density))
        print(lines[-1], flush=True)
    if args.out:
        save_text("\n".join(lines) + "\n", Path(args.out))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
