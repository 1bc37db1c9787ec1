"""5 features in 2 dims (importance 0.9**i): the exact loss's global optimum per (sparsity, p).

    python scripts/five_in_two.py [--starts 24] [--p 0 0.15 0.4]

Independent of the geometry catalogue: theory.minimize_loss minimises the
exact expected loss over all of W and b from many random starts. For each
optimum it prints how many features are represented (norm > 0.1), their
angles from neuron 0's axis (neuron-aligned features sit at multiples of
90 degrees), the largest angle to the nearest axis, D* = m / ||W||_F^2,
and the biases. Beside it, "pairs": the best loss of the two-antipodal-pairs
geometry (features 0-3 on the neuron axes, feature 4 ignored), a local
minimum of the exact loss from that start, and the global optimum's margin
over it (> 0: the global optimum is better).
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.optimize import minimize

from theory import Setup, expected_loss_and_grad, minimize_loss

SPARSITIES = [0.7, 0.9, 0.95, 0.98]
PS = [0.0, 0.15, 0.4]


def aligned_pairs_minimum(setup: Setup) -> tuple[float, np.ndarray]:
    """Local minimum of the exact loss from two antipodal pairs on the neuron axes, feature 4 at 0."""
    W0 = np.array([[0.9, -0.9, 0.0, 0.0, 0.0], [0.0, 0.0, 0.9, -0.9, 0.0]])
    b0 = np.zeros(5)

    def objective(flat):
        result = expected_loss_and_grad(setup, flat[:10].reshape(2, 5), flat[10:])
        return float(result.loss), np.concatenate([result.grad_W.ravel(), result.grad_b])

    opt = minimize(objective, np.concatenate([W0.ravel(), b0]), jac=True, method="L-BFGS-B", tol=1e-12)
    return float(opt.fun), opt.x[:10].reshape(2, 5)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--starts", type=int, default=24)
    parser.add_argument(
        "--sparsity", type=float, nargs="+", default=SPARSITIES, help="(default: %(default)s)"
    )
    parser.add_argument("--p", type=float, nargs="+", default=PS, help="dropout rates (default: %(default)s)")
    args = parser.parse_args()
    importance = 0.9 ** np.arange(5)
    print(
        f"{'p':>5} {'S':>5} {'loss':>10} {'kept':>4} {'angles (deg)':<32} {'off-axis':>8} {'D*':>6} "
        f"{'pairs':>10} {'margin':>8}  biases"
    )
    for p in args.p:
        for s in args.sparsity:
            setup = Setup(5, 2, sparsity=s, importance=importance, p=p)
            best = minimize_loss(setup, n_starts=args.starts)
            pairs, _ = aligned_pairs_minimum(setup)
            norms = np.linalg.norm(best.W, axis=0)
            kept = norms > 0.1
            angles = np.degrees(np.arctan2(best.W[1], best.W[0])) % 360
            off_axis = np.abs(((angles[kept] + 45) % 90) - 45).max() if kept.any() else 0.0
            d_star = 2 / (best.W**2).sum()
            shown = " ".join(f"{a:5.0f}" for a in np.sort(angles[kept]))
            row = f"{p:5.2f} {s:5.2f} {best.loss:10.6f} {kept.sum():4d} {shown:<32} {off_axis:8.1f}"
            margin = (pairs - best.loss) / pairs
            print(f"{row} {d_star:6.2f} {pairs:10.6f} {margin:8.1e}  {np.round(best.b, 3)}", flush=True)


if __name__ == "__main__":
    main()
