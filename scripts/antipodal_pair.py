"""Two features in k units under dropout: the antipodal pair spread over every unit, its first-order closed
form held against the exact loss, a search over all of W and b, and Monte Carlo, over (p, density, k).

    python scripts/antipodal_pair.py --out runs/antipodal_pair.nc [--p 0.1 0.2 0.3 0.4 0.5]
                                     [--densities 8] [--k 1 2 3] [--starts 4] [--samples 400000]

For every cell (two features of importance 1, density s, dropout p, k units):

- the pair: columns w_1 u and -w_2 u, u = (1, ..., 1) / sqrt(k), biases b_1,
  b_2; its four parameters fitted on the exact loss (L-BFGS-B, exact
  gradient, from the first-order optimum and from two other starts);
- the first-order closed form (theory.lone_feature.sparse_limit):
  2 s p / (3 (k - (k - 1) p)), and the ratio of the fitted pair's loss to it;
- the least exact loss over all of W and b (theory.optimize.minimize_from:
  any weights, any bias) from --starts random starts and from the fitted
  pair nudged off itself twice, with the cosine between its
  two columns (-1: antipodal) and the units each column uses (participation
  ratio of its squared entries);
- a Monte Carlo estimate at the fitted pair, with its standard error.

Writes one Dataset (dims p, density, k) with the command's arguments in its
attributes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import xarray as xr

from sim.results import code_version
from theory import Setup, monte_carlo_loss
from theory.compiled_loss import expected_loss_and_grad_compiled
from theory.lone_feature import sparse_limit
from theory.metrics import neurons_per_feature
from theory.optimize import best_of_starts, minimize_from
from theory.progress import Progress
from theory.storage import save_dataset


def pair_parameters(theta: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """W (k, 2) and b (2,) of the pair theta = (w_1, w_2, b_1, b_2) spread evenly over k units."""
    u = np.full(k, 1 / np.sqrt(k))
    return np.stack([theta[0] * u, -theta[1] * u], axis=1), theta[2:].copy()


def fit_pair(setup: Setup, starts: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """The pair's parameters of least exact loss from each start (L-BFGS-B on the exact gradient)."""
    k = setup.n_hidden
    u = np.full(k, 1 / np.sqrt(k))

    def value_and_grad(theta):
        W, b = pair_parameters(theta, k)
        out = expected_loss_and_grad_compiled(setup, W, b)
        gW, gb = np.asarray(out.grad_W), np.asarray(out.grad_b)
        return float(out.loss), np.array([gW[:, 0] @ u, -(gW[:, 1] @ u), gb[0], gb[1]])

    best = best_of_starts(value_and_grad, starts)
    return best.x, float(best.fun)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--p", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5])
    parser.add_argument("--densities", type=int, default=8)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--starts", type=int, default=4)
    parser.add_argument("--samples", type=int, default=400_000)
    args = parser.parse_args()
    if args.densities < 2 or args.starts < 1 or args.samples < 2 or min(args.k) < 1:
        parser.error("need --densities >= 2, --starts >= 1, --samples >= 2 and every --k >= 1")
    if not all(0 < p < 1 for p in args.p):
        parser.error("every --p must be in (0, 1)")
    ps, ks = np.array(args.p), np.array(args.k)
    densities = np.geomspace(1e-3, 0.3, args.densities)
    shape = (len(ps), len(densities), len(ks))
    names = (
        "pair_loss",
        "first_order",
        "searched_loss",
        "search_cosine",
        "search_units",
        "mc_loss",
        "mc_stderr",
    )
    out = {name: np.zeros(shape) for name in names}
    norms, biases = np.zeros(shape + (2,)), np.zeros(shape + (2,))
    with Progress(int(np.prod(shape)), "antipodal pair", unit="cell") as progress:
        for idx in np.ndindex(shape):
            p, s, k = float(ps[idx[0]]), float(densities[idx[1]]), int(ks[idx[2]])
            setup = Setup(2, k, sparsity=1 - s, p=p)
            limit = float(sparse_limit(p, k))
            w0 = np.sqrt(1 - 3 * limit)  # a* = 1 / (1 + q) = 1 - q / (1 + q), and limit = q / (3 (1 + q))
            starts = [
                np.array([w0, w0, 0.0, 0.0]),
                np.array([w0, w0, 0.05, 0.05]),
                np.array([1.0, 1.0, -0.05, -0.05]),
            ]
            theta, loss = fit_pair(setup, starts)
            W, b = pair_parameters(theta, k)
            out["pair_loss"][idx] = loss
            out["first_order"][idx] = 2 * s * limit
            norms[idx], biases[idx] = theta[:2] ** 2, theta[2:]
            rng = np.random.default_rng(int(np.ravel_multi_index(idx, shape)))
            # random starts, and the pair nudged off itself (a saddle of the full problem would be left)
            search_W = np.concatenate(
                [rng.normal(0, 1, (args.starts, k, 2)), W + rng.normal(0, 0.05, (2, k, 2))]
            )
            search_b = np.concatenate([np.zeros((args.starts, 2)), b + rng.normal(0, 0.01, (2, 2))])
            found = minimize_from(setup, search_W, search_b)
            out["searched_loss"][idx] = found.loss
            FW = np.asarray(found.W)
            lengths = np.linalg.norm(FW, axis=0)
            out["search_cosine"][idx] = (
                FW[:, 0] @ FW[:, 1] / (lengths[0] * lengths[1]) if lengths.min() > 1e-9 else np.nan
            )
            out["search_units"][idx] = neurons_per_feature(FW).mean()
            estimate = monte_carlo_loss(
                setup, W, b, n_samples=args.samples, seed=1 + int(np.ravel_multi_index(idx, shape))
            )
            out["mc_loss"][idx], out["mc_stderr"][idx] = estimate.mean, estimate.stderr
            progress.update(1)
    dims = ("p", "density", "k")
    descriptions = {
        "pair_loss": "exact loss of the antipodal pair spread evenly over k units, norms and biases fitted",
        "first_order": "2 s p / (3 (k - (k - 1) p)), to first order in s: theory.lone_feature.sparse_limit",
        "searched_loss": f"least exact loss over all W, b: {args.starts} random starts, 2 near the pair",
        "search_cosine": "cosine between the two columns of the search's optimum (-1: antipodal)",
        "search_units": "units a column of the search's optimum uses (participation ratio), mean of two",
        "mc_loss": f"Monte Carlo loss at the fitted pair, {args.samples} samples",
        "mc_stderr": "its standard error",
    }
    ds = xr.Dataset(
        {name: (dims, out[name], {"description": descriptions[name]}) for name in names}
        | {
            "pair_norm_squared": (
                dims + ("feature",),
                norms,
                {"description": "||W_i||^2 of the fitted pair"},
            ),
            "pair_bias": (dims + ("feature",), biases, {"description": "b_i of the fitted pair"}),
        },
        coords={"p": ps, "density": densities, "k": ks, "feature": [0, 1]},
        attrs={
            "n_features": 2,
            "importance": "1, 1",
            "starts": args.starts,
            "samples": args.samples,
            "code_version": code_version(),
        },
    )
    save_dataset(ds, args.out)
    ratio = ds.pair_loss / ds.first_order
    print(
        f"pair / first order at the sparsest density: {ratio.isel(density=0).min().item():.5f}..."
        f"{ratio.isel(density=0).max().item():.5f}"
    )
    excess = float(((ds.pair_loss - ds.searched_loss) / ds.pair_loss).max())
    print(f"largest relative excess of the pair over the search: {excess:.2e}")
    z = float((abs(ds.mc_loss - ds.pair_loss) / ds.mc_stderr).max())
    print(f"largest |Monte Carlo - exact| / se: {z:.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
