"""`tms-dropout sim ...`: sweep a config's grid (resumable, shardable), merge shards, plot a run."""

from __future__ import annotations

import json
from pathlib import Path

import click

from theory.errors import InputError


@click.group()
def group():
    """Train the toy models and draw them."""


def _shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        i, n = (int(v) for v in value.split("/"))
    except ValueError:
        raise InputError(f"--shard {value!r} must look like i/N, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise InputError(f"--shard {value}: need 0 <= i < N")
    return i, n


_out = click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="netCDF file to write."
)
_device = click.option("--device", default=None, help="Override the config's device (auto, cpu, cuda).")


@group.command("sweep")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@_out
@_device
@click.option("--shard", default=None, help="i/N: train only chunks i, i+N, ...; join with `sim merge`.")
def sweep_command(config: Path, out: Path, device: str | None, shard: str | None):
    """Train one model per cell of CONFIG's grid and save them with metrics and losses.

    Finished chunks are kept in OUT.chunks/ until OUT is written: the same
    command, run again after an interruption, picks up where it stopped.
    """
    from sim.config import TrainConfig

    config = TrainConfig.from_toml(config)  # config errors before torch is imported
    from sim import sweep as sweeps

    sweeps.sweep(
        config,
        out,
        device=device,
        shard=_shard(shard),
        log=lambda m: click.echo(m, err=True),
    )


@group.command("train")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@_out
@_device
@click.pass_context
def train_command(ctx, config: Path, out: Path, device: str | None):
    """Same as `sim sweep` (kept for the README's first command)."""
    ctx.invoke(sweep_command, config=config, out=out, device=device, shard=None)


@group.command("merge")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@_out
@click.argument("folders", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
def merge_command(config: Path, out: Path, folders: tuple[Path, ...]):
    """Join the chunks of CONFIG's sharded sweep (OUT.chunks/ and any FOLDERS) into OUT."""
    from sim.config import TrainConfig

    config = TrainConfig.from_toml(config)
    from sim import sweep as sweeps

    sweeps.merge(config, out, folders=folders, log=lambda m: click.echo(m, err=True))


@group.command("submit")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@_out
@_device
@click.option("--shards", type=click.IntRange(min=1), required=True, help="Number of array tasks.")
@click.option(
    "--cluster",
    type=click.Choice(["auto", "slurm", "local"]),
    default="auto",
    help="submitit's executor: auto = SLURM when there is one, else local processes.",
)
@click.option("--partition", default=None, help="SLURM partition.")
@click.option("--timeout-min", type=int, default=240, show_default=True, help="Per-shard time limit.")
@click.option("--gpus", type=int, default=0, show_default=True, help="GPUs per shard.")
def submit_command(config, out, device, shards, cluster, partition, timeout_min, gpus):
    """Run CONFIG's sweep as a job array of SHARDS shards with submitit, wait, then merge."""
    from sim.submit import submit

    submit(
        config,
        out,
        shards=shards,
        device=device,
        cluster=cluster,
        partition=partition,
        timeout_min=timeout_min,
        gpus=gpus,
        log=lambda m: click.echo(m, err=True),
    )


@group.command("plot")
@click.argument("run", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PNG to write (default: RUN with .png).",
)
@click.option(
    "--seed", type=int, default=None, help="Which seed to draw (default: every seed; W^T W plots: the first)."
)
@click.option(
    "--importance", type=float, default=None, help="Which r or importance_decay (default: the first)."
)
def plot_command(run: Path, out: Path | None, seed: int | None, importance: float | None):
    """Feature embeddings (2 hidden dims) or norms and W^T W of a run."""
    if not run.exists():  # before xarray and matplotlib are imported
        raise InputError(f"results file {run} does not exist")
    from sim.plots import plot_run
    from sim.results import load

    ds = load(run)
    if "series" in json.loads(ds.attrs["config"]):
        raise InputError(
            f"{run} is a run of the series model; `sim plot` draws TMS runs (scripts/series.py draws these)"
        )
    written = plot_run(ds, out or run.with_suffix(".png"), seed=seed, importance=importance)
    click.echo(f"wrote {written}")
