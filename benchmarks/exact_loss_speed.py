"""Evaluations per second of theory.expected_loss, beside a 1e6-sample Monte Carlo estimate.

    python benchmarks/exact_loss_speed.py [--batch 256] [--repeats 5]
    python benchmarks/exact_loss_speed.py --baseline REV [--rounds 3]

Unbatched: one (W, b) per call. Batched: --batch models per call, counted as
that many evaluations. The Monte Carlo estimate (theory.monte_carlo_loss,
numpy) of the same loss at 1e6 samples is timed in the same run, with its
standard error beside the exact value's distance from it. Then the compiled
loss (theory.compiled_loss, numba), value and value with gradient, beside the
torch ones on the same models, with their largest difference; and the loss
truncated to at most k active features at 20 in 5, compiled beside torch.

With --baseline, instead: the compiled loss (value, and with gradient; batched)
of this checkout against that of git revision REV (checked out into a temporary
worktree), each in a process of its own, alternately, --rounds times; the
median of each and their ratio.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from worktree import ROOT, checkout

from theory import Setup, expected_loss, expected_loss_and_grad, expected_loss_bounds, monte_carlo_loss
from theory.compiled_loss import (
    _run,
    expected_loss_and_grad_compiled,
    expected_loss_bounds_compiled,
    expected_loss_compiled,
)

SIZES = [(2, 1), (3, 2), (5, 2), (6, 2)]
COMPILED_SIZES = [(2, 1), (3, 2), (5, 2), (6, 2), (8, 3)]


def form_flops(k: int, tangent: bool) -> int:
    """An upper bound on the floating-point operations of one form of k coefficients in the compiled
    forward pass, counted from its loops (every internal node taken as a polynomial, every moment of
    every level computed): reflection and reach, offsets, moments, leaves, nodes."""
    q, per_term = 2, (10 if tangent else 3)
    flops = 4 * k + k * (k + 1) // 2 + 2 * (1 << k) * (2 if tangent else 1) + (1 << k) * (q + k + 3)
    for d in range(k):
        flops += q + d + 1 + per_term * sum(r + 1 for r in range(q + d + 1))
        flops += (1 << d) * (q + d + (q + d + 1) * per_term)
    return flops


def evaluation_flops(n: int, m: int, grad: bool) -> float:
    """form_flops summed over one evaluation: 2^m - 1 masks x every active set x n outputs (the output's
    own feature active: with the tangent); the reverse pass counted as 1.5 forward passes."""
    per_mask = sum(
        math.comb(n, k) * (k * form_flops(k, True) + (n - k) * form_flops(k, False)) for k in range(n + 1)
    )
    return (2**m - 1) * per_mask * (2.5 if grad else 1.0)


def matmul_flops_per_second(repeats: int) -> float:
    """The machine's float64 rate on dense work: numpy's 2000 x 2000 matrix product, every thread."""
    a = np.random.default_rng(0).normal(size=(2000, 2000))
    return 2 * 2000**3 / best_time(lambda: a @ a, repeats)


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


_TIMING = """
import time
import numpy as np
from theory import Setup
from theory.compiled_loss import expected_loss_and_grad_compiled, expected_loss_compiled
rng = np.random.default_rng(0)
for n, m in {sizes}:
    setup = Setup(n, m, sparsity=0.7, importance=0.9 ** np.arange(n), p=0.4)
    batch = {batch} if n < 8 else 16
    W, b = rng.normal(scale=0.7, size=(batch, m, n)), rng.normal(scale=0.1, size=(batch, n))
    for fn in (expected_loss_compiled, expected_loss_and_grad_compiled):
        fn(setup, W, b)
        times = []
        for _ in range({repeats}):
            start = time.perf_counter()
            fn(setup, W, b)
            times.append(time.perf_counter() - start)
        print(batch / min(times))
