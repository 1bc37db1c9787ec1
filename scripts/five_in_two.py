"""5 features in 2 dims (importance 0.9**i): the exact loss's global optimum per (sparsity, p).

    python scripts/five_in_two.py [--starts 24] [--p 0 0.15 0.4]

Independent of the geometry catalogue: theory.minimize_loss minimises the
exact expected loss over all of W and b from many random starts. For each
optimum it prints how many features are represented (norm > 0.1), their
angles from neuron 0's axis (neuron-aligned features sit at multiples of
90 degrees), the largest angle to the nearest axis, D* = m / ||W||_F^2,
and the biases.
"""

from __future__ import annotations

import argparse

import numpy as np

from theory import Setup, minimize_loss

SPARSITIES = [0.7, 0.9, 0.95, 0.98]
PS = [0.0, 0.15, 0.4]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--starts", type=int, default=24)
    parser.add_argument("--p", type=float, nargs="+", default=PS, help="dropout rates (default: %(default)s)")
    args = parser.parse_args()
    importance = 0.9 ** np.arange(5)
    print(
        f"{'p':>5} {'S':>5} {'loss':>10} {'kept':>4} {'angles (deg)':<32} {'off-axis':>8} {'D*':>6}  biases"
    )
    for p in args.p:
        for s in SPARSITIES:
            best = minimize_loss(Setup(5, 2, sparsity=s, importance=importance, p=p), n_starts=args.starts)
            norms = np.linalg.norm(best.W, axis=0)
            kept = norms > 0.1
            angles = np.degrees(np.arctan2(best.W[1], best.W[0])) % 360
            off_axis = np.abs(((angles[kept] + 45) % 90) - 45).max() if kept.any() else 0.0
            d_star = 2 / (best.W**2).sum()
            shown = " ".join(f"{a:5.0f}" for a in np.sort(angles[kept]))
            row = f"{p:5.2f} {s:5.2f} {best.loss:10.6f} {kept.sum():4d} {shown:<32} {off_axis:8.1f}"
            print(f"{row} {d_star:6.2f}  {np.round(best.b, 3)}")


if __name__ == "__main__":
    main()
