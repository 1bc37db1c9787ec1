"""One feature spread over k units under dropout: the closed-form optimum held against the exact loss, a
global minimisation and Monte Carlo, over (p, density, k); one Dataset.

    python scripts/closed_forms.py --out runs/closed_forms.nc [--densities 9] [--starts 4] [--samples 200000]

For every cell: theory.lone_feature's a* = ||W||^2, b* and L*; the exact loss
(theory.expected_loss) at the closed-form W, b; the least loss over all of W
and b found by theory.minimize_loss from --starts random starts (any
weights, any bias sign: nothing assumes the closed form's regime), with its
W's participation ratio (how many units it uses); and a Monte Carlo estimate
at the closed-form W, b with its standard error. Beside it, the same feature
with a constant offset in its units (theory.lone_feature_offset_optimum:
the hidden bias the TMS model lacks, y = ReLU(b + G (x - c))): its closed
form, its ratio to the optimum without, and a Monte Carlo estimate of the
ReLU model at its optimum (sampled here, not by theory.monte_carlo_loss,
whose model has no hidden offset): equal in one unit, below it in more,
where the ReLU clips.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import xarray as xr

from sim.results import code_version
from theory import Setup, expected_loss, minimize_loss, monte_carlo_loss
from theory.lone_feature import lone_feature_offset_optimum, lone_feature_optimum
from theory.progress import Progress
from theory.storage import save_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--p", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    parser.add_argument("--densities", type=int, default=9)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--starts", type=int, default=4)
    parser.add_argument("--samples", type=int, default=200_000)
    args = parser.parse_args()
    ps, ks = np.array(args.p), np.array(args.k)
    densities = np.geomspace(0.01, 1, args.densities)
    P, D, K = np.meshgrid(ps, densities, ks, indexing="ij")
    opt = lone_feature_optimum(D, P, K)
    shape = P.shape
    exact, searched, used, mc, mc_err, offset_mc, offset_err = (np.zeros(shape) for _ in range(7))
    offset = lone_feature_offset_optimum(D, P, K)
    with Progress(P.size, "lone feature", unit="cell") as progress:
        for idx in np.ndindex(shape):
            p, s, k = float(P[idx]), float(D[idx]), int(K[idx])
            setup = Setup(1, k, sparsity=1 - s, p=p)
            here = lone_feature_optimum(s, p, k)
            W, b = here.weights(k), np.array([float(here.bias)])
            exact[idx] = float(expected_loss(setup, W, b))
            best = minimize_loss(setup, n_starts=args.starts, seed=int(np.ravel_multi_index(idx, shape)))
            searched[idx] = best.loss
            w2 = np.asarray(best.W)[:, 0] ** 2
            used[idx] = w2.sum() ** 2 / (w2**2).sum() if w2.sum() > 1e-12 else 0.0
            estimate = monte_carlo_loss(setup, W, b, n_samples=args.samples, seed=1 + idx[0] * 1000 + idx[1])
            mc[idx], mc_err[idx] = estimate.mean, estimate.stderr
            gain, bias, shift = (float(v[idx]) for v in (offset.norm_squared, offset.bias, offset.offset))
            offset_mc[idx], offset_err[idx] = offset_monte_carlo(
                gain, bias, shift, s, p, k, args.samples, seed=2 + idx[0] * 1000 + idx[1]
            )
            progress.update(1)
    dims = ("p", "density", "k")
    ds = xr.Dataset(
        {
            "norm_squared": (dims, opt.norm_squared, {"description": "closed form a* = ||W||^2"}),
            "bias": (dims, opt.bias, {"description": "closed form b*"}),
            "loss": (dims, opt.loss, {"description": "closed form L*, importance 1"}),
            "noise": (dims, opt.noise, {"description": "q = p / (k (1 - p)) = Var[G] / E[G]^2"}),
            "exact_loss": (dims, exact, {"description": "theory.expected_loss at the closed-form W, b"}),
            "searched_loss": (dims, searched, {"description": "theory.minimize_loss over all of W and b"}),
            "searched_units": (dims, used, {"description": "participation ratio of the search's W**2"}),
            "monte_carlo": (dims, mc, {"description": "Monte Carlo at the closed-form W, b"}),
            "monte_carlo_stderr": (dims, mc_err),
            "z": (
                dims,
                np.where(P > 0, (mc - opt.loss) / np.where(mc_err > 0, mc_err, 1.0), np.nan),
                {"description": "(Monte Carlo - L*) / stderr; NaN at p = 0, where L* = 0 exactly"},
            ),
            "offset_loss": (
                dims,
                offset.loss,
                {"description": "with a constant hidden offset: closed form L*_c = sigma^2 q / (1 + q)"},
            ),
            "offset_ratio": (
                dims,
                np.where(P > 0, offset.loss / np.where(opt.loss > 0, opt.loss, 1.0), np.nan),
                {"description": "L*_c / L* = (u + q) / (1 + q), u = 1 - 3 density / 4; NaN at p = 0"},
            ),
            "offset_monte_carlo": (
                dims,
                offset_mc,
                {"description": "the ReLU model with the offset at (a*, b*, c*), sampled"},
            ),
            "offset_monte_carlo_stderr": (dims, offset_err),
        },
        coords={"p": ps, "density": densities, "k": ks},
        attrs={
            "kind": "tms-dropout lone-feature closed forms",
            "starts": args.starts,
            "samples": args.samples,
            "code_version": code_version(),
        },
    )
    save_dataset(ds, args.out)
    gap = (ds.searched_loss - ds.loss) / ds.loss.where(ds.loss > 0)
    # At p = 0 the optimum reconstructs exactly: L* = 0 and the estimate is 0 up to rounding.
    z = ((ds.monte_carlo - ds.loss) / ds.monte_carlo_stderr).where(ds.p > 0)
    print(
        f"closed form vs exact loss: largest relative difference "
        f"{float((abs(ds.exact_loss - ds.loss) / ds.loss.where(ds.loss > 0)).max()):.2g}"
    )
    print(
        f"search over all W, b against the closed form: relative gap {float(gap.min()):.2g} to "
        f"{float(gap.max()):.2g} (negative: the search found less)"
    )
    print(f"Monte Carlo: largest |z| {float(abs(z).max()):.2f}")
    zc = ((ds.offset_monte_carlo - ds.offset_loss) / ds.offset_monte_carlo_stderr).where(ds.p > 0)
    print(
        f"with a hidden offset: L*_c / L* from {float(ds.offset_ratio.min()):.3f} to "
        f"{float(ds.offset_ratio.max()):.3f}; Monte Carlo of the ReLU model against L*_c: largest |z| in one "
        f"unit {float(abs(zc.sel(k=1)).max()) if 1 in ds.k else float('nan'):.2f}, largest z in more "
        f"{float(zc.where(ds.k > 1).max()):.2f} (the ReLU clips: at most L*_c)"
    )
    print(f"wrote {args.out}")


def offset_monte_carlo(
    a: float, b: float, c: float, density: float, p: float, k: int, n: int, seed: int
) -> tuple[float, float]:
    """The loss of y = ReLU(b + G (x - c)), E[G] = a, on n samples: mean, stderr."""
    rng = np.random.default_rng(seed)
    x = rng.random(n) * (rng.random(n) < density)
    gain = a / k * rng.binomial(k, 1 - p, n) / (1 - p)
    err = (np.maximum(b + gain * (x - c), 0.0) - x) ** 2
    return float(err.mean()), float(err.std() / np.sqrt(n))


if __name__ == "__main__":
    main()
