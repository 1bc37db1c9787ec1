"""Hold the catalogue's optimum against theory.testing.check_optimum over a grid of settings.

    python scripts/check_catalogue_optima.py [--problems 2x1 3x2] [--densities 0.03 0.3 1] [--p 0 0.15 0.4]

For each problem, density and p (importance 0.9**i, and for 2 in 1 also
uniform), finds theory.optimal's optimum and checks it: stationary (largest
downhill slope), no descent from it or from perturbations, not beaten by a
global search from 24 random starts. Prints one line per cell and a count.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from theory import Setup, optimal
from theory.testing import OptimumRejected, check_optimum


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=["2x1", "3x2"])
    parser.add_argument("--densities", nargs="+", type=float, default=[0.03, 0.3, 1.0])
    parser.add_argument("--p", nargs="+", type=float, default=[0.0, 0.15, 0.4])
    args = parser.parse_args()
    accepted = total = 0
    for problem in args.problems:
        n, m = (int(k) for k in problem.split("x"))
        profiles = {"0.9**i": 0.9 ** np.arange(n)} | ({"uniform": np.ones(n)} if n == 2 else {})
        for (label, importance), density, p in itertools.product(profiles.items(), args.densities, args.p):
            setup = Setup(n, m, sparsity=1 - density, importance=importance, p=p)
            start = time.perf_counter()
            best = optimal(setup)
            try:
                report = check_optimum(setup, best.W, best.b)
            except OptimumRejected as rejected:
                report = rejected.report
            total += 1
            accepted += report.ok
            beaten = "; ".join(f"{b.source} {b.loss - report.loss:+.2g}" for b in report.beaten_by)
            print(
                f"{problem} importance {label:7} density {density:<5g} p {p:<5g} {best.name:28} "
                f"{'accepted' if report.ok else 'REJECTED'}  slope {report.slope:.1e}  "
                f"{time.perf_counter() - start:5.1f} s  {beaten}",
                flush=True,
            )
    print(f"{accepted} of {total} catalogue optima accepted")


if __name__ == "__main__":
    main()
