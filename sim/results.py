"""Training runs as xarray Datasets, saved as netCDF with their config and code version."""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import xarray as xr

from sim.config import TrainConfig
from theory import InputError, metrics
from theory.storage import save_dataset

RUN_KIND = "tms-dropout train run"
LOSS_NOTE = (
    "sum over features, importance-weighted (docs/model.md, the loss L); "
    "the TMS notebook's number is this / n_features"
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


def sweep_dataset(
    config: TrainConfig,
    device: str,
    *,
    W: np.ndarray,
    b: np.ndarray,
    loss_history: np.ndarray,
    log_steps: np.ndarray,
    sampled: tuple[np.ndarray, np.ndarray, int],
    expected: tuple[np.ndarray, np.ndarray, bool],
) -> xr.Dataset:
    """One Dataset for a sweep: arrays over the config's cells (in cell order) put on its grid dims.

    Dims: seed, then the grid's (theory.grid.Grid.dims: p, [r | importance_decay],
    sparsity, with density a coordinate on sparsity), then hidden, feature, step.
    Metrics are computed here, from the stored W.
    """
    axes = config.axes
    dims = tuple(axes)
    shape = tuple(len(v) for v in axes.values())
    n, m = config.n_features, config.n_hidden
    W = np.asarray(W).reshape(shape + (m, n))
    loss_attrs = {"convention": LOSS_NOTE}
    with_dropout = "with dropout (the training objective)"
    importance_axis = config.importance_axis
    labels = axes.get(importance_axis, [None])
    importance = np.array([config.grid.importance_for(label) for label in labels])
    ds = xr.Dataset(
        {
            "W": (dims + ("hidden", "feature"), W),
            "b": (dims + ("feature",), np.asarray(b).reshape(shape + (n,))),
            "loss_history": (
                dims + ("step",),
                np.asarray(loss_history).reshape(shape + (-1,)),
                {**loss_attrs, "description": f"training batch loss, {with_dropout}"},
            ),
            "sampled_loss": (
                dims,
                np.asarray(sampled[0]).reshape(shape),
                {**loss_attrs, "description": f"loss on {sampled[2]} fresh samples, {with_dropout}"},
            ),
            "sampled_loss_stderr": (dims, np.asarray(sampled[1]).reshape(shape), loss_attrs),
            "feature_norm": (dims + ("feature",), metrics.feature_norms(W)),
            "superposition": (dims + ("feature",), metrics.superposition(W)),
            "feature_dimensionality": (dims + ("feature",), metrics.feature_dimensionality(W)),
            "dimensions_per_feature": (dims, metrics.dimensions_per_feature(W)),
            "neuron_alignment": (dims + ("feature",), metrics.neuron_alignment(W)),
            "importance": (
                ((importance_axis,) if importance_axis else ()) + ("feature",),
                importance if importance_axis else importance[0],
            ),
        },
        coords={
            "seed": axes["seed"],
            **config.grid.coords(),
            "hidden": np.arange(m),
            "feature": np.arange(n),
            "step": np.asarray(log_steps),
        },
        attrs={
            "kind": RUN_KIND,
            "config": json.dumps(config.to_dict()),
            "code_version": code_version(),
            "device": str(device).split(":")[0],  # the device type: cpu, cuda
            "exact_loss": int(expected[2]),
        },
    )
    if config.dropout_groups is not None:
        groups = np.array(config.dropout_groups)
        for name, (extra, values, attrs) in metrics.group_variables(W, groups).items():
            ds[name] = (dims + extra, values, attrs)
        ds = ds.assign_coords(group=np.arange(groups.max() + 1))
    lower, upper = (np.asarray(v).reshape(shape) for v in expected[:2])
    if expected[2]:
        ds["expected_loss"] = (
            dims,
            lower,
            {**loss_attrs, "description": f"theory.expected_loss, {with_dropout}"},
        )
    else:
        bracket = f"bracket on theory's expected loss {with_dropout}, from active sets of few features"
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
    if importance_axis == "r":
        ds["r"].attrs["description"] = "importance of the last feature; the others' is 1"
    elif importance_axis == "importance_decay":
        ds["importance_decay"].attrs["description"] = "importance_i = importance_decay**i"
    return ds


def save(ds: xr.Dataset, path: str | Path) -> Path:
    """Write atomically: a reader never sees a half-written file."""
    return save_dataset(ds, path)


class DamagedFile(InputError):
    """A results file that exists but cannot be read (truncated, overwritten, not netCDF)."""


def load_kind(path: str | Path, kind: str, what: str, description: str) -> xr.Dataset:
    """Read a netCDF Dataset whose attrs say `kind`; missing, corrupt or foreign: an InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} file {path} does not exist")
    try:
        ds = xr.load_dataset(path)
    except Exception as err:  # netCDF4/h5py raise many types for a damaged file
        raise DamagedFile(
            f"{what} file {path} is not a readable netCDF file ({type(err).__name__})"
        ) from None
    if ds.attrs.get("kind") != kind:
        raise InputError(f"{what} file {path} is not a {description} (kind = {ds.attrs.get('kind')!r})")
    return ds


def load(path: str | Path) -> xr.Dataset:
    """Read a run written by save(); a missing, corrupt or foreign file is an InputError."""
    ds = load_kind(path, RUN_KIND, "results", "tms-dropout training run")
    try:
        config_of(ds)
    except (KeyError, ValueError, TypeError) as err:
        raise InputError(f"results file {path} has a missing or invalid config: {err}") from None
    return ds


def config_of(ds: xr.Dataset) -> TrainConfig:
    """The TrainConfig a run was made from."""
    return TrainConfig.from_dict(json.loads(ds.attrs["config"]))
