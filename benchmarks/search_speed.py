"""The phase diagram's search over all of W and b against an earlier version of the code, in one run.

    python benchmarks/search_speed.py [--baseline f5a2f96] [--config configs/paper/twenty_in_five_quick.toml]
        [--importance-decay 0.7] [--rounds 1] [--threads 1]

Computes the family's phase diagram (theory.phase_diagram without its
search) once, on the config's grid restricted to the --importance-decay
values given ('all' keeps the config's), then runs the search over all of W
and b on it (theory.diagram.search_optimum: L-BFGS-B on the sample-average
loss from every start, the polish, the Monte Carlo re-score) in this checkout
and in --baseline (a git revision, checked out into a temporary worktree),
alternately, each in its own process with a cache folder of its own (and
--threads numba, OpenMP and BLAS threads where given), --rounds times. Prints the median wall
time of each, their ratio, and whether the two searched Diagrams are
identical bit for bit (attributes aside). The
default baseline is the last version before the sample-average kernel's
vectorised paths; both versions must have search_optimum.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr
from diagram_speed import identical
from worktree import ROOT, checkout

from paper.runs import with_threads

#: The family's diagram on a config's grid (argv: config, importance decays or 'all', out), saved.
FAMILY_COMMAND = (
    "import dataclasses, sys; from theory.candidates import catalogue; "
    "from theory.diagram import phase_diagram; from theory.grid import Grid; "
    "from theory.storage import save_dataset; grid = Grid.from_toml(sys.argv[1]); "
    "grid = grid if sys.argv[2] == 'all' else dataclasses.replace(grid, importance_decay="
    "tuple(float(v) for v in sys.argv[2].split(','))); "
    "save_dataset(phase_diagram(grid, catalogue(grid.n_features, grid.n_hidden), search=False), sys.argv[3])"
)
#: The search over all of W, b on a saved family diagram (argv: diagram, out), saved.
SEARCH_COMMAND = (
    "import sys, xarray as xr; from theory.diagram import search_optimum; "
    "from theory.storage import save_dataset; "
    "save_dataset(search_optimum(xr.load_dataset(sys.argv[1])), sys.argv[2])"
)


def run(tree: Path, command: str, args: list[str], cache: Path, threads: int | None = None) -> float:
    """Seconds `python -c command args` takes in the checkout at tree with the cache folder `cache` (and at
    most `threads` threads of each kind where given)."""
    env = dict(
        os.environ, PYTHONPATH=str(tree), TMS_DROPOUT_PROGRESS_SECONDS="600", TMS_DROPOUT_CACHE=str(cache)
    )
    env = with_threads(env, threads)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", command, *args], cwd=tree, env=env, check=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", default="f5a2f96", help="git revision to compare against")
    parser.add_argument("--config", default="configs/paper/twenty_in_five_quick.toml")
    parser.add_argument(
        "--importance-decay", default="0.7", help="comma-separated decays of the config's to keep, or 'all'"
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--threads", type=int, default=None, help="numba, OpenMP and BLAS threads (default: the machine's)"
    )
    args = parser.parse_args()
    if args.rounds < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--rounds and --threads must be at least 1")
    with tempfile.TemporaryDirectory() as scratch, checkout(args.baseline) as baseline:
        scratch = Path(scratch)
        family = scratch / "family.nc"
        config = str((ROOT / args.config).resolve())
        seconds = run(ROOT, FAMILY_COMMAND, [config, args.importance_decay, str(family)], scratch / "cache")
        cells = xr.load_dataset(family).optimal_loss.size
        print(f"the family's diagram on {args.config} ({cells} cells): {seconds:.1f} s (this checkout)")
        times = {"baseline": [], "this": []}
        for round_ in range(args.rounds):
            for name, tree in (("baseline", baseline), ("this", ROOT)):
                out = scratch / f"{name}_{round_}.nc"
                cache = scratch / f"cache_{name}"  # the kernels compiled in round 0, kept after it
                times[name].append(run(tree, SEARCH_COMMAND, [str(family), str(out)], cache, args.threads))
                print(f"  round {round_}: {name} {times[name][-1]:.1f} s", flush=True)
        old, new = (statistics.median(times[k]) for k in ("baseline", "this"))
        pairs = [(scratch / f"baseline_{r}.nc", scratch / f"this_{r}.nc") for r in range(args.rounds)]
        same = all(identical(old_out, new_out) for old_out, new_out in pairs)
        threads = "the machine's" if args.threads is None else args.threads
        print(
            f"median of {args.rounds} round(s), threads {threads}: "
            f"baseline {args.baseline} {old:.1f} s, this {new:.1f} s"
        )
        verdict = "the searched Diagrams are identical" if same else "THE DIAGRAMS DIFFER"
        print(f"ratio {old / new:.2f}x; {verdict}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
