"""The search's sample-average loss (theory.sampled) against an earlier version of the code, in one run.

    python benchmarks/sampled_loss_speed.py [--baseline 81607cc] [--rounds 3] [--seeds 40] [--threads 1]

At 20 features in 5 dims (importance 0.9**i, the TMS sparsity schedule's
10 densities, p = 0 and 0.4) each version draws its search's sample
(SampledLoss.draw with its default size) and evaluates L_N and its gradient
at one fixed model: the median seconds per evaluation over --rounds rounds
of 20, and the spread of L_N over --seeds samples (their standard deviation
over their mean), which is what a search ranks end points by. Each version
runs in its own process (--baseline checked out into a temporary git
worktree; --threads: its numba, OpenMP and BLAS threads, default the machine's); the
rounds alternate between them. Prints a row per cell with both versions side
by side, their ratio, and whether L_N and its gradient at the fixed model on
the seed-0 sample are the same bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from worktree import ROOT, checkout

from paper.runs import with_threads

#: One round in one version: argv p values, seeds; prints one JSON object per cell.
MEASURE = r"""
import hashlib, json, sys, time
import numpy as np
import theory.sampled as ts
from theory import Setup
from theory.grid import tms_sparsities

ps, seeds = [float(v) for v in sys.argv[1].split(",")], int(sys.argv[2])
rng = np.random.default_rng(0)
W, b = rng.normal(0, 0.4, (5, 20)), rng.normal(-0.1, 0.1, 20)
for p in ps:
    for sparsity in tms_sparsities(10):
        setup = Setup(20, 5, sparsity=float(sparsity), importance=0.9 ** np.arange(20), p=p)
        size = ts.search_samples_for(setup) if hasattr(ts, "search_samples_for") else ts.SEARCH_SAMPLES
        values = [ts.SampledLoss.draw(setup, size, seed).loss_and_grad(W, b)[0] for seed in range(seeds)]
        spread = float(np.std(values, ddof=1) / np.mean(values)) if seeds else None
        objective = ts.SampledLoss.draw(setup, size, 0)
        value, grad_W, grad_b = objective.loss_and_grad(W, b)
        digest = hashlib.sha1(np.concatenate([[value], grad_W.ravel(), grad_b]).tobytes()).hexdigest()
        start = time.perf_counter()
        for _ in range(20):
            objective.loss_and_grad(W, b)
        seconds = (time.perf_counter() - start) / 20
        print(json.dumps({"p": p, "density": 1 - float(sparsity), "seconds": seconds, "spread": spread,
                          "digest": digest}))
"""


def measure(tree: Path, ps: str, seeds: int, cache: Path, threads: int | None) -> list[dict]:
    """One round of MEASURE in the checkout at tree (its own cache folder; at most `threads` threads of
    each kind where given)."""
    env = with_threads(dict(os.environ, PYTHONPATH=str(tree), TMS_DROPOUT_CACHE=str(cache)), threads)
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, ps, str(seeds)], cwd=tree, env=env, check=True, capture_output=True
    )
    return [json.loads(line) for line in out.stdout.decode().splitlines() if line.startswith("{")]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", default="81607cc", help="git revision to compare against")
    parser.add_argument("--p", default="0,0.4", help="comma-separated dropout rates")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=40, help="samples drawn to measure L_N's spread")
    parser.add_argument(
        "--threads", type=int, default=None, help="numba, OpenMP and BLAS threads (default: the machine's)"
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.seeds < 2 or (args.threads is not None and args.threads < 1):
        parser.error("--rounds and --threads must be at least 1 and --seeds at least 2")
    with tempfile.TemporaryDirectory() as scratch, checkout(args.baseline) as baseline:
        rounds = {"baseline": [], "this": []}
        for round_ in range(args.rounds):
            for name, tree in (("baseline", baseline), ("this", ROOT)):
                seeds = args.seeds if round_ == 0 else 0  # the spread is drawn once; later rounds time only
                cache = Path(scratch) / f"cache_{name}"
                rounds[name].append(measure(tree, args.p, seeds, cache, args.threads))
            print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    threads = "the machine's" if args.threads is None else args.threads
    print(f"20 in 5, importance 0.9**i: L_N and its gradient at one model, baseline {args.baseline} and this")
    print(f"checkout, threads: {threads}")
    print(f"(median of {args.rounds} rounds of 20 evaluations; spread of L_N over {args.seeds} samples)")
    header = ("p", 4), ("density", 8), ("baseline ms", 12), ("this ms", 8), ("ratio", 6), ("spread base", 12)
    print(" ".join(f"{name:>{width}}" for name, width in header), f"{'this':>8}", "same bits")
    total = {"baseline": 0.0, "this": 0.0}
    for k, cell in enumerate(rounds["this"][0]):
        ms = {name: 1e3 * statistics.median(r[k]["seconds"] for r in rounds[name]) for name in rounds}
        for name in total:
            total[name] += ms[name]
        spread = {name: rounds[name][0][k]["spread"] for name in rounds}
        print(
            f"{cell['p']:>4g} {cell['density']:>8.4f} {ms['baseline']:>12.2f} {ms['this']:>8.2f} "
            f"{ms['baseline'] / ms['this']:>5.2f}x {spread['baseline']:>12.2e} {spread['this']:>8.2e} "
            f"{'yes' if rounds['baseline'][0][k]['digest'] == cell['digest'] else 'NO'}"
        )
    print(
        f"all cells: {total['baseline']:.1f} ms against {total['this']:.1f} ms, "
        f"{total['baseline'] / total['this']:.2f}x"
    )


if __name__ == "__main__":
    main()
