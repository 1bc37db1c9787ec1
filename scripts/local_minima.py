"""How often single training runs of 2 features in 1 dim miss the global optimum.

    python scripts/local_minima.py [--seeds 20] [--steps 10000]

For each (density, relative importance r, p) point, trains --seeds
independently initialised instances with sim.train (the notebook's defaults),
finds the global minimum of the exact loss with theory.minimize_loss, and
prints the fraction of single runs whose exact loss is more than 2% above it,
and how many of those ended with both weights of one sign.
"""

from __future__ import annotations

import argparse

import numpy as np

from sim import train
from theory import Setup, minimize_loss

DENSITIES = [0.02, 0.1, 0.3, 0.6]
RATIOS = [0.5, 1.0]
PS = [0.0, 0.15, 0.4]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10_000)
    args = parser.parse_args()
    points = [(d, r, p) for p in PS for r in RATIOS for d in DENSITIES]
    setups = [
        Setup(2, 1, sparsity=1 - d, importance=[1.0, r], p=p) for d, r, p in points for _ in range(args.seeds)
    ]
    result = train(setups, steps=args.steps, seed=0)
    trained = result.expected_losses().lower.reshape(len(points), args.seeds)
    W = result.W.reshape(len(points), args.seeds, 2)
    print(f"{'density':>8} {'r':>5} {'p':>5} {'optimum':>10} {'geometry':>10} {'missed':>7} {'one-sign':>9}")
    missed_by_p = {p: [] for p in PS}
    for k, (d, r, p) in enumerate(points):
        best = minimize_loss(Setup(2, 1, sparsity=1 - d, importance=[1.0, r], p=p), n_starts=16)
        w = best.W[0]
        geometry = (
            "antipodal"
            if w[0] * w[1] < -0.01 and min(abs(w)) > 0.05
            else "one kept"
            if max(abs(w)) > 0.05
            else "none"
        )
        missed = trained[k] > 1.02 * best.loss
        one_sign = missed & (W[k, :, 0] * W[k, :, 1] > 0)
        missed_by_p[p].append(missed.mean())
        print(
            f"{d:8.2f} {r:5.2f} {p:5.2f} {best.loss:10.6f} {geometry:>10} {missed.mean():7.0%} "
            f"{one_sign.sum():4d}/{missed.sum():<4d}"
        )
    for p in PS:
        print(
            f"p = {p}: single runs missing the optimum by > 2%, averaged over points: "
            f"{np.mean(missed_by_p[p]):.0%}"
        )


if __name__ == "__main__":
    main()
