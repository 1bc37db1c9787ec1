"""Sweeps of the series model (a config with a [series] table): what sim.sweep trains per chunk and the
Dataset it writes, with the series metrics.

A chunk holds every cell's parameters, training loss history, its loss by Monte Carlo
(theory.series.monte_carlo_series_loss, with dropout: the training objective) and its exact loss over
the samples of at most one active feature (theory.series.leading_order_loss; NaN where it has too
many masks to enumerate). The Dataset adds, from the stored parameters (evaluation mode: every block
kept): what each block writes into each feature's readout and how many blocks write it, the share of
the blocks' benefit to each feature lost when one block fails and restored by one block alone, and
the superposition inside each block (its units' reads of the embedding, as TMS's W).
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from sim.series import series_init, train_series
from theory.errors import InputError
from theory.series import (
    SeriesModel,
    ablations,
    block_superposition,
    block_writes,
    blocks_writing,
    leading_order_loss,
    monte_carlo_series_loss,
)

#: The parameters' dims after the cell's.
PARAM_DIMS = {
    "E": ("stream", "feature"),
    "R": ("block", "unit", "stream"),
    "c": ("block", "unit"),
    "U": ("block", "stream", "unit"),
    "O": ("feature", "stream"),
    "b": ("feature",),
}
#: Samples of the input law behind each model's ablations.
ABLATION_SAMPLES = 1 << 16


def initial_params(config, cells, seed_of) -> dict[str, np.ndarray]:
    """Each cell's starting parameters from its own generator, seeded by (seed, the cell's index within
    its seed), so a chunk's numbers do not depend on how the cells are packed."""
    per_seed = config.n_cells // len(config.seeds)
    all_cells = config.cells()
    parts = []
    for cell in cells:
        setup = config.series_setup(all_cells[cell])
        seed = seed_of(config.seeds[cell // per_seed], cell % per_seed)
        parts.append(series_init([setup], seed))
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def leading_order_or_nan(setup, model) -> float:
    try:
        return leading_order_loss(setup, model)
    except InputError:  # too many masks to enumerate
        return float("nan")


def train_chunk(plan_, cells, data_seed: int, sample_seed: int, samples: int, seed_of, on_steps=None):
    """One chunk's series models trained, with their losses: variables on a flat `cell` dim."""
    config = plan_.config
    all_cells = config.cells()
    setups = [config.series_setup(all_cells[c]) for c in cells]
    result = train_series(
        setups,
        steps=config.steps,
        batch=config.batch,
        lr=config.lr,
        weight_decay=config.weight_decay,
        seed=data_seed,
        log_every=config.log_every,
        init=initial_params(config, cells, seed_of),
        progress=False,
        on_steps=on_steps,
        backend=plan_.backend,
    )
    models = [result.model(i) for i in range(len(setups))]
    sampled = [
        monte_carlo_series_loss(setup, model, n_samples=samples, seed=sample_seed + row)
        for row, (setup, model) in enumerate(zip(setups, models, strict=True))
    ]
    variables = {name: (("cell", *PARAM_DIMS[name]), value) for name, value in result.params.items()}
    variables.update(
        loss_history=(("cell", "step"), result.loss_history),
        sampled_loss=("cell", np.array([s.mean for s in sampled])),
        sampled_loss_stderr=("cell", np.array([s.stderr for s in sampled])),
        leading_order_loss=(
            "cell",
            np.array([leading_order_or_nan(s, m) for s, m in zip(setups, models, strict=True)]),
        ),
    )
    coords = {"cell": np.asarray(cells), "step": result.log_steps}
    return xr.Dataset(variables, coords=coords), result.seconds


#: The metrics' descriptions (with_metrics adds them to a Dataset).
METRICS = {
    "block_writes": "what block l writes into feature i's readout when i alone is active, mean over v",
    "blocks_writing": "participation ratio of |block_writes| over blocks: how many blocks write the feature "
    "(1: one; L: all equally)",
    "lost_alone": "share of the blocks' benefit to the feature lost when this block alone is removed",
    "restored_alone": "share of the blocks' benefit to the feature this block restores as the only one kept",
    "lost_alone_total": "share of the blocks' benefit, summed over features, lost when this block alone is "
    "removed (1/L when the blocks split the work and add up; near 0 when the others make up for it)",
    "restored_alone_total": "share of the blocks' benefit, summed over features, this block restores alone",
    "blocks_benefit": "what the blocks remove of the loss without them, sum_i (none - full) / sum_i none",
    "eval_loss": f"each feature's loss without dropout ({ABLATION_SAMPLES} samples)",
    "eval_loss_no_blocks": "each feature's loss without dropout and without any block",
    "features_read": "features the block reads of the embedding (R_l E, scaled to its longest column; a "
    "column longer than 0.5)",
    "features_per_unit": "the features the block reads effectively (participation ratio of R_l E's squared "
    "column norms) per unit: above 1, superposition inside the block",
    "block_superposition": "each feature's superposition in the block's scaled reads (TMS's measure)",
}


def with_metrics(config, ds: xr.Dataset) -> xr.Dataset:
    """ds (a series sweep's Dataset, on the grid's dims) with the metrics computed from its stored
    parameters, replacing any it had: evaluation mode, every block kept."""
    dims = tuple(config.axes)
    shape = tuple(len(v) for v in config.axes.values())
    setups = [config.series_setup(cell) for cell in config.cells()]
    params = {name: ds[name].transpose(*dims, *PARAM_DIMS[name]).values for name in PARAM_DIMS}
    flat = {name: value.reshape(-1, *value.shape[len(dims) :]) for name, value in params.items()}
    models = [SeriesModel.of(s, **{k: v[i] for k, v in flat.items()}) for i, s in enumerate(setups)]
    pairs = list(zip(setups, models, strict=True))
    writes = np.array([block_writes(s, m) for s, m in pairs])  # (cells, L, n)
    found = [ablations(s, m, ABLATION_SAMPLES, seed=i) for i, (s, m) in enumerate(pairs)]
    inside = [block_superposition(m) for m in models]
    values = {
        "block_writes": (("block", "feature"), writes),
        "blocks_writing": (("feature",), blocks_writing(writes)),
        "lost_alone": (("block", "feature"), [f.lost_alone for f in found]),
        "restored_alone": (("block", "feature"), [f.restored_alone for f in found]),
        "lost_alone_total": (("block",), [f.lost_alone_total for f in found]),
        "restored_alone_total": (("block",), [f.restored_alone_total for f in found]),
        "blocks_benefit": ((), [f.benefit for f in found]),
        "eval_loss": (("feature",), [f.full for f in found]),
        "eval_loss_no_blocks": (("feature",), [f.none for f in found]),
        "features_read": (("block",), [x["features_read"] for x in inside]),
        "features_per_unit": (("block",), [x["features_per_unit"] for x in inside]),
        "block_superposition": (("block", "feature"), [x["superposition"] for x in inside]),
    }
    out = ds.copy()
    for name, (extra, array) in values.items():
        array = np.asarray(array)
        out[name] = (dims + extra, array.reshape(shape + array.shape[1:]), {"description": METRICS[name]})
    return out


def dataset(config, device: str, flat: xr.Dataset, samples: int, attrs: dict) -> xr.Dataset:
    """The sweep's Dataset: the chunks' variables on the grid's dims, and the series metrics."""
    dims = tuple(config.axes)
    shape = tuple(len(v) for v in config.axes.values())

    def grid(name, extra=()):
        values = flat[name].values
        return (dims + tuple(extra), values.reshape(shape + values.shape[1:]))

    loss = "sum over features, importance-weighted"
    ds = xr.Dataset(
        {
            **{name: grid(name, PARAM_DIMS[name]) for name in PARAM_DIMS},
            "loss_history": grid("loss_history", ["step"]),
            "sampled_loss": grid("sampled_loss"),
            "sampled_loss_stderr": grid("sampled_loss_stderr"),
            "leading_order_loss": grid("leading_order_loss"),
        },
        coords={
            **config.axes,
            **config.grid.coords(),
            "feature": np.arange(config.n_features),
            "step": flat.step.values,
        },  # fmt: skip
        attrs={**attrs, "config": json.dumps(config.to_dict()), "device": str(device).split(":")[0]},
    )
    ds["loss_history"].attrs["description"] = f"training batch loss ({loss}), with dropout"
    ds["sampled_loss"].attrs["description"] = (
        f"loss on {samples} fresh samples ({loss}), with dropout: the training objective"
    )
    ds["leading_order_loss"].attrs["description"] = (
        "exact loss over the samples of at most one active feature, with dropout "
        "(theory.series.leading_order_loss; NaN: too many masks to enumerate)"
    )
    return with_metrics(config, ds)
