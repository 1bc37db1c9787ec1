"""Evaluations per second of theory.expected_loss, beside a 1e6-sample Monte Carlo estimate.

    python benchmarks/exact_loss_speed.py [--batch 256] [--repeats 5]

Unbatched: one (W, b) per call. Batched: --batch models per call, counted as
that many evaluations. The Monte Carlo estimate (theory.monte_carlo_loss,
numpy) of the same loss at 1e6 samples is timed in the same run, with its
standard error beside the exact value's distance from it. Then the compiled
loss (theory.compiled_loss, numba), value and value with gradient, beside the
torch ones on the same models, with their largest difference; and the loss
truncated to at most k active features at 20 in 5, compiled beside torch.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from theory import Setup, expected_loss, expected_loss_and_grad, expected_loss_bounds, monte_carlo_loss
from theory.compiled_loss import (
    expected_loss_and_grad_compiled,
    expected_loss_bounds_compiled,
    expected_loss_compiled,
)

SIZES = [(2, 1), (3, 2), (5, 2), (6, 2)]
COMPILED_SIZES = [(2, 1), (3, 2), (5, 2), (6, 2), (8, 3)]


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of {args.repeats}")
    header = (
        f"{'(n, m)':>7} {'exact/s':>10} {'batched/s':>11} {'grad/s':>9} {'MC 1e6 s':>9} "
        f"{'exact vs MC':>11} {'exact (sum)':>12} {'|exact-MC|/se':>13}"
    )
    print(header)
    rng = np.random.default_rng(0)
    for n, m in SIZES:
        setup = Setup(n, m, sparsity=0.7, importance=0.9 ** np.arange(n), p=0.4)
        W = rng.normal(scale=0.7, size=(m, n))
        b = rng.normal(scale=0.1, size=n)
        Wb = rng.normal(scale=0.7, size=(args.batch, m, n))
        bb = rng.normal(scale=0.1, size=(args.batch, n))
        single = best_time(lambda setup=setup, W=W, b=b: expected_loss(setup, W, b), args.repeats)
        batched = (
            best_time(lambda setup=setup, Wb=Wb, bb=bb: expected_loss(setup, Wb, bb), args.repeats)
            / args.batch
        )
        grad = best_time(lambda setup=setup, W=W, b=b: expected_loss_and_grad(setup, W, b), args.repeats)
        mc_time = best_time(
            lambda setup=setup, W=W, b=b: monte_carlo_loss(setup, W, b, n_samples=args.samples), 1
        )
        exact = float(expected_loss(setup, W, b))
        mc = monte_carlo_loss(setup, W, b, n_samples=args.samples, seed=1)
        print(
            f"{str((n, m)):>7} {1 / single:10.1f} {1 / batched:11.1f} {1 / grad:9.1f} {mc_time:9.3f} "
            f"{mc_time / single:10.0f}x {exact:12.8f} {abs(exact - mc.mean) / mc.stderr:13.2f}"
        )
    print("exact vs MC: how many times faster one exact evaluation is than one 1e6-sample estimate,")
    print("whose standard error is ~1e-3 relative; the exact value is exact to ~1e-12.")
    print("compiled (theory.compiled_loss) against torch (theory.expected_loss[_and_grad]), same models:")
    print(f"{'(n, m)':>7} {'':>14} {'torch/s':>9} {'compiled/s':>11} {'ratio':>6} {'batched torch/s':>16} "
          f"{'compiled/s':>11} {'ratio':>6} {'max diff':>9}")  # fmt: skip
    for n, m in COMPILED_SIZES:
        setup = Setup(n, m, sparsity=0.7, importance=0.9 ** np.arange(n), p=0.4)
        batch = args.batch if n < 8 else 16
        W = rng.normal(scale=0.7, size=(batch, m, n))
        b = rng.normal(scale=0.1, size=(batch, n))
        pairs = {
            "value": (expected_loss, expected_loss_compiled),
            "with gradient": (expected_loss_and_grad, expected_loss_and_grad_compiled),
        }
        for what, (torch_fn, compiled_fn) in pairs.items():
            times = []
            for fn in (torch_fn, compiled_fn):
                times.append(
                    (
                        best_time(lambda fn=fn, setup=setup, W=W, b=b: fn(setup, W[0], b[0]), args.repeats),
                        best_time(lambda fn=fn, setup=setup, W=W, b=b: fn(setup, W, b), args.repeats) / batch,
                    )
                )
            reference, compiled = torch_fn(setup, W, b), compiled_fn(setup, W, b)
            if what == "value":
                difference = np.max(np.abs(compiled - reference) / reference)
            else:
                difference = max(np.max(np.abs(compiled.grad_W - reference.grad_W)),
                                 np.max(np.abs(compiled.grad_b - reference.grad_b)))  # fmt: skip
            (t1, tb), (c1, cb) = times
            print(
                f"{str((n, m)):>7} {what:>14} {1 / t1:9.1f} {1 / c1:11.1f} {t1 / c1:5.0f}x {1 / tb:16.1f} "
                f"{1 / cb:11.1f} {tb / cb:5.1f}x {difference:9.1e}"
            )
    print("max diff: the value's largest relative difference; the gradient's largest absolute one.")
    print("truncated to at most k active features (expected_loss_bounds), 20 in 5 at density 0.05, p = 0.4,")
    print("one model with columns of norm about 1: seconds per evaluation and the rigorous bracket")
    print(f"{'k':>3} {'torch s':>9} {'compiled s':>11} {'ratio':>6} {'lower':>9} {'upper':>9} {'omitted':>9}")
    setup = Setup(20, 5, sparsity=0.95, importance=0.9 ** np.arange(20), p=0.4)
    W, b = rng.normal(scale=0.5, size=(5, 20)), rng.normal(scale=0.1, size=20) - 0.1
    for k in (2, 3, 4, 5):
        compiled = best_time(lambda k=k: expected_loss_bounds_compiled(setup, W, b, k), 1)
        reference = best_time(lambda k=k: expected_loss_bounds(setup, W, b, k), 1) if k <= 3 else np.nan
        bounds = expected_loss_bounds_compiled(setup, W, b, k)
        print(
            f"{k:>3} {reference:9.3f} {compiled:11.3f} {reference / compiled:5.1f}x "
            f"{float(bounds.lower):9.5f} {float(bounds.upper):9.5f} {bounds.omitted_mass:9.2e}"
        )
    print("(torch is not run past k = 3: it takes minutes)")


if __name__ == "__main__":
    main()
