"""Dropout in series: blocks of a residual stream that fail as a whole, against one block of as many units.

    python scripts/series.py [--out runs/series] [--configs configs/series/*.toml]

For each config (default: every file in configs/series: 6 features through a
2-dim stream and 1, 2 or 4 blocks of 2 ReLU units, each block dropped with p;
and one block of 4 or 8 units, the parameter count of 2 or 4 blocks; p in
{0, 0.1, 0.2, 0.4}, the TMS sparsity schedule (5 values), importance 0.9**i
and uniform, 3 seeds), trains (or resumes) its sweep (`tms-dropout sim sweep`,
OUT/NAME.nc, with the series metrics of sim.series_runs), checks the
trainer against theory, and writes OUT/report.md, OUT/NAME.png and
OUT/summary.nc (the report's numbers as one Dataset over config, p, seed
and block):

- the check: for one model per config and p (seed 0, importance 0.9**i, the
  sparsest cell), its exact loss over the samples of at most one active
  feature (theory.series.leading_order_loss) against a Monte Carlo of the
  same (monte_carlo_series_loss, at_most_one) on fresh samples;
- per config and p, means over seeds, densities and importance profiles
  (with the spread of the per-seed means): the loss with dropout, how many
  blocks write each feature, the share of the blocks' benefit lost when one
  block fails, and the features per unit inside a block (superposition
  inside the component);
- the statements: does dropout raise redundancy across blocks in series,
  does it lower superposition inside a block, and how L blocks compare with
  one block of as many parameters.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from sim import series_runs, sweep  # noqa: E402
from sim.config import TrainConfig  # noqa: E402
from sim.results import load  # noqa: E402
from theory.direct_plots import profile_name  # noqa: E402
from theory.phase_plots import finish, plain_log_axis  # noqa: E402
from theory.series import SeriesModel, leading_order_loss, monte_carlo_series_loss  # noqa: E402
from theory.storage import save_dataset, save_text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: The summarised quantities: name -> (how it is reduced from a run, its label).
QUANTITIES = {
    "loss": (lambda ds: ds.sampled_loss, "loss with dropout"),
    "blocks_benefit": (lambda ds: ds.blocks_benefit, "share of the loss the blocks remove"),
    "blocks_writing": (lambda ds: ds.blocks_writing.mean("feature"), "blocks writing a feature"),
    "lost_alone": (lambda ds: ds.lost_alone_total.mean("block"), "share lost when one block fails"),
    "features_per_unit": (lambda ds: ds.features_per_unit.mean("block"), "features per unit in a block"),
}
CHECK_SAMPLES = 1_000_000


def per_seed(ds: xr.Dataset, name: str) -> xr.DataArray:
    """A quantity per seed and p: its mean over the densities and importance profiles (NaN left out)."""
    value = QUANTITIES[name][0](ds)
    return value.mean([d for d in value.dims if d not in ("seed", "p")])


def check(config: TrainConfig, ds: xr.Dataset) -> list[tuple[float, float, float, float]]:
    """Per p: (p, exact leading-order loss, its Monte Carlo, the Monte Carlo's stderr) for the model of
    seed 0, the first importance value and the sparsest cell."""
    out = []
    sparsest = int(np.argmax(ds.sparsity.values))
    cells = config.cells()
    shape = tuple(len(v) for v in config.axes.values())
    for k, p in enumerate(ds.p.values):
        index = {d: {"p": k, "sparsity": sparsest}.get(d, 0) for d in config.axes}  # first seed, importance
        setup = config.series_setup(cells[np.ravel_multi_index(list(index.values()), shape)])
        at = ds.isel(index)
        model = SeriesModel.of(setup, **{name: at[name].values for name in setup.shapes})
        mc = monte_carlo_series_loss(setup, model, n_samples=CHECK_SAMPLES, seed=777, at_most_one=True)
        out.append((float(p), leading_order_loss(setup, model), mc.mean, mc.stderr))
    return out


#: The block table's columns (by_block's variables), in the report's order.
BLOCK_TABLE = ("block_lost", "block_restored", "block_write")


def by_block(ds: xr.Dataset) -> xr.Dataset:
    """Per p and block, means over seeds, densities and importance profiles: the share lost when the
    block alone fails, restored by it alone, and the mean absolute write (the report's block table)."""
    at = {
        "block_lost": ds.lost_alone_total,
        "block_restored": ds.restored_alone_total,
        "block_write": abs(ds.block_writes),
    }
    out = xr.Dataset({k: v.mean([d for d in v.dims if d not in ("p", "block")]) for k, v in at.items()})
    return out.assign_coords(block=np.arange(out.sizes["block"]))


def summary_dataset(runs, summary, checks) -> xr.Dataset:
    """One Dataset over (config, p, seed[, block]): every summarised quantity per seed (`summary`: the
    per_seed values of QUANTITIES by config), the block table, the trainer's check, and each config's
    series settings as coordinates."""
    parts = []
    for name, (config, ds) in runs.items():
        s = config.series
        part = xr.Dataset(summary[name])
        if s.blocks > 1:
            part = part.merge(by_block(ds))
        rows = checks[name]
        p = [r[0] for r in rows]
        part["check_exact"] = ("p", [r[1] for r in rows])
        part["check_monte_carlo"] = ("p", [r[2] for r in rows])
        part["check_stderr"] = ("p", [r[3] for r in rows])
        part = part.assign_coords(p=p).expand_dims(config=[name])
        part = part.assign_coords(
            blocks=("config", [s.blocks]),
            units=("config", [s.units]),
            dropout=("config", [s.dropout]),
            direct=("config", [s.direct]),
        )
        parts.append(part)
    out = xr.concat(parts, "config", join="outer", coords="minimal", compat="equals")
    out.attrs = {
        "kind": "tms-dropout series summary",
        "quantities": "; ".join(f"{k}: {text}" for k, (_, text) in QUANTITIES.items()),
        "means": "over densities and importance profiles, per seed; block_*: also over seeds",
    }
    return out


def figure(name: str, config: TrainConfig, ds: xr.Dataset, out: Path) -> Path:
    axis = config.grid.importance_axis
    labels = ds[axis].values if axis else [None]
    fig, axes = plt.subplots(len(labels), len(QUANTITIES), figsize=(16, 3.5 * len(labels)), squeeze=False)
    for row, label in zip(axes, labels, strict=True):
        cell = (ds.sel({axis: label}) if axis else ds).sortby("density")
        profile = profile_name(axis, label)
        for ax, (reduce, text) in zip(row, QUANTITIES.values(), strict=True):
            values = reduce(cell)
            for k, p in enumerate(cell.p.values):
                at = values.sel(p=p)
                ax.plot(cell.density, at.mean("seed"), "o-", ms=3, color=f"C{k}")
                ax.fill_between(cell.density, at.min("seed"), at.max("seed"), color=f"C{k}", alpha=0.15)
            ax.set_title(profile + text, fontsize=9)
            ax.set_ylabel(text, fontsize=8)
            plain_log_axis(ax, "x")
            ax.set_xlabel("density 1 - S", fontsize=8)
            ax.tick_params(labelsize=7)
    s = config.series
    dropped = {"block": "each block", "unit": "each unit of a block", "both": "each block and each unit"}
    readout = "" if s.direct else ", readout of the blocks' writes only"
    title = (f"{config.n_features} features, {config.n_hidden}-dim stream, {s.blocks} block(s) of {s.units} "
             f"units{readout}, {dropped[s.dropout]} dropped with p: mean over {ds.sizes['seed']} seeds "
             "(band: their range)")  # fmt: skip
    caption = (
        "Share of the loss the blocks remove: (loss without any block - loss with all) / loss without any. "
        "Blocks writing a feature: participation ratio over blocks of what each writes into the feature's "
        "readout when it alone is active (1: one block; L: all equally), mean over features. Share lost: "
        "of what all blocks do for the loss (summed over features), the part lost when one block is "
        "removed, mean over blocks (1/L when they split the work and add up, near 0 when the others make "
        "up for it). Features per unit: the features a block reads of the embedding (R_l E) effectively, "
        "per unit (above 1: superposition inside the block). Every metric without dropout (every block kept)."
    )
    handles = [Line2D([], [], marker="o", ms=3, color=f"C{k}") for k in range(ds.sizes["p"])]
    return finish(fig, out, title, handles, [f"p = {p:g}" for p in ds.p.values], caption, ncol=len(handles))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "series")
    configs = sorted((ROOT / "configs" / "series").glob("*.toml"))
    parser.add_argument("--configs", type=Path, nargs="+", default=configs)
    args = parser.parse_args()
    runs = {}
    for path in args.configs:
        config = TrainConfig.from_toml(path)
        if config.series is None:
            raise SystemExit(f"{path} has no [series] table")
        print(f"{path.stem}: training", flush=True)
        run = load(sweep.sweep(config, args.out / f"{path.stem}.nc"))
        runs[path.stem] = (config, series_runs.with_metrics(config, run))  # the metrics of this code
    lines = ["# Dropout in series: blocks that fail as a whole", ""]
    lines += ["## The check: exact loss over samples of at most one active feature against Monte Carlo", ""]
    lines += ["| config | p | exact | Monte Carlo | z |", "|---|---|---|---|---|"]
    checks = {name: check(config, ds) for name, (config, ds) in runs.items()}
    for name in runs:
        for p, exact, mc, se in checks[name]:
            lines.append(
                f"| {name} | {p:g} | {exact:.6f} | {mc:.6f} +- {se:.6f} | {(mc - exact) / se:+.2f} |"
            )
    lines += ["", "## Means over seeds, densities and importance profiles (range of the per-seed means)", ""]
    header = " | ".join(text for _, text in QUANTITIES.values())
    lines += [f"| config | p | {header} |", "|---|---|" + "---|" * len(QUANTITIES)]
    summary = {}
    for name, (config, ds) in runs.items():
        summary[name] = {key: per_seed(ds, key) for key in QUANTITIES}
        for p in ds.p.values:
            cells = []
            for key in QUANTITIES:
                seeds = summary[name][key].sel(p=p)
                cells.append(f"{float(seeds.mean()):.4g} ({float(seeds.min()):.3g}-{float(seeds.max()):.3g})")
            lines.append(f"| {name} | {p:g} | " + " | ".join(cells) + " |")
        figure(name, config, ds, args.out / f"{name}.png")
    lines += ["", "## Block by block, first to last (configs of several blocks; means as above)", ""]
    lines += [
        "| config | p | lost when it fails | restored by it alone | mean abs write |",
        "|---|---|---|---|---|",
    ]
    for name, (config, ds) in runs.items():
        if config.series.blocks < 2:
            continue
        blocks = by_block(ds)
        for p in ds.p.values:
            at = blocks.sel(p=p)
            cells = [" ".join(f"{v:.3g}" for v in at[column].values) for column in BLOCK_TABLE]
            lines.append(f"| {name} | {p:g} | " + " | ".join(cells) + " |")
    lines += ["", "## What the numbers say", ""]
    lines += statements(runs, summary)
    out = save_text("\n".join(lines) + "\n", args.out / "report.md")
    summary_path = save_dataset(summary_dataset(runs, summary, checks), args.out / "summary.nc")
    print(f"wrote {out}, {summary_path} and the figures in {args.out}")


def statements(runs, summary) -> list[str]:
    """Each from the summary's numbers: the direction of a quantity from p = 0 to each p > 0."""

    def trend(name, key):
        values = summary[name][key].mean("seed")
        ps = values.p.values
        text = " -> ".join(f"{float(values.sel(p=p)):.3g}" for p in ps)
        up = [float(values.sel(p=p)) > float(values.sel(p=ps[0])) for p in ps[1:]]
        word = "higher" if all(up) else "lower" if not any(up) else "mixed"
        return f"{text} ({word} at every p > 0 than at p = 0)" if word != "mixed" else f"{text} (mixed)"

    out = []
    for name, (config, _) in runs.items():
        s = config.series
        parts = [
            f"share of the loss the blocks remove {trend(name, 'blocks_benefit')}",
            f"features per unit in a block {trend(name, 'features_per_unit')}",
        ]
        if s.blocks > 1:
            parts += [
                f"blocks writing a feature {trend(name, 'blocks_writing')}",
                f"share lost when one block fails {trend(name, 'lost_alone')}",
            ]
        dropped = "block and unit" if s.dropout == "both" else s.dropout
        what = f"{s.blocks} x {s.units} units, p drops each {dropped}" + (
            "" if s.direct else ", no direct path"
        )
        out.append(f"- **{name}** ({what}), p = 0 -> ...: " + "; ".join(parts))
    by_units = {}  # configs of as many units, dropped the same way, with the same readout
    for name, (config, _) in runs.items():
        s = config.series
        by_units.setdefault((s.blocks * s.units, s.dropout, s.direct), []).append(name)
    for (total, _, _), names in sorted(by_units.items()):
        if len(names) < 2:
            continue
        losses = {n: summary[n]["loss"].mean("seed") for n in names}
        for p in losses[names[0]].p.values:
            ranked = sorted(names, key=lambda n, p=p: float(losses[n].sel(p=p)))
            text = " < ".join(f"{n} {float(losses[n].sel(p=p)):.4g}" for n in ranked)
            out.append(f"- {total} units in all, p = {p:g}: loss {text}")
    return out


if __name__ == "__main__":
    main()
