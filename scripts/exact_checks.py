"""The exact expected loss held three ways, written to one Dataset: Monte Carlo, quadrature, published forms.

    python scripts/exact_checks.py --out runs/exact_checks.nc [--cases 60] [--samples 1000000] [--seed 0]

- `case`: random problems (2-6 features in 1-3 units, density log-uniform
  in [0.01, 1], p in [0, 0.9], importance in [0.1, 1], W and b normal with
  scale 1 and 0.3): theory's exact loss (the torch reference and the
  compiled one) against a Monte Carlo estimate on fresh samples
  (theory.montecarlo), its standard error and z score.
- `quad_case`: 2 features in 1 or 2 units: the exact loss against an
  independent evaluation that shares nothing with it but the definition of
  the model: the expectation over which features are active and which
  units are kept, summed by hand, and over the active features' values by
  adaptive quadrature (scipy.integrate.nquad, the integrand's kinks given
  as break points).
- `published`: 2 features in 1 unit at p = 0 (importance (1, r)): the exact
  loss of the three published candidates (feature 0 alone, feature 1 alone,
  the antipodal pair, ignored features at bias density / 2) against their
  published closed forms s/3 - s^2/4, r (s/3 - s^2/4), (1 + r) s^2 / 6.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import xarray as xr
from scipy import integrate

from sim.results import code_version
from theory import Setup, expected_loss
from theory.compiled_loss import expected_loss_compiled
from theory.montecarlo import monte_carlo_loss
from theory.storage import save_dataset


def random_problem(rng: np.random.Generator) -> tuple[Setup, np.ndarray, np.ndarray]:
    n, m = int(rng.integers(2, 7)), int(rng.integers(1, 4))
    setup = Setup(
        n,
        m,
        sparsity=1 - 10 ** rng.uniform(-2, 0, n),
        importance=rng.uniform(0.1, 1, n),
        p=float(rng.uniform(0, 0.9)),
    )
    return setup, rng.normal(size=(m, n)), 0.3 * rng.normal(size=n)


def quadrature_loss(setup: Setup, W: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """sum over active sets and kept units of P * integral of the loss over the active values; and an
    error bound (the sum of nquad's error estimates, weighted)."""
    n, m = setup.n_features, setup.n_hidden
    density, importance, p = setup.density, setup.importance_array, setup.p
    total, error = 0.0, 0.0
    for active in itertools.product((0, 1), repeat=n):
        p_active = np.prod([density[i] if a else 1 - density[i] for i, a in enumerate(active)])
        if p_active == 0:
            continue
        free = [i for i in range(n) if active[i]]
        for kept in itertools.product((0, 1), repeat=m):
            p_kept = np.prod([(1 - p) if k else p for k in kept])
            if p_kept == 0:
                continue
            scale = np.array(kept, float) / (1 - p)
            # Output i is b_i + sum_j (W^T diag(scale) W)_ij x_j: affine in the active values.
            M = W.T @ (scale[:, None] * W)

            def loss(*u, M=M, free=free):
                x = np.zeros(n)
                x[free] = u
                y = np.maximum(M @ x + b, 0.0)
                return float(np.sum(importance * (x - y) ** 2))

            if not free:
                value, err = loss(), 0.0
            else:
                value, err = integrate.nquad(
                    loss, [(0.0, 1.0)] * len(free), opts=[_breaks(M, b, free, k) for k in range(len(free))]
                )
            total += p_active * p_kept * value
            error += p_active * p_kept * err
    return total, error


def _breaks(M: np.ndarray, b: np.ndarray, free: list[int], k: int):
    """nquad's options for its k-th variable (0 innermost), a function of the outer variables: the
    points in (0, 1) where an output's pre-activation crosses 0, with the inner variables at each
    corner of their square (exact for the innermost variable, and for two variables also for the
    outer one: the inner integral has kinks only where a crossing line meets the square's edge)."""
    i, inner = free[k], free[:k]

    def options(*outer):
        fixed = dict(zip(free[k + 1 :], outer, strict=True))
        points = set()
        for corner in itertools.product((0.0, 1.0), repeat=len(inner)):
            values = {**fixed, **dict(zip(inner, corner, strict=True))}
            for row in range(M.shape[0]):
                if M[row, i] != 0:
                    t = -(b[row] + sum(M[row, j] * v for j, v in values.items())) / M[row, i]
                    if 0 < t < 1:
                        points.add(float(t))
        return {"points": sorted(points), "limit": 200, "epsabs": 1e-14, "epsrel": 1e-13}

    return options


def published_forms(density: np.ndarray, r: np.ndarray) -> xr.Dataset:
    S, R = np.meshgrid(density, r, indexing="ij")
    exact = {name: np.zeros(S.shape) for name in ("dedicated 0", "dedicated 1", "antipodal")}
    for idx in np.ndindex(S.shape):
        s, ratio = S[idx], R[idx]
        setup = Setup(2, 1, sparsity=1 - s, importance=[1.0, ratio])
        exact["dedicated 0"][idx] = float(expected_loss(setup, [[1.0, 0.0]], [0.0, s / 2]))
        exact["dedicated 1"][idx] = float(expected_loss(setup, [[0.0, 1.0]], [s / 2, 0.0]))
        exact["antipodal"][idx] = float(expected_loss(setup, [[1.0, -1.0]], [0.0, 0.0]))
    published = {
        "dedicated 0": R * (S / 3 - S**2 / 4),  # feature 1 ignored
        "dedicated 1": S / 3 - S**2 / 4,  # feature 0 ignored
        "antipodal": (1 + R) * S**2 / 6,
    }
    names = list(exact)
    return xr.Dataset(
        {
            "published_exact": (
                ("pub_density", "pub_r", "candidate"),
                np.stack([exact[k] for k in names], -1),
            ),
            "published_form": (
                ("pub_density", "pub_r", "candidate"),
                np.stack([published[k] for k in names], -1),
            ),
        },
        coords={"pub_density": density, "pub_r": r, "candidate": names},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cases", type=int, default=60)
    parser.add_argument("--quad-cases", type=int, default=8)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    rows = []
    for k in range(args.cases):
        setup, W, b = random_problem(rng)
        torch_loss = float(expected_loss(setup, W, b))
        compiled = float(expected_loss_compiled(setup, W, b))
        mc = monte_carlo_loss(setup, W, b, n_samples=args.samples, seed=args.seed + 1 + k)
        rows.append((setup.n_features, setup.n_hidden, setup.p, torch_loss, compiled, mc.mean, mc.stderr))
        print(
            f"case {k}: {setup.n_features} in {setup.n_hidden}, p {setup.p:.3f}: exact {torch_loss:.6g}, "
            f"MC {mc.mean:.6g} +- {mc.stderr:.2g}",
            flush=True,
        )
    n, m, p, exact, compiled, mc_mean, mc_stderr = (np.array(c) for c in zip(*rows, strict=True))

    quad_rows = []
    for k in range(args.quad_cases):
        m_q = 1 + k % 2
        setup = Setup(
            2,
            m_q,
            sparsity=1 - 10 ** rng.uniform(-1.5, 0, 2),
            importance=rng.uniform(0.1, 1, 2),
            p=float(rng.uniform(0, 0.9)),
        )
        W, b = rng.normal(size=(m_q, 2)), 0.3 * rng.normal(size=2)
        value, err = quadrature_loss(setup, W, b)
        quad_rows.append((m_q, setup.p, float(expected_loss(setup, W, b)), value, err))
        print(
            f"quadrature case {k}: 2 in {m_q}: exact {quad_rows[-1][2]:.12g}, quadrature {value:.12g}",
            flush=True,
        )
    q_m, q_p, q_exact, q_value, q_err = (np.array(c) for c in zip(*quad_rows, strict=True))

    ds = xr.Dataset(
        {
            "n_features": ("case", n.astype(int)),
            "n_hidden": ("case", m.astype(int)),
            "p": ("case", p),
            "exact": ("case", exact),
            "compiled": ("case", compiled),
            "compiled_relative_difference": ("case", np.abs(compiled - exact) / np.abs(exact)),
            "monte_carlo": ("case", mc_mean),
            "monte_carlo_stderr": ("case", mc_stderr),
            "z": ("case", (mc_mean - exact) / mc_stderr),
            "quad_n_hidden": ("quad_case", q_m.astype(int)),
            "quad_p": ("quad_case", q_p),
            "quad_exact": ("quad_case", q_exact),
            "quadrature": ("quad_case", q_value),
            "quadrature_error": ("quad_case", q_err),
            "quad_relative_difference": ("quad_case", np.abs(q_value - q_exact) / np.abs(q_exact)),
        },
        coords={"case": np.arange(len(n)), "quad_case": np.arange(len(q_m))},
        attrs={
            "kind": "tms-dropout exact-loss checks",
            "samples": args.samples,
            "seed": args.seed,
            "code_version": code_version(),
            "loss": "sum over features, importance-weighted",
        },
    )
    ds = ds.merge(published_forms(np.linspace(0.02, 1, 25), np.geomspace(0.1, 10, 7)))
    save_dataset(ds, args.out)
    worst = float(np.abs(ds.z).max())
    print(
        f"{len(n)} Monte Carlo cases: largest |z| {worst:.2f}; compiled vs torch: largest relative "
        f"difference {float(ds.compiled_relative_difference.max()):.2g}"
    )
    quad = float(ds.quad_relative_difference.max())
    print(f"{len(q_m)} quadrature cases: largest relative difference {quad:.2g}")
    rel = np.abs(ds.published_exact - ds.published_form) / ds.published_form
    print(f"published forms: largest relative difference {float(rel.max()):.2g}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
