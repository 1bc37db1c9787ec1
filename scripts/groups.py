"""Dropout in parallel: units dropped one by one against units dropped in groups, theory beside training.

    python scripts/groups.py [--out runs/groups] [--configs configs/groups/*.toml] [--starts 8]

For each config (default: every file in configs/groups: 2 features in 2
units dropped one by one and as one group; 5 features in 4 units dropped one
by one and as 2 groups of 2; p in {0, 0.1, 0.2, 0.4}, 7 log-spaced
densities, importance 0.9**i and uniform, 3 seeds):

- theory: the optimum over all of W and b at every cell on the exact loss,
  checked by Monte Carlo (`tms-dropout theory direct-diagram`,
  theory.direct_diagram), written to OUT/NAME/theory.nc (reused when its
  grid is the config's);
- training: the config's sweep (`tms-dropout sim sweep`, resumable),
  OUT/NAME/runs.nc;
- per cell, the best seed (least exact loss) against theory's optimum: the
  ratio of exact losses (at least 1 unless training found a lower minimum
  than the search), and what both look like: features represented (column
  longer than 0.5), their superposition (TMS's sum over the other features
  of the squared projection), the dropout groups carrying each (the
  participation ratio of its squared norm over the groups) and the features
  per unit in the busiest group.

Writes OUT/NAME/comparison.nc, OUT/NAME/comparison.png (theory's lines with
the trained models' crosses) and OUT/report.md: one table per config, and
the answers, each computed from the comparisons: does dropout lower
superposition inside a component, does it spread features across groups,
and do groups dropped as a whole behave like units dropped one by one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import xarray as xr

from sim import sweep
from sim.config import TrainConfig
from sim.results import load
from theory import metrics
from theory.diagram import SEARCH_REPRESENTED
from theory.direct_diagram import direct_diagram
from theory.direct_plots import group_label, panel_values, plot_direct_diagram
from theory.storage import save_dataset, save_text

ROOT = Path(__file__).resolve().parent.parent
#: The report's columns: a panel of the figure (theory.direct_plots.PANELS) and its short name.
COLUMNS = {
    "represented": "represented",
    "superposition": "superposition",
    "layer": "features per unit",
    "groups": "groups per feature",
    "busiest": "features per unit, busiest group",
}
#: Below this theory loss a ratio means nothing (p = 0 with every feature kept: the loss is 0).
ZERO_LOSS = 1e-9


def theory_for(config: TrainConfig, path: Path, starts: int) -> xr.Dataset:
    """The config's direct diagram: computed, or read back when the file holds the same grid."""
    if path.exists():
        ds = xr.load_dataset(path)
        if json.loads(ds.attrs["grid"]) == json.loads(json.dumps(config.grid.to_dict())):
            return ds
    ds = direct_diagram(config.grid, n_starts=starts)
    save_dataset(ds, path)
    return ds


def best_trained(config: TrainConfig, runs: xr.Dataset, dims: tuple[str, ...]) -> xr.Dataset:
    """Per cell, the seed of least exact loss, with the variables the figure's panels read."""
    best = runs.expected_loss.argmin("seed").transpose(*dims)
    W = runs.W.isel(seed=best).transpose(*dims, "hidden", "feature")
    groups = config.grid.unit_groups
    values = W.values
    out = xr.Dataset(
        {
            "loss": (dims, runs.expected_loss.isel(seed=best).transpose(*dims).values),
            "seed": (dims, runs.seed.values[best.values]),
            "norm": (dims + ("feature",), metrics.feature_norms(values)),
            "represented": (dims, metrics.represented(values, SEARCH_REPRESENTED)),
            "superposition": (dims + ("feature",), metrics.superposition(values)),
            "dimensions_per_feature": (dims, metrics.dimensions_per_feature(values)),
        },
        coords={d: theory_coords for d, theory_coords in runs.coords.items() if d in dims or d == "density"},
        attrs={"represented_above": SEARCH_REPRESENTED},
    )
    for name, (extra, array, attrs) in metrics.group_variables(values, groups).items():
        out[name] = (dims + extra, array, attrs)
    return out


