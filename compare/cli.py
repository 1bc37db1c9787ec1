"""`tms-dropout compare ...`: trained models against theory."""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.group()
def group():
    """Hold trained models against theory's geometries and phase diagrams."""


@group.command("phases")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="netCDF to write."
)
@click.option(
    "--runs",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The sweep's results (trained, or read if already there). Default: OUT with -runs.nc.",
)
@click.option("--device", default=None, help="Override the config's device (auto, cpu, cuda).")
def phases_command(config: Path, out: Path, runs: Path | None, device: str | None):
    """Empirical against analytic phase diagram over CONFIG's (density, r) grid, one panel per p.

    Writes OUT (the Dataset), OUT.png (maps), OUT-edge.png (where superposition
    starts at r = 1, against p) and OUT.md (the summary table).
    """
    from sim.config import TrainConfig

    start = time.perf_counter()
    cfg = TrainConfig.from_toml(config)  # config errors before torch and sympy are imported
    from compare.phases import compare_phases, summary_markdown
    from compare.plots import plot_edge, plot_phase_maps
    from sim.results import save

    runs = runs or out.with_name(out.stem + "-runs.nc")
    ds = compare_phases(cfg, runs, device=device, log=lambda m: click.echo(m, err=True))
    save(ds, out)
    maps = plot_phase_maps(ds, out.with_suffix(".png"))
    edge = plot_edge(ds, out.with_name(out.stem + "-edge.png"))
    table = summary_markdown(ds)
    out.with_suffix(".md").write_text(
        f"# {cfg.n_features} features in {cfg.n_hidden} dim(s): empirical against analytic phases\n\n"
        f"Config: `{config}`; runs: `{runs}`; {ds.seed.size} seeds, {cfg.steps} steps.\n\n" + table
    )
    click.echo(table)
    click.echo(
        f"wrote {out}, {maps}, {edge}, {out.with_suffix('.md')} in {time.perf_counter() - start:.0f} s"
    )