"""


def compiled_rates(tree: Path, batch: int, repeats: int) -> list[float]:
    """Batched evaluations per second of the compiled loss (value, with gradient) at COMPILED_SIZES, in
    the checkout at tree, in a process of its own."""
    code = _TIMING.format(sizes=COMPILED_SIZES, batch=batch, repeats=repeats)
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=True, capture_output=True)
    return [float(x) for x in done.stdout.split()]


def versus_baseline(revision: str, rounds: int, batch: int, repeats: int) -> None:
    with checkout(revision) as baseline:
        rates = {"baseline": [], "this": []}
        for _ in range(rounds):
            for label, tree in (("baseline", baseline), ("this", ROOT)):
                rates[label].append(compiled_rates(tree, batch, repeats))
    old, new = (np.median(rates[label], axis=0) for label in ("baseline", "this"))
    print(f"compiled exact loss, batched evaluations/s: baseline {revision} against this checkout, "
          f"best of {repeats} per process, median of {rounds} processes each")  # fmt: skip
    print(f"{'(n, m)':>7} {'':>14} {'baseline/s':>11} {'this/s':>9} {'this / baseline':>16}")
    labels = [(size, what) for size in COMPILED_SIZES for what in ("value", "with gradient")]
    for (size, what), before, after in zip(labels, old, new, strict=True):
        print(f"{str(size):>7} {what:>14} {before:11.1f} {after:9.1f} {after / before:16.2f}")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--baseline", default=None, help="git revision: compare the compiled loss against it")
    parser.add_argument("--rounds", type=int, default=3, help="with --baseline: processes per checkout")
    args = parser.parse_args()
    if args.baseline:
        versus_baseline(args.baseline, args.rounds, args.batch, args.repeats)
        return
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
    rates = {}  # batched evaluations with gradient per second
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
            if what == "with gradient":
                rates[(n, m)] = 1 / cb
            print(
                f"{str((n, m)):>7} {what:>14} {1 / t1:9.1f} {1 / c1:11.1f} {t1 / c1:5.0f}x {1 / tb:16.1f} "
                f"{1 / cb:11.1f} {tb / cb:5.1f}x {difference:9.1e}"
            )
    print("max diff: the value's largest relative difference; the gradient's largest absolute one.")
    peak = matmul_flops_per_second(args.repeats)
    print(f"share of the machine: numpy's float64 matrix product runs at {peak / 1e9:.1f} GFLOP/s here; the")
    print("compiled loss with gradient, batched, at an upper bound on its flops (every node and moment):")
    for (n, m), rate in rates.items():
        flops = evaluation_flops(n, m, grad=True) * rate
        share = 100 * flops / peak
        print(f"{str((n, m)):>7} {flops / 1e9:6.2f} GFLOP/s at most, {share:4.1f}% of the matrix product")
    print("truncated to at most k active features (expected_loss_bounds), 20 in 5 at density 0.05, p = 0.4,")
    print(
        "one model with columns of norm about 1: seconds per evaluation and the rigorous bracket; compiled:"
    )
    print("one thread per dropout mask (what a bracket of one model runs), beside one thread per model (the")
    print(
        "kernel for batches, which a bracket of one model ran before) and their largest relative difference"
    )
    print(
        f"{'k':>3} {'torch s':>9} {'per model s':>12} {'compiled s':>11} {'/torch':>7} {'/per model':>10} "
        f"{'diff':>8} {'lower':>9} {'upper':>9} {'omitted':>9}"
    )
    setup = Setup(20, 5, sparsity=0.95, importance=0.9 ** np.arange(20), p=0.4)
    W, b = rng.normal(scale=0.5, size=(5, 20)), rng.normal(scale=0.1, size=20) - 0.1
    for k in (2, 3, 4, 5, 6):
        compiled = best_time(lambda k=k: expected_loss_bounds_compiled(setup, W, b, k), 1)
        per_model = best_time(lambda k=k: _run([setup], W[None], b[None], False, k, by_mask=False), 1)
        reference = best_time(lambda k=k: expected_loss_bounds(setup, W, b, k), 1) if k <= 3 else np.nan
        bounds = expected_loss_bounds_compiled(setup, W, b, k)
        one_per_model = _run([setup], W[None], b[None], False, k, by_mask=False)[0][0]
        difference = abs(float(bounds.lower) / one_per_model - 1)
        print(
            f"{k:>3} {reference:9.3f} {per_model:12.3f} {compiled:11.3f} {reference / compiled:6.1f}x "
            f"{per_model / compiled:9.2f}x {difference:8.1e} {float(bounds.lower):9.5f} "
            f"{float(bounds.upper):9.5f} {bounds.omitted_mass:9.2e}"
        )
    print("(torch is not run past k = 3: it takes minutes)")


if __name__ == "__main__":
    main()
