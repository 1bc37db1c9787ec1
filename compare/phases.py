"""Empirical phase diagrams (trained models, classified) against the analytic ones, cell by cell.

compare_phases(config) trains (or reads) the config's sweep, classifies every
trained model (compare.classify), computes theory's phase diagram on the same
grid, and returns one Dataset over (p, r, density) and seed:

- the empirical optimum: the lowest exact loss over seeds, its label;
- single runs: each seed's label; the majority label and its fraction;
- the analytic phase and optimum loss; agreement of each empirical label;
- the loss gap (trained exact loss - analytic optimum) / analytic optimum;
- near_boundary: cells within one grid step of an analytic boundary;
- the superposition edge per (p, r): the largest density at which the label
  represents more features than there are neurons, analytic and per seed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import xarray as xr

from compare.classify import UNCLASSIFIED, classify
from sim.config import TrainConfig
from sim.results import load, load_kind
from sim.sweep import initial_weights, sweep
from theory import InputError, Setup
from theory.geometries import catalogue
from theory.phase import phase_diagram

KIND = "tms-dropout phase comparison"


def check_config(config: TrainConfig) -> None:
    """The comparison needs the analytic diagram's grid: importance (1, ..., 1, r) with an r axis."""
    if config.importance_axis != "r":
        raise InputError(
            "compare phases needs a grid over r (the last feature's relative importance): add grid.r"
        )
    if any(v != 1.0 for v in config.importance):
        raise InputError(
            f"compare phases needs model.importance all ones (theory's diagram uses (1, ..., 1, r)); "
            f"got {list(config.importance)}"
        )
    catalogue(config.n_features, config.n_hidden)  # an InputError for a shape with no catalogue


def superposed(names, n_hidden: int, n_features: int) -> np.ndarray:
    """For each label: does it represent more features than there are neurons?"""
    geometries = {g.name: g for g in catalogue(n_features, n_hidden)}
    return np.array([name in geometries and geometries[name].represented > n_hidden for name in names])


