"""A sweep's shards as a SLURM job array, through submitit (the optional `slurm` extra).

With no SLURM at hand (or cluster="local") submitit runs the same array as
local processes. Each array task is `sim.sweep.sweep(..., shard=(i, N))`;
when all are done the chunks are merged. submitit's logs go to
OUT.chunks/submitit/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sim import sweep as sweeps
from sim.config import TrainConfig
from theory import InputError


def _run_shard(config_path: str, out: str, shard: tuple[int, int], device: str | None) -> str:
    sweeps.sweep(TrainConfig.from_toml(config_path), out, device=device, shard=shard, progress=False)
    return f"shard {shard[0]}/{shard[1]} done"


def submit(
    config_path: str | Path,
    out: str | Path,
    *,
    shards: int,
    device: str | None = None,
    cluster: str = "auto",
    partition: str | None = None,
    timeout_min: int = 240,
    gpus: int = 0,
    log=print,
) -> Path:
    """Submit the shards, wait for them, merge; returns OUT."""
    try:
        import submitit
    except ImportError:
        raise InputError(
            "`sim submit` needs submitit: pip install 'tms-dropout[slurm]' (or run --shard i/N yourself)"
        ) from None
    config_path, out = Path(config_path).resolve(), Path(out).resolve()
    config = TrainConfig.from_toml(config_path)  # bad configs fail here, not in N jobs
    if sweeps.existing_result(out, config):
        log(f"{out} already holds this sweep; nothing to do")
        return out
    folder = sweeps.chunk_folder(out) / "submitit"
    if cluster == "auto":
        cluster = "slurm" if shutil.which("sbatch") else "local"
    name = f"tms-sweep-{out.stem}"
    if cluster == "slurm":
        executor = submitit.SlurmExecutor(folder=folder)
        params = dict(time=timeout_min, job_name=name, array_parallelism=shards)
        if gpus:
            params["gpus_per_node"] = gpus
        if partition:
            params["partition"] = partition
    else:
        executor = submitit.LocalExecutor(folder=folder)
        params = dict(timeout_min=timeout_min)
    executor.update_parameters(**params)
    jobs = executor.map_array(
        _run_shard,
        [str(config_path)] * shards,
        [str(out)] * shards,
        [(i, shards) for i in range(shards)],
        [device] * shards,
    )
    log(f"submitted {shards} shards to {cluster} (job {jobs[0].job_id.split('_')[0]}); waiting")
    for job in jobs:
        log(job.result())
    return sweeps.merge(config, out, log=log)
