"""Analytic phase diagrams against an earlier version of the code, on the same grids, in one run.

    python benchmarks/diagram_speed.py [--baseline 94be762] [--problems 5x2,20x5] [--rounds 1]
        [--grid "--points 30 --p 0,0.15,0.4"] [--with-search]

Each --problems entry is `tms-dropout theory phase-diagram --problem P` on its
default grid, or, for an entry ending in .toml, theory.phase_diagram on that
config's grid, saved without a figure (e.g.
configs/paper/twenty_in_five_quick.toml: 20 in 5 at three importance
profiles). The defaults (5x2: 12 densities x p = 0, 0.1, ..., 0.5 at
importance 0.9**i; 20x5: 12 densities x p = 0, 0.15, 0.4, importance 0.7**i), run by this
checkout and by --baseline (a git revision, checked out into a temporary
worktree), alternately, each in its own process, --rounds times. Prints the
median wall time of each, their ratio, and how the two diagrams' optimal
losses compare cell by cell (the fits are local searches, so the new one
should be lower or equal everywhere, never higher). The default baseline is
the last version whose exact-loss fits ran on the torch loss, walking the
density axis up only. Both run without the search over all of W and b
(`--no-search`; the baseline has none); --with-search also times this
checkout's diagrams with it. --grid replaces the default grid (the same
options for both).

This checkout runs twice per round: `cold`, with an empty cache folder
(TMS_DROPOUT_CACHE), as on a fresh machine, and `warm`, with the cache the
cold run left (the closed forms' regimes and their numpy code, kept between
processes); the baseline runs with an empty cache folder. The warm run's
diagram must be the cold run's bit for bit: the line says so.
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
from worktree import ROOT, checkout

COMMAND = "import sys; from tms_dropout.cli import main; main(sys.argv[1:])"
#: theory.phase_diagram over a config's grid (argv: config, out), without the search, saved.
CONFIG_COMMAND = (
    "import sys; from theory.candidates import catalogue; from theory.diagram import phase_diagram; "
    "from theory.grid import Grid; from theory.storage import save_dataset; "
    "grid = Grid.from_toml(sys.argv[1]); candidates = catalogue(grid.n_features, grid.n_hidden); "
    "save_dataset(phase_diagram(grid, candidates, search=False), sys.argv[2])"
)


def searches(tree: Path) -> bool:
    """Whether the checkout at tree has the phase diagram's search over all of W, b (`--no-search`)."""
    return "--search/--no-search" in (tree / "theory" / "cli.py").read_text()


def run(tree: Path, problem: str, out: Path, cache: Path, grid: str = "", search: bool = False) -> float:
    """Seconds one phase-diagram command takes in the checkout at tree with the cache folder `cache`
    (without its search over all of W, b unless `search`: a version before it has none). A problem
    ending in .toml is a config of this checkout's, given to both (its grid; never the search)."""
    env = dict(
        os.environ, PYTHONPATH=str(tree), TMS_DROPOUT_PROGRESS_SECONDS="600", TMS_DROPOUT_CACHE=str(cache)
    )
    flag = [] if not searches(tree) else ["--search"] if search else ["--no-search"]
    if problem.endswith(".toml"):
        argv = [sys.executable, "-c", CONFIG_COMMAND, str(ROOT / problem), str(out)]
    else:
        argv = [sys.executable, "-c", COMMAND, "theory", "phase-diagram", "--problem", problem, "--out"]
        argv += [str(out), *grid.split(), *flag]
    start = time.perf_counter()
    subprocess.run(argv, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def identical(old: Path, new: Path) -> bool:
    """Whether two diagrams hold the same variables, bit for bit (attributes aside: they carry times)."""
    return xr.load_dataset(old).drop_attrs().identical(xr.load_dataset(new).drop_attrs())


def compare(old: Path, new: Path) -> str:
    """How the new diagram's optimal loss and phase compare with the old one's, cell by cell."""
    a, b = xr.load_dataset(old), xr.load_dataset(new)
    relative = (b.optimal_loss.values - a.optimal_loss.values) / a.optimal_loss.values
    same = (a.geometry.values[a.phase.values] == b.geometry.values[b.phase.values]).mean()
    return (
        f"optimal loss lower in {(relative < -1e-9).sum()} of {relative.size} cells (by up to "
        f"{-relative.min():.2%}), higher in {(relative > 1e-9).sum()} (largest {relative.max():.1e}); "
        f"same phase in {same:.0%}{'; the Datasets are identical' if identical(old, new) else ''}"
    )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", default="94be762", help="git revision to compare against")
    parser.add_argument("--problems", default="5x2,20x5")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--grid", default="", help="phase-diagram options replacing the default grid")
    parser.add_argument(
        "--with-search",
        action="store_true",
        help="also time this checkout's diagrams with the search over all of W, b (once each)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, checkout(args.baseline) as baseline:
        scratch = Path(scratch)
        print(f"baseline {args.baseline} against this checkout; median of {args.rounds} round(s)")
        print(f"{'problem':>8} {'baseline s':>11} {'cold s':>7} {'warm s':>7} {'ratios':>12}  numbers")
        for problem in args.problems.split(","):
            label = Path(problem).stem  # a file name for it (a config's name without .toml)
            times = {"baseline": [], "cold": [], "warm": []}
            for round_ in range(args.rounds):
                caches = {name: scratch / f"cache_{label}_{round_}_{name}" for name in ("baseline", "cold")}
                caches["warm"] = caches["cold"]  # what the cold run left
                for name, tree in (("baseline", baseline), ("cold", ROOT), ("warm", ROOT)):
                    out = scratch / f"{name}_{label}.nc"
                    times[name].append(run(tree, problem, out, caches[name], args.grid))
            old, cold, warm = (statistics.median(times[k]) for k in ("baseline", "cold", "warm"))
            numbers = compare(scratch / f"baseline_{label}.nc", scratch / f"cold_{label}.nc")
            warm_is_cold = identical(scratch / f"cold_{label}.nc", scratch / f"warm_{label}.nc")
            same = "warm = cold bit for bit" if warm_is_cold else "WARM DIFFERS FROM COLD"
            print(
                f"{label:>8} {old:11.1f} {cold:7.1f} {warm:7.1f} {old / cold:5.1f}x {old / warm:5.1f}x  "
                f"{numbers}; {same}",
                flush=True,
            )
        if args.with_search and searches(ROOT):
            for problem in args.problems.split(","):
                label = Path(problem).stem
                out, cache = scratch / f"search_{label}.nc", scratch / f"cache_{label}_search"
                seconds = run(ROOT, problem, out, cache, args.grid, search=True)
                print(f"{label:>8} with the search over all of W, b (this checkout only): {seconds:.1f} s")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