def _near_boundary(phase: np.ndarray) -> np.ndarray:
    """(..., r, density) phase -> cells with a different phase among their 8 neighbours."""
    near = np.zeros(phase.shape, dtype=bool)
    padded = np.pad(phase, [(0, 0)] * (phase.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    rows, cols = phase.shape[-2:]
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            shifted = padded[..., 1 + dr : 1 + dr + rows, 1 + dc : 1 + dc + cols]
            near |= shifted != phase
    return near


def _edge(is_superposed: np.ndarray, density: np.ndarray) -> np.ndarray:
    """(..., density) booleans -> the largest density with superposition (NaN if none)."""
    values = np.where(is_superposed, density, -np.inf).max(-1)
    return np.where(np.isfinite(values), values, np.nan)


def _classify_many(job):
    """(labels, confidences, bias sharing) of many models: one worker's share of the grid."""
    n, m, setups, W, b = job
    labels, confidence, sharing = [], np.empty(len(setups)), np.empty((len(setups), n), dtype=bool)
    for c, (sparsity, r, p) in enumerate(setups):
        setup = Setup(n, m, sparsity=sparsity, importance=(1.0,) * (n - 1) + (r,), p=p)
        result = classify(setup, W[c], b[c])
        labels.append(result.label)
        confidence[c] = result.confidence
        sharing[c] = [f.bias_sharing for f in result.features]
    return labels, confidence, sharing


def compare_phases(
    config: TrainConfig, runs: Path, device: str | None = None, log=print, progress: bool | None = None
) -> xr.Dataset:
    """Train (or read) the sweep at `runs`, classify it, and hold it against theory's diagram."""
    check_config(config)
    n, m = config.n_features, config.n_hidden
    sweep(config, runs, device=device, progress=progress, log=log)
    trained = load(runs).transpose("seed", "p", "r", "sparsity", "hidden", "feature", "step")
    if "expected_loss" not in trained:
        raise InputError(f"{runs} has no exact expected loss (n_features = {n} > 8)")
    density = 1.0 - trained.sparsity.values
    order = np.argsort(density)
    density = density[order]
    trained = trained.isel(sparsity=order)
    ps, rs, seeds = trained.p.values, trained.r.values, trained.seed.values
    shape = (len(seeds), len(ps), len(rs), len(density))

    log(f"analytic phase diagram: {len(ps)} p x {len(rs)} r x {len(density)} densities")
    analytic = phase_diagram(n, m, density, rs, ps).transpose("p", "r", "density", ...)
    geometry_names = [str(g) for g in analytic.geometry.values]
    labels = geometry_names + [UNCLASSIFIED]
    index = {name: i for i, name in enumerate(labels)}

    W = trained.W.values
    b = trained.b.values
    # Each model's starting W (sim.sweep.initial_weights is deterministic per cell): evidence for
    # local minima, e.g. 2 features in 1 dim started with both weights of one sign.
    order_in_sweep = np.arange(config.n_cells).reshape(len(seeds), len(ps), len(rs), len(config.sparsity))[
        ..., order
    ]
    init_W = initial_weights(config, order_in_sweep.ravel()).reshape(shape + (m, n))
    log(f"classifying {int(np.prod(shape))} trained models")
    setups = [
        (float(1 - density[i]), float(rs[j]), float(ps[k]))
        for s, k, j, i in np.ndindex(*shape)  # C order, as W and b reshape below
    ]
    tasks = np.array_split(np.arange(len(setups)), max(1, min(len(setups) // 200, 64)))
    flat_W, flat_b = W.reshape(-1, m, n), b.reshape(-1, n)
    jobs = [(n, m, [setups[c] for c in cells], flat_W[cells], flat_b[cells]) for cells in tasks]
    workers = max(1, min(os.cpu_count() or 1, len(jobs)))
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = list(pool.map(_classify_many, jobs))
    else:
        parts = [_classify_many(job) for job in jobs]
    label = np.concatenate([np.array([index[name] for name in p[0]], dtype=np.int64) for p in parts]).reshape(
        shape
    )
    confidence = np.concatenate([p[1] for p in parts]).reshape(shape)
    bias_sharing = np.concatenate([p[2] for p in parts]).reshape(shape + (n,))
    loss = trained.expected_loss.values  # (seed, p, r, density)
    best_seed = np.argmin(loss, axis=0)
    empirical = np.take_along_axis(label, best_seed[None], 0)[0]
    best_loss = np.take_along_axis(loss, best_seed[None], 0)[0]
    counts = np.stack([(label == i).sum(0) for i in range(len(labels))], -1)
    majority = counts.argmax(-1)
    majority_fraction = counts.max(-1) / len(seeds)
    phase = analytic.phase.values
    optimum = analytic.optimal_loss.values
    near = _near_boundary(phase)
    is_sup = superposed(labels, m, n)
    ds = xr.Dataset(
        {
            "analytic_phase": (("p", "r", "density"), phase, {"description": "index into label"}),
            "analytic_loss": (("p", "r", "density"), optimum, {"description": "theory's optimal loss"}),
            "analytic_margin": (("p", "r", "density"), analytic.margin.values),
            "near_boundary": (
                ("p", "r", "density"),
                near,
                {"description": "an analytic boundary within one grid step (8 neighbours)"},
            ),
            "seed_label": (("seed", "p", "r", "density"), label, {"description": "index into label"}),
            "seed_confidence": (("seed", "p", "r", "density"), confidence),
            "seed_loss": (
                ("seed", "p", "r", "density"),
                loss,
                {"description": "exact loss of the trained model"},
            ),
            "seed_loss_gap": (
                ("seed", "p", "r", "density"),
                (loss - optimum[None]) / optimum[None],
                {"description": "(trained exact loss - analytic optimum) / analytic optimum"},
            ),
            "seed_bias_sharing": (("seed", "p", "r", "density", "feature"), bias_sharing),
            "seed_init_W": (
                ("seed", "p", "r", "density", "hidden", "feature"),
                init_W,
                {"description": "each model's initial W (sim.sweep.initial_weights)"},
            ),
            "empirical_phase": (
                ("p", "r", "density"),
                empirical,
                {"description": "label of the lowest-loss model over seeds (index into label)"},
            ),
            "empirical_seed": (("p", "r", "density"), seeds[best_seed]),
            "loss_gap": (
                ("p", "r", "density"),
                (best_loss - optimum) / optimum,
                {"description": "(lowest trained exact loss - analytic optimum) / analytic optimum"},
            ),
            "majority_phase": (
                ("p", "r", "density"),
                majority,
                {"description": "most common single-run label"},
            ),
            "majority_fraction": (("p", "r", "density"), majority_fraction),
            "agree_empirical": (("p", "r", "density"), empirical == phase),
            "agree_majority": (("p", "r", "density"), majority == phase),
            "single_run_agreement": (
                ("p", "r", "density"),
                (label == phase[None]).mean(0),
                {"description": "fraction of seeds whose label is the analytic phase"},
            ),
            "edge_analytic": (
                ("p", "r"),
                _edge(is_sup[phase], density),
                {"description": "largest density at which the analytic optimum superposes (NaN: none)"},
            ),
            "edge_empirical": (("p", "r"), _edge(is_sup[empirical], density)),
            "edge_seed": (("seed", "p", "r"), _edge(is_sup[label], density)),
        },
        coords={
            "seed": seeds,
            "p": ps,
            "r": rs,
            "density": density,
            "hidden": np.arange(m),
            "feature": np.arange(n),
            "label": labels,
        },
        attrs={
            "kind": KIND,
            "config": json.dumps(config.to_dict()),
            "n_features": n,
            "n_hidden": m,
            "code_version": trained.attrs.get("code_version", "unknown"),
            "runs": str(runs),
            "superposed_labels": json.dumps([name for name, s in zip(labels, is_sup, strict=True) if s]),
        },
    )
    return ds


def summary(ds: xr.Dataset) -> list[dict]:
    """Per p: agreement over all cells and away from boundaries, single-run misses, loss gaps."""
    rows = []
    for p in ds.p.values:
        cell = ds.sel(p=p)
        away = ~cell.near_boundary.values
        gap = cell.loss_gap.values
        single = (cell.seed_label.values == cell.analytic_phase.values[None]).astype(float)
        rows.append(
            {
                "p": float(p),
                "cells": int(away.size),
                "away": int(away.sum()),
                "agree_all": float(cell.agree_empirical.values.mean()),
                "agree_away": float(cell.agree_empirical.values[away].mean()) if away.any() else np.nan,
                "majority_away": float(cell.agree_majority.values[away].mean()) if away.any() else np.nan,
                "single_run_miss_away": float(1 - single[:, away].mean()) if away.any() else np.nan,
                "gap_within_2pct_away": float((gap[away] <= 0.02).mean()) if away.any() else np.nan,
                "median_gap_away": float(np.median(gap[away])) if away.any() else np.nan,
                "max_gap_away": float(gap[away].max()) if away.any() else np.nan,
            }
        )
    return rows


def summary_markdown(ds: xr.Dataset) -> str:
    head = (
        "| p | cells | away from boundary | empirical agrees (all) | empirical agrees (away) | "
        "majority agrees (away) | single runs missing (away) | loss gap <= 2% (away) | "
        "median gap (away) | max gap (away) |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['p']:g} | {r['cells']} | {r['away']} | {r['agree_all']:.1%} | {r['agree_away']:.1%} | "
        f"{r['majority_away']:.1%} | {r['single_run_miss_away']:.1%} | {r['gap_within_2pct_away']:.1%} | "
        f"{r['median_gap_away']:.2%} | {r['max_gap_away']:.2%} |"
        for r in summary(ds)
    ]
    return head + "\n".join(lines) + "\n"


def load_comparison(path: str | Path) -> xr.Dataset:
    """Read a comparison written by `compare phases`; missing, corrupt or foreign: an InputError."""
    return load_kind(path, KIND, "comparison", "tms-dropout phase comparison")
