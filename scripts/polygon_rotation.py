"""A regular k-gon turned in the plane of two neurons under dropout: its first-order closed form held against
the exact loss, a fit of the turn on the exact loss, the exact symmetry, and Monte Carlo, over (k, p, turn).

    python scripts/polygon_rotation.py --out runs/polygon_rotation.nc [--k 2 3 4 5 6 7 8]
                                       [--p 0 0.1 0.2 0.3 0.4 0.5] [--turns 11]
                                       [--densities 0.001 0.01 0.1] [--samples 1000000]

For every k (features of importance 1 at a regular k-gon's vertices in two
neurons, one norm r and one bias b) and dropout rate p:

- the first-order loss lim L / s at the best r, b <= 0
  (theory.turned_polygon.first_order_optimum) at --turns turns phi from 0
  (a vertex on a neuron) to half the period T = 2 pi / lcm(k, 4); the best
  turn of that grid, and the half-period's loss against the aligned one's;
- at each of --densities s: the exact loss (theory.compiled_loss) at the
  first-order optimum of every turn, divided by s times the first-order
  loss (the rest is second order: it shrinks in proportion to s); and r, b
  and phi fitted on the exact loss (L-BFGS-B, exact gradient) from the
  first-order optimum at turns 0, T / 4 and T / 2, the fitted turn folded
  into [0, T / 2] by the symmetry below;
- the symmetry, at density 0.3: the exact loss at phi + T and at -phi
  against phi (the same to rounding), and its spread over the turns (zero
  at p = 0, where any turn of the hidden plane leaves W^T W alone);
- a Monte Carlo estimate at the first-order optimum of turns 0 and T / 2 at
  the first density, with its standard error.

Writes one Dataset (dims k, p, turn, density, end) with the command's
arguments in its attributes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import xarray as xr

from sim.results import code_version
from theory import Setup, monte_carlo_loss
from theory.compiled_loss import expected_loss_and_grad_compiled, expected_loss_compiled
from theory.optimize import best_of_starts
from theory.progress import Progress
from theory.storage import save_dataset
from theory.turned_polygon import first_order_optimum, polygon_W, rotation_period

SYMMETRY_DENSITY = 0.3
#: first-order losses below this are zero (rounding of an exact zero)
ZERO = 1e-12
#: a first-order loss whose relative spread over the turns is below this does not depend on the turn
FLAT = 1e-9


def fit_turned_polygon(setup: Setup, starts: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """(r, b, phi) of least exact loss from each start (L-BFGS-B on the exact gradient), and that loss."""
    k = setup.n_features

    def value_and_grad(theta):
        r, b, phi = theta
        W = polygon_W(r, phi, k)
        out = expected_loss_and_grad_compiled(setup, W, np.full(k, b))
        gW = np.asarray(out.grad_W)
        unit = polygon_W(1.0, phi, k)
        turned = np.stack([-W[1], W[0]])  # dW / dphi
        return float(out.loss), np.array([np.sum(gW * unit), np.sum(out.grad_b), np.sum(gW * turned)])

    best = best_of_starts(value_and_grad, starts)
    return best.x, float(best.fun)


def polygon_loss(setup: Setup, r: float, b: float, phi: float) -> float:
    """The exact loss of the regular polygon (norm r, bias b, turn phi) on setup's features and two units."""
    k = setup.n_features
    return float(expected_loss_compiled(setup, polygon_W(r, phi, k), np.full(k, b)))


