"""`tms-dropout sim ...`: train models from a config, plot a run."""

from __future__ import annotations

from pathlib import Path

import click

from sim.config import TrainConfig
from sim.plots import plot_run
from sim.results import load, run_dataset, save
from sim.trainer import train


@click.group()
def group():
    """Train the toy models and draw them."""


@group.command("train")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="netCDF file to write."
)
@click.option("--device", default=None, help="Override the config's device (auto, cpu, cuda).")
def train_command(config: Path, out: Path, device: str | None):
    """Train one model per (seed, p, sparsity) of CONFIG and save them with metrics and losses."""
    cfg = TrainConfig.from_toml(config)
    results = {}
    for seed in cfg.seeds:
        click.echo(f"seed {seed}: {len(cfg.p) * len(cfg.sparsity)} instances, {cfg.steps} steps", err=True)
        results[seed] = train(
            cfg.setups(),
            steps=cfg.steps,
            batch=cfg.batch,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            seed=seed,
            device=device or cfg.device,
            log_every=cfg.log_every,
        )
        click.echo(f"  trained in {results[seed].seconds:.1f} s on {results[seed].device}", err=True)
    ds = run_dataset(cfg, results)
    save(ds, out)
    click.echo(f"wrote {out}")


@group.command("plot")
@click.argument("run", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PNG to write (default: RUN with .png).",
)
@click.option("--seed", type=int, default=None, help="Which seed to draw (default: the first).")
def plot_command(run: Path, out: Path | None, seed: int | None):
    """Feature embeddings (2 hidden dims) or norms and W^T W of a run."""
    ds = load(run)
    written = plot_run(ds, out or run.with_suffix(".png"), seed=seed)
    click.echo(f"wrote {written}")
