"""Training runs as xarray Datasets, saved as netCDF with their config and code version."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
import xarray as xr

from sim import metrics
from sim.config import TrainConfig
from sim.trainer import TrainResult, sampled_loss
from theory import InputError

RUN_KIND = "tms-dropout train run"
LOSS_NOTE = (
    "sum over features, importance-weighted (DESIGN.md L); the TMS notebook's number is this / n_features"
)


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5, check=True
    ).stdout.strip()


def code_version() -> str:
    """Package version, plus the git commit (and '+dirty') when run from a checkout."""
    try:
        version = metadata.version("tms-dropout")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        commit = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version} ({commit}{'+dirty' if dirty else ''})"


def run_dataset(config: TrainConfig, results: dict[int, TrainResult], sampled_n: int = 200_000) -> xr.Dataset:
    """One Dataset for a config trained once per seed: dims seed, p, sparsity, hidden, feature, step."""
    seeds = list(config.seeds)
    shape = (len(seeds), len(config.p), len(config.sparsity))
    n, m = config.n_features, config.n_hidden

    W = np.stack([results[s].W for s in seeds]).reshape(shape + (m, n))
    b = np.stack([results[s].b for s in seeds]).reshape(shape + (n,))
    history = np.stack([results[s].loss_history for s in seeds]).reshape(shape + (-1,))
    exact = [results[s].expected_losses() for s in seeds]
    sampled = [
        sampled_loss(results[s].setups, results[s].W, results[s].b, n_samples=sampled_n, seed=1_000_003 + s)
        for s in seeds
    ]
    dims = ("seed", "p", "sparsity")
    loss_attrs = {"convention": LOSS_NOTE}
    ds = xr.Dataset(
        {
            "W": (dims + ("hidden", "feature"), W),
            "b": (dims + ("feature",), b),
            "loss_history": (
                dims + ("step",),
                history,
                {"convention": LOSS_NOTE, "description": "training batch loss, with dropout"},
            ),
            "sampled_loss": (
                dims,
                np.stack([s_[0] for s_ in sampled]).reshape(shape),
                {**loss_attrs, "description": f"loss on {sampled_n} fresh samples, with dropout"},
            ),
            "sampled_loss_stderr": (dims, np.stack([s_[1] for s_ in sampled]).reshape(shape), loss_attrs),
            "feature_norm": (dims + ("feature",), metrics.feature_norms(W)),
            "superposition": (dims + ("feature",), metrics.superposition(W)),
            "feature_dimensionality": (dims + ("feature",), metrics.feature_dimensionality(W)),
            "dimensions_per_feature": (dims, metrics.dimensions_per_feature(W)),
            "importance": (("feature",), np.asarray(config.importance)),
            "train_seconds": (("seed",), np.array([results[s].seconds for s in seeds])),
        },
        coords={
            "seed": seeds,
            "p": list(config.p),
            "sparsity": list(config.sparsity),
            "hidden": np.arange(m),
            "feature": np.arange(n),
            "step": results[seeds[0]].log_steps,
        },
        attrs={
            "kind": RUN_KIND,
            "config": json.dumps(config.to_dict()),
            "code_version": code_version(),
            "device": results[seeds[0]].device,
            "exact_loss": int(exact[0].exact),
        },
    )
    lower = np.stack([e.lower for e in exact]).reshape(shape)
    if exact[0].exact:
        ds["expected_loss"] = (
            dims,
            lower,
            {**loss_attrs, "description": "theory.expected_loss, with dropout"},
        )
    else:
        upper = np.stack([e.upper for e in exact]).reshape(shape)
        bracket = "bracket on theory's expected loss with dropout, from active sets of few features"
        ds["expected_loss_lower"] = (
            dims,
            lower,
            {**loss_attrs, "description": f"lower end of the {bracket}"},
        )
        ds["expected_loss_upper"] = (
            dims,
            upper,
            {**loss_attrs, "description": f"upper end of the {bracket}"},
        )
    ds["sparsity"].attrs["description"] = "probability that a feature is zero (density = 1 - sparsity)"
    ds["p"].attrs["description"] = "dropout rate on the hidden layer"
    return ds


def save(ds: xr.Dataset, path: str | Path) -> Path:
    """Write atomically: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        ds.to_netcdf(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load(path: str | Path) -> xr.Dataset:
    """Read a run written by save(); a missing, corrupt or foreign file is an InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"results file {path} does not exist")
    try:
        ds = xr.load_dataset(path)
    except Exception as err:  # netCDF4/h5py raise many types for a damaged file
        raise InputError(
            f"results file {path} is not a readable netCDF file ({type(err).__name__})"
        ) from None
    if ds.attrs.get("kind") != RUN_KIND:
        raise InputError(
            f"results file {path} is not a tms-dropout training run (kind = {ds.attrs.get('kind')!r})"
        )
    try:
        config_of(ds)
    except (KeyError, ValueError, TypeError) as err:
        raise InputError(f"results file {path} has a missing or invalid config: {err}") from None
    return ds


def config_of(ds: xr.Dataset) -> TrainConfig:
    """The TrainConfig a run was made from."""
    return TrainConfig.from_dict(json.loads(ds.attrs["config"]))
