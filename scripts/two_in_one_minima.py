"""Why single runs of 2 features in 1 dim miss the optimum: where they start and where they end.

    python scripts/two_in_one_minima.py runs/compare/two_in_one.nc

Reads a `tms-dropout compare phases` Dataset for 2 features in 1 dim and
prints, per p, away from analytic boundaries: how single runs end (label)
split by the signs of their initial weights, and the loss gap of the misses.
"""

from __future__ import annotations

import argparse
import collections

import numpy as np

from compare.phases import load_comparison


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("comparison")
    args = parser.parse_args()
    ds = load_comparison(args.comparison)
    if (int(ds.attrs["n_features"]), int(ds.attrs["n_hidden"])) != (2, 1):
        raise SystemExit("error: this script reads a comparison of 2 features in 1 dim")
    labels = [str(v) for v in ds.label.values]
    for p in ds.p.values:
        c = ds.sel(p=p)
        away = np.broadcast_to(~c.near_boundary.values, c.seed_label.shape)
        init = c.seed_init_W.values[..., 0, :]  # (seed, r, density, feature)
        same = np.sign(init[..., 0]) == np.sign(init[..., 1])
        label = c.seed_label.values
        miss = label != np.broadcast_to(c.analytic_phase.values, label.shape)
        gap = c.seed_loss_gap.values
        print(f"p = {p:g}: {int(away.sum())} single runs away from analytic boundaries")
        for name, start in (("same-sign start", same), ("opposite-sign start", ~same)):
            rows = away & start
            ends = collections.Counter(labels[v] for v in label[rows])
            share = {k: f"{v / rows.sum():.1%}" for k, v in ends.most_common()}
            misses = rows & miss
            print(
                f"  {name:20s} {int(rows.sum()):5d} runs; end as {share}; "
                f"miss {misses.sum() / rows.sum():.1%}, median gap of misses "
                f"{np.median(gap[misses]) if misses.any() else float('nan'):.2%}"
            )


if __name__ == "__main__":
    main()