def fold_turn(phi: float, k: int) -> float:
    """phi as a fraction of the period T in [0, 1/2]: the loss is even in phi with period T."""
    t = (phi / rotation_period(k)) % 1.0
    return min(t, 1.0 - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--k", type=int, nargs="+", default=[2, 3, 4, 5, 6, 7, 8])
    parser.add_argument("--p", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    parser.add_argument("--turns", type=int, default=11)
    parser.add_argument("--densities", type=float, nargs="+", default=[0.001, 0.01, 0.1])
    parser.add_argument("--samples", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.turns < 2 or args.samples < 2 or min(args.k) < 2:
        parser.error("need --turns >= 2, --samples >= 2 and every --k >= 2")
    if not all(0 <= p < 1 for p in args.p) or not all(0 < s < 1 for s in args.densities):
        parser.error("every --p must be in [0, 1) and every density in (0, 1)")
    ks, ps = np.array(args.k), np.array(args.p)
    turns, densities = np.linspace(0, 0.5, args.turns), np.array(sorted(args.densities))
    ends = np.array([0.0, 0.5])
    kp, kpt, kpd = (len(ks), len(ps)), (len(ks), len(ps), len(turns)), (len(ks), len(ps), len(densities))
    first = {name: np.zeros(kpt) for name in ("first_order", "norm", "bias")}
    exact = np.zeros(kpt + (len(densities),))  # exact losses at the first-order optima
    fitted = {name: np.zeros(kpd) for name in ("fitted_loss", "fitted_turn", "fitted_norm", "fitted_bias")}
    symmetry, spread = np.zeros(kp), np.zeros(kp)
    mc_loss, mc_stderr = np.zeros(kp + (2,)), np.zeros(kp + (2,))
    with Progress(len(ks) * len(ps), "turned polygons", unit="cell") as progress:
        for i, j in np.ndindex(kp):
            k, p = int(ks[i]), float(ps[j])
            period = rotation_period(k)
            optima = [first_order_optimum(t * period, p, k) for t in turns]
            for t, optimum in enumerate(optima):
                first["first_order"][i, j, t] = optimum.loss
                first["norm"][i, j, t], first["bias"][i, j, t] = optimum.norm, optimum.bias
            for d, s in enumerate(densities):
                setup = Setup(k, 2, sparsity=1 - s, p=p)
                for t, optimum in enumerate(optima):
                    exact[i, j, t, d] = polygon_loss(setup, optimum.norm, optimum.bias, optimum.phi)
                starts = [
                    np.array([o.norm, o.bias, o.phi])
                    for o in (optima[0], optima[len(turns) // 2], optima[-1])
                ]
                theta, loss = fit_turned_polygon(setup, starts)
                fitted["fitted_loss"][i, j, d] = loss / s
                # without dropout every turn has the same loss: no turn to report
                fitted["fitted_turn"][i, j, d] = fold_turn(theta[2], k) if p > 0 else np.nan
                fitted["fitted_norm"][i, j, d], fitted["fitted_bias"][i, j, d] = abs(theta[0]), theta[1]
            setup = Setup(k, 2, sparsity=1 - SYMMETRY_DENSITY, p=p)
            r, b = optima[0].norm, optima[0].bias

            values = np.array([polygon_loss(setup, r, b, t * period) for t in turns])
            moved = np.array(
                [
                    [polygon_loss(setup, r, b, (t + 1) * period), polygon_loss(setup, r, b, -t * period)]
                    for t in turns
                ]
            )
            symmetry[i, j] = float(np.max(np.abs(moved - values[:, None]) / values[:, None]))
            spread[i, j] = float((values.max() - values.min()) / values.min())
            mc_setup = Setup(k, 2, sparsity=1 - densities[0], p=p)
            for e, optimum in enumerate((optima[0], optima[-1])):
                W, b_end = polygon_W(optimum.norm, optimum.phi, k), np.full(k, optimum.bias)
                estimate = monte_carlo_loss(
                    mc_setup, W, b_end, n_samples=args.samples, seed=1 + 2 * (i * len(ps) + j) + e
                )
                mc_loss[i, j, e], mc_stderr[i, j, e] = estimate.mean, estimate.stderr
            progress.update(1)
    loss = first["first_order"]
    # below ZERO the first-order loss is zero up to rounding (p = 0 with k <= 4): ratios of it are NaN
    positive = np.where(loss > ZERO, loss, np.nan)
    flat = loss.max(axis=2) - loss.min(axis=2) <= FLAT * loss.max(axis=2) + ZERO
    best_turn = np.where(flat, np.nan, turns[np.argmin(loss, axis=2)])
    turned_gain = positive[:, :, -1] / positive[:, :, 0] - 1
    exact_ratio = exact / densities / positive[..., None]
    mc_exact = exact[:, :, [0, -1], 0]  # the Monte Carlo models: both ends at the first density
    # where the first-order loss is zero the loss is second order: too few samples hold an event
    mc_loss[np.isnan(positive[:, :, [0, -1]])] = np.nan
    dims, kpt_dims, kpd_dims, end_dims = (
        ("k", "p"),
        ("k", "p", "turn"),
        ("k", "p", "density"),
        ("k", "p", "end"),
    )
    variables = {
        "first_order": (
            kpt_dims,
            first["first_order"],
            "lim L / s at the best norm and bias (b <= 0) at this turn",
        ),
        "norm": (kpt_dims, first["norm"], "r at the first-order optimum"),
        "bias": (kpt_dims, first["bias"], "b at the first-order optimum"),
        "exact_over_first_order": (
            kpt_dims + ("density",),
            exact_ratio,
            "exact loss at the first-order optimum / (s * first-order loss); NaN where that is zero",
        ),
        "best_turn": (
            dims,
            best_turn,
            "turn of least first-order loss on the grid, fraction of the period; NaN where every turn ties",
        ),
        "turned_gain": (dims, turned_gain, "first-order loss at half the period / at turn 0, minus one"),
        "fitted_loss": (kpd_dims, fitted["fitted_loss"], "exact loss / s with r, b, phi fitted on it"),
        "fitted_turn": (
            kpd_dims,
            fitted["fitted_turn"],
            "fitted phi folded into [0, 1/2] of the period; NaN at p = 0 (every turn ties)",
        ),
        "fitted_norm": (kpd_dims, fitted["fitted_norm"], "fitted r"),
        "fitted_bias": (kpd_dims, fitted["fitted_bias"], "fitted b"),
        "symmetry_error": (
            dims,
            symmetry,
            f"largest |L(phi + T) - L(phi)|, |L(-phi) - L(phi)| / L(phi) at density {SYMMETRY_DENSITY}",
        ),
        "exact_turn_spread": (
            dims,
            spread,
            f"(max - min) / min over turns of the exact loss at density {SYMMETRY_DENSITY}, turn 0's r, b",
        ),
        "mc_loss": (
            end_dims,
            mc_loss,
            f"Monte Carlo loss at the first density, {args.samples} samples; NaN where first order is zero",
        ),
        "mc_stderr": (end_dims, mc_stderr, "its standard error"),
        "mc_exact": (end_dims, mc_exact, "the exact loss of the same model"),
    }
    ds = xr.Dataset(
        {name: (d, values, {"description": text}) for name, (d, values, text) in variables.items()}
        | {
            "period_degrees": (
                ("k",),
                np.degrees([rotation_period(int(k)) for k in ks]),
                {"description": "T = 360 / lcm(k, 4)"},
            )
        },
        coords={"k": ks, "p": ps, "turn": turns, "density": densities, "end": ends},
        attrs={
            "importance": "1 for every feature",
            "symmetry_density": SYMMETRY_DENSITY,
            "samples": args.samples,
            "code_version": code_version(),
        },
    )
    save_dataset(ds, args.out)
    print(f"best turn (fraction of the period):\n{ds.best_turn.to_pandas().round(2)}")
    print(f"half-period / aligned - 1:\n{ds.turned_gain.to_pandas().round(4)}")
    ratio = abs(ds.exact_over_first_order - 1)
    print(f"|exact / first order - 1| by density: {ratio.max(('k', 'p', 'turn')).values}")
    print(f"largest symmetry error: {float(ds.symmetry_error.max()):.1e}")
    z = float((abs(ds.mc_loss - ds.mc_exact) / ds.mc_stderr.where(ds.mc_stderr > 0)).max())
    print(f"largest |Monte Carlo - exact| / se: {z:.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