def compare(config: TrainConfig, theory: xr.Dataset, runs: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    """The comparison Dataset, and the best trained models' variables (for the figure)."""
    dims = theory.optimal_loss.dims
    trained = best_trained(config, runs, dims)
    out = xr.Dataset(
        {
            "theory_loss": theory.optimal_loss,
            "trained_loss": trained.loss,
            "best_seed": trained.seed,
            "ratio": (trained.loss / theory.optimal_loss).where(theory.optimal_loss > ZERO_LOSS),
            "excess": trained.loss - theory.optimal_loss,
            "monte_carlo_z": theory.monte_carlo_z,
        },
        attrs={"config": json.dumps(config.to_dict()), "unit_groups": theory.attrs["unit_groups"]},
    )
    out["ratio"].attrs["description"] = (
        f"best seed's exact loss / theory's optimum (exact); NaN below {ZERO_LOSS}"
    )
    out["excess"].attrs["description"] = "best seed's exact loss - theory's optimum"
    for name in COLUMNS:
        out[f"theory_{name}"] = panel_values(theory, name)
        out[f"trained_{name}"] = panel_values(trained, name)
    return out, trained


def table(name: str, ds: xr.Dataset, axis: str) -> list[str]:
    header = " | ".join(f"{label} (trained / theory)" for label in COLUMNS.values())
    lines = [
        f"### {name}",
        "",
        f"| {axis} | p | density | theory loss | trained - theory | trained / theory | {header} |",
        "|---|---|---|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for label in ds[axis].values:
        for p in ds.p.values:
            for s in ds.sparsity.values:
                c = ds.sel({axis: label, "p": p, "sparsity": s})
                values = " | ".join(
                    f"{number(c[f'trained_{k}'], k)} / {number(c[f'theory_{k}'], k)}" for k in COLUMNS
                )
                lines.append(
                    f"| {label:g} | {p:g} | {float(c.density):.3g} | {float(c.theory_loss):.5f} | "
                    f"{float(c.excess):.1e} | {float(c.ratio):.4f} | {values} |"
                )
    return lines + [""]


def number(value, column: str) -> str:
    return f"{float(value):.0f}" if column == "represented" else f"{float(value):.2f}"


def mean_over_cells(ds: xr.Dataset, variable: str, p: float) -> float:
    """A variable's mean over the densities and importance profiles at one p (NaN cells left out)."""
    return float(ds[variable].sel(p=p).mean())


def trend(ds: xr.Dataset, variable: str, ps) -> str:
    """'a -> b -> c (lower at every p > 0 than at p = 0)': the means at each p, and the direction."""
    values = [mean_over_cells(ds, variable, p) for p in ps]
    text = " -> ".join(f"{v:.2f}" for v in values)
    if ps[0] != 0:
        return text
    below = [v < values[0] for v in values[1:]]
    if all(below) or not any(below):
        return f"{text} ({'lower' if all(below) else 'not lower'} at every p > 0 than at p = 0)"
    return f"{text} (lower than at p = 0 at some p > 0, not at others)"


def answers(comparisons: dict[str, xr.Dataset]) -> list[str]:
    """The report's statements, each from the comparisons' numbers (means over densities and importance
    profiles, at p = 0, then each p > 0)."""
    lines = ["## What the numbers say", ""]
    for name, ds in comparisons.items():
        ps = list(ds.p.values)
        dropout = [p for p in ps if p > 0]
        z = float(np.abs(ds.monte_carlo_z).max())
        lines += [
            f"**{name}** ({group_label(ds)}), p = {', '.join(f'{p:g}' for p in ps)}:",
            "",
            f"- best trained seed / theory's optimum: {float(ds.ratio.min()):.4f} to "
            f"{float(ds.ratio.max()):.4f} "
            f"(below 1: training found a lower minimum than the search); theory's optima against Monte "
            f"Carlo: largest |z| {z:.2f}",
        ]
        for kind in ("theory", "trained"):
            lines += [
                f"- {kind}: superposition per represented feature {trend(ds, f'{kind}_superposition', ps)}; "
                f"features per unit {trend(ds, f'{kind}_layer', ps)}; groups per represented feature at "
                f"p > 0 {trend(ds, f'{kind}_groups', dropout)} (at p = 0 every rotation is optimal: how "
                f"features spread there is arbitrary); features per unit in the busiest group at p > 0 "
                f"{trend(ds, f'{kind}_busiest', dropout)}",
            ]
        lines.append("")
    return lines


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "groups")
    parser.add_argument(
        "--configs", type=Path, nargs="+", default=sorted((ROOT / "configs" / "groups").glob("*.toml"))
    )
    parser.add_argument("--starts", type=int, default=8, help="random starts per cell of the direct diagram")
    args = parser.parse_args()
    comparisons = {}
    report = ["# Dropout in parallel: units dropped one by one and in groups", ""]
    for path in args.configs:
        config = TrainConfig.from_toml(path)
        name = path.stem
        folder = args.out / name
        print(f"{name}: theory", flush=True)
        theory = theory_for(config, folder / "theory.nc", args.starts)
        print(f"{name}: training", flush=True)
        runs = load(sweep.sweep(config, folder / "runs.nc"))
        ds, trained = compare(config, theory, runs)
        save_dataset(ds, folder / "comparison.nc")
        figure = plot_direct_diagram(theory, folder / "comparison.png", trained=trained)
        print(f"wrote {folder / 'comparison.nc'} and {figure}", flush=True)
        comparisons[name] = ds
        axis = config.grid.importance_axis
        report += table(name, ds, axis)
    report[2:2] = answers(comparisons)
    out = save_text("\n".join(report), args.out / "report.md")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
