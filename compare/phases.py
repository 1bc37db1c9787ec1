"""Empirical phase diagrams (trained models, classified) against the analytic ones, cell by cell.

compare_phases(config) trains (or reads) the config's sweep, classifies every
trained model (compare.classify), computes theory's phase diagram on the same
grid (theory.phase_diagram on the config's theory.Grid), and returns one
Dataset over the grid's dims (p, importance axis, sparsity; density a
coordinate) and seed. The importance axis is the config's: r (importance
(1, ..., 1, r)) or importance_decay (importance_i = d**i; one value gives a
(density, p) diagram, as for 5 features in 2 dims). The candidates are
theory.catalogue's named geometries, and the classifier uses the same ones.

- the empirical optimum: the lowest exact loss over seeds, its label;
- single runs: each seed's label; the majority label and its fraction;
- the analytic phase and optimum loss; agreement of each empirical label;
- the loss gap (trained exact loss - analytic optimum) / analytic optimum;
- near_boundary: cells within one grid step of an analytic boundary;
- the superposition edge per (p, importance): the largest density at which the
  label represents more features than there are neurons, analytic and per seed;
- polygons' vertex orders (analytic and per seed), counter-clockwise;
- shapes (structure()): labels that name one shape count as one, e.g. a square
  is two antipodal pairs, its diagonals; agreement is reported on both.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from compare.classification import UNCLASSIFIED, classify
from sim.config import TrainConfig
from sim.results import load, load_kind
from sim.sweep import initial_weights, sweep
from theory import InputError
from theory.blocks import Antipodal, Dedicated, Parallel
from theory.candidates import NAMED, catalogue
from theory.diagram import phase_diagram
from theory.geometries import Geometry
from theory.metrics import polygon_name, superposition_onset
from theory.progress import Progress

KIND = "tms-dropout phase comparison"


def check_config(config: TrainConfig) -> str:
    """The comparison needs an importance axis theory can follow; returns its name."""
    if config.series is not None:
        raise InputError("compare phases classifies TMS models; a [series] config trains the series model")
    axis = config.importance_axis
    if axis is None:
        raise InputError(
            "compare phases needs an importance axis: grid.r (the last feature's relative importance) or "
            "grid.importance_decay (one value, e.g. [0.9], for a (density, p) diagram)"
        )
    if (config.n_features, config.n_hidden) not in NAMED:
        raise InputError(
            f"compare phases classifies trained models into named geometries: no catalogue for "
            f"n_features = {config.n_features}, n_hidden = {config.n_hidden} (only "
            f"{', '.join(f'{n} in {m}' for n, m in NAMED)})"
        )
    return axis


def superposed(names, n_hidden: int, n_features: int) -> np.ndarray:
    """For each label: does it represent more features than there are neurons?"""
    geometries = {g.name: g for g in catalogue(n_features, n_hidden)}
    return np.array([name in geometries and geometries[name].represented > n_hidden for name in names])


def structure(geometry: Geometry | None, vertices) -> str:
    """The shape a label and its vertex order describe, named so that equal shapes get equal names.

    A square is two antipodal pairs (its diagonals, read from the vertex order), in
    any rotation: "square, ignore 4" in order 0 1 3 2 and "antipodal 0 3 and 1 2,
    ignore 4" are both "antipodal 0 3 and 1 2". Free vertices (and free angles)
    keep the regular polygon's shape name: the same features around the plane. None
    (unclassified) gives "unclassified".
    """
    if geometry is None:
        return UNCLASSIFIED
    vertices = [int(v) for v in vertices if v >= 0]
    pairs, parts, offset = [], [], 0
    for block in geometry.blocks:
        kind = block.type
        if kind.polygon:
            order = vertices[offset : offset + len(block.features)]
            offset += len(block.features)
            if len(order) == 4:
                pairs += [tuple(sorted(order[0::2])), tuple(sorted(order[1::2]))]
            else:
                name = polygon_name(len(block.features))
                parts.append(f"{name} {' '.join(map(str, sorted(block.features)))}")
        elif isinstance(kind, Antipodal):
            pairs.append(tuple(sorted(block.features)))
        elif isinstance(kind, Dedicated):
            parts.append(f"dedicated {block.features[0]}")
        elif isinstance(kind, Parallel):
            parts.append(f"same-sign {block.features[0]} {block.features[1]}")
    if pairs:
        parts.insert(0, "antipodal " + " and ".join(f"{a} {b}" for a, b in sorted(pairs)))
    return ", ".join(parts) or "ignore all"


def shape_family(shape: str) -> str:
    """A structure() without which features: "antipodal 0 3 and 1 2" -> "2 antipodal pairs".

    Near-ties between pairings (theory's margins between them are 1e-6 to 1e-4
    relative at 5 in 2) make which features pair up a coin toss for training;
    the family is what is left to compare.
    """
    parts = []
    for part in shape.split(", "):
        if part.startswith("antipodal "):
            count = part.count(" and ") + 1
            parts.append(f"{count} antipodal pair{'s' if count > 1 else ''}")
        else:
            parts.append(re.sub(r"( \d+)+$", "", part))
    return ", ".join(f"{parts.count(x)} x {x}" if parts.count(x) > 1 else x for x in dict.fromkeys(parts))


def _structures(labels: list[str], geometries: dict, index: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """structure() of every cell: index (...) into labels, vertices (..., n)."""
    out = np.empty(index.shape, dtype=object)
    for cell in np.ndindex(*index.shape):
        out[cell] = structure(geometries.get(labels[index[cell]]), vertices[cell])
    return out.astype(str)


def near_boundary(phase: np.ndarray) -> np.ndarray:
    """(..., r, density) phase -> cells with a different phase among their 8 neighbours."""
    near = np.zeros(phase.shape, dtype=bool)
    padded = np.pad(phase, [(0, 0)] * (phase.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    rows, cols = phase.shape[-2:]
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            shifted = padded[..., 1 + dr : 1 + dr + rows, 1 + dc : 1 + dc + cols]
            near |= shifted != phase
    return near


def _classify_many(job):
    """(labels, confidences, bias sharing, vertex orders) of many models: one worker's share of the grid."""
    n, m, setups, W, b = job
    geometries = catalogue(n, m)
    labels, confidence, sharing = [], np.empty(len(setups)), np.empty((len(setups), n), dtype=bool)
    vertices = np.full((len(setups), n), -1)
    for c, setup in enumerate(setups):
        result = classify(setup, W[c], b[c], geometries=geometries)
        labels.append(result.label)
        confidence[c] = result.confidence
        sharing[c] = [f.bias_sharing for f in result.features]
        vertices[c, : len(result.vertex_order)] = result.vertex_order
    return labels, confidence, sharing, vertices


@dataclass(frozen=True)
class GridLabels:
    """Every trained model's classification, over (seed, *grid dims)."""

    label: np.ndarray  # index into the labels
    confidence: np.ndarray
    bias_sharing: np.ndarray  # (..., feature)
    vertex_order: np.ndarray  # (..., vertex): polygon features counter-clockwise, -1: none


def classify_grid(config: TrainConfig, W: np.ndarray, b: np.ndarray, labels: list[str], progress=None):
    """compare.classify on every model of a sweep, W (seed, *grid, m, n), b (seed, *grid, n), in worker
    processes (spawned: torch and numba are not fork-safe) of about 200 models each."""
    grid, n, m = config.grid, config.n_features, config.n_hidden
    shape = W.shape[:-2]
    index = {name: i for i, name in enumerate(labels)}
    cells = grid.setups().reshape(shape[1:])
    setups = [cells[cell[1:]] for cell in np.ndindex(*shape)]  # C order, as W and b reshape
    tasks = np.array_split(np.arange(len(setups)), max(1, min(len(setups) // 200, 64)))
    flat_W, flat_b = W.reshape(-1, m, n), b.reshape(-1, n)
    jobs = [(n, m, [setups[c] for c in cells], flat_W[cells], flat_b[cells]) for cells in tasks]
    workers = max(1, min(os.cpu_count() or 1, len(jobs)))
    parts = []
    with Progress(len(setups), "classify", "model", show=progress) as bar, ExitStack() as stack:
        mapper = map
        if workers > 1:
            spawn = multiprocessing.get_context("spawn")
            mapper = stack.enter_context(ProcessPoolExecutor(workers, mp_context=spawn)).map
        for part in mapper(_classify_many, jobs):
            parts.append(part)
            bar.update(len(part[0]))
    return GridLabels(
        np.concatenate([[index[name] for name in part[0]] for part in parts]).astype(np.int64).reshape(shape),
        np.concatenate([part[1] for part in parts]).reshape(shape),
        np.concatenate([part[2] for part in parts]).reshape(shape + (n,)),
        np.concatenate([part[3] for part in parts]).reshape(shape + (n,)),
    )


def analytic_diagram(config: TrainConfig, progress=None) -> xr.Dataset:
    """Theory's optimum on the config's grid (theory.phase_diagram): the same dims as the sweep's."""
    return phase_diagram(config.grid, catalogue(config.n_features, config.n_hidden), progress=progress)


def compare_phases(
    config: TrainConfig, runs: Path, device: str | None = None, log=print, progress: bool | None = None
) -> xr.Dataset:
    """Train (or read) the sweep at `runs`, classify it, and hold it against theory's diagram."""
    axis = check_config(config)
    n, m = config.n_features, config.n_hidden
    sweep(config, runs, device=device, progress=progress, log=log)
    grid = config.grid
    trained = load(runs).transpose("seed", *grid.dims, "hidden", "feature", "step")
    if "expected_loss" not in trained:
        raise InputError(f"{runs} has no exact expected loss (n_features = {n} > 8)")
    density = grid.density
    ps, rs, seeds = trained.p.values, trained[axis].values, trained.seed.values
    shape = (len(seeds), len(ps), len(rs), len(density))

    log(f"analytic phase diagram: {len(ps)} p x {len(rs)} {axis} x {len(density)} densities")
    analytic = analytic_diagram(config, progress=progress)
    geometry_names = [str(g) for g in analytic.geometry.values]
    labels = geometry_names + [UNCLASSIFIED]

    # Each model's starting W (sim.sweep.initial_weights is deterministic per cell): evidence for
    # local minima, e.g. 2 features in 1 dim started with both weights of one sign.
    init_W = initial_weights(config, np.arange(config.n_cells)).reshape(shape + (m, n))
    log(f"classifying {int(np.prod(shape))} trained models")
    found = classify_grid(config, trained.W.values, trained.b.values, labels, progress)
    label, confidence, bias_sharing, vertex_order = (
        found.label,
        found.confidence,
        found.bias_sharing,
        found.vertex_order,
    )
    loss = trained.expected_loss.values  # (seed, p, r, density)
    best_seed = np.argmin(loss, axis=0)
    empirical = np.take_along_axis(label, best_seed[None], 0)[0]
    best_loss = np.take_along_axis(loss, best_seed[None], 0)[0]
    counts = np.stack([(label == i).sum(0) for i in range(len(labels))], -1)
    majority = counts.argmax(-1)
    majority_fraction = counts.max(-1) / len(seeds)
    phase = analytic.phase.values
    optimum = analytic.optimal_loss.values
    # Within one grid step of an analytic boundary: over (importance, density) per p, or over
    # (p, density) when there is a single importance value.
    by_density = np.argsort(density)
    ordered = phase[..., by_density]
    near = near_boundary(ordered) if len(rs) > 1 else near_boundary(ordered[:, 0, :])[:, None, :]
    near = near[..., np.argsort(by_density)]
    is_sup = superposed(labels, m, n)
    analytic_vertices = np.take_along_axis(analytic.vertex_order.values, phase[..., None, None], -2)[
        ..., 0, :
    ]
    by_name = {g.name: g for g in catalogue(n, m)}
    analytic_shape = _structures(labels, by_name, phase, analytic_vertices)
    seed_shape = _structures(labels, by_name, label, vertex_order)
    empirical_shape = np.take_along_axis(seed_shape, best_seed[None], 0)[0]
    family = np.vectorize(shape_family, otypes=[str])
    dims = grid.dims
    ds = xr.Dataset(
        {
            "analytic_phase": (dims, phase, {"description": "index into label"}),
            "analytic_loss": (dims, optimum, {"description": "theory's optimal loss"}),
            "analytic_margin": (dims, analytic.margin.values),
            "near_boundary": (
                dims,
                near,
                {
                    "description": "an analytic boundary within one grid step (8 neighbours over "
                    "(importance, density), or over (p, density) with one importance value)"
                },
            ),
            "seed_label": (("seed", *dims), label, {"description": "index into label"}),
            "seed_confidence": (("seed", *dims), confidence),
            "seed_loss": (
                ("seed", *dims),
                loss,
                {"description": "exact loss of the trained model"},
            ),
            "seed_loss_gap": (
                ("seed", *dims),
                (loss - optimum[None]) / optimum[None],
                {"description": "(trained exact loss - analytic optimum) / analytic optimum"},
            ),
            "seed_bias_sharing": (("seed", *dims, "feature"), bias_sharing),
            "seed_init_W": (
                ("seed", *dims, "hidden", "feature"),
                init_W,
                {"description": "each model's initial W (sim.sweep.initial_weights)"},
            ),
            "empirical_phase": (
                dims,
                empirical,
                {"description": "label of the lowest-loss model over seeds (index into label)"},
            ),
            "empirical_seed": (dims, seeds[best_seed]),
            "loss_gap": (
                dims,
                (best_loss - optimum) / optimum,
                {"description": "(lowest trained exact loss - analytic optimum) / analytic optimum"},
            ),
            "majority_phase": (
                dims,
                majority,
                {"description": "most common single-run label"},
            ),
            "majority_fraction": (dims, majority_fraction),
            "agree_empirical": (dims, empirical == phase),
            "agree_majority": (dims, majority == phase),
            "single_run_agreement": (
                dims,
                (label == phase[None]).mean(0),
                {"description": "fraction of seeds whose label is the analytic phase"},
            ),
            "analytic_structure": (
                dims,
                analytic_shape,
                {
                    "description": "the analytic phase's shape (compare.phases.structure: a square is two "
                    "antipodal pairs, free vertices or angles the regular shape)"
                },
            ),  # fmt: skip
            "seed_structure": (("seed", *dims), seed_shape),
            "agree_structure": (
                dims,
                empirical_shape == analytic_shape,
                {"description": "the lowest-loss model has the analytic phase's shape"},
            ),
            "agree_family": (
                dims,
                family(empirical_shape) == family(analytic_shape),
                {
                    "description": "the lowest-loss model's shape equals the analytic one up to which "
                    "features (compare.phases.shape_family)"
                },
            ),  # fmt: skip
            "single_run_structure_agreement": (
                dims,
                (seed_shape == analytic_shape[None]).mean(0),
                {"description": "fraction of seeds with the analytic phase's shape"},
            ),
            "edge_analytic": (
                ("p", axis),
                superposition_onset(density, is_sup[phase]),
                {"description": "largest density at which the analytic optimum superposes (NaN: none)"},
            ),
            "edge_empirical": (("p", axis), superposition_onset(density, is_sup[empirical])),
            "edge_seed": (("seed", "p", axis), superposition_onset(density, is_sup[label])),
            "analytic_vertex_order": (
                (*dims, "vertex"),
                analytic_vertices,
                {"description": "the analytic phase's polygon features counter-clockwise (-1: none)"},
            ),
            "seed_vertex_order": (
                ("seed", *dims, "vertex"),
                vertex_order,
                {"description": "each trained model's polygon features counter-clockwise (-1: none)"},
            ),
        },
        coords={
            "seed": seeds,
            **grid.coords(),
            "hidden": np.arange(m),
            "feature": np.arange(n),
            "vertex": np.arange(n),
            "label": labels,
        },
        attrs={
            "kind": KIND,
            "config": json.dumps(config.to_dict()),
            "n_features": n,
            "n_hidden": m,
            "importance_axis": axis,
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
                "structure_all": float(cell.agree_structure.values.mean()),
                "structure_away": float(cell.agree_structure.values[away].mean()) if away.any() else np.nan,
                "family_away": float(cell.agree_family.values[away].mean()) if away.any() else np.nan,
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
        "majority agrees (away) | same shape (all) | same shape (away) | same shape, any features (away) | "
        "single runs missing (away) | "
        "loss gap <= 2% (away) | median gap (away) | max gap (away) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['p']:g} | {r['cells']} | {r['away']} | {r['agree_all']:.1%} | {r['agree_away']:.1%} | "
        f"{r['majority_away']:.1%} | {r['structure_all']:.1%} | {r['structure_away']:.1%} | "
        f"{r['family_away']:.1%} | "
        f"{r['single_run_miss_away']:.1%} | {r['gap_within_2pct_away']:.1%} | "
        f"{r['median_gap_away']:.2%} | {r['max_gap_away']:.2%} |"
        for r in summary(ds)
    ]
    return head + "\n".join(lines) + "\n"


def load_comparison(path: str | Path) -> xr.Dataset:
    """Read a comparison written by `compare phases`; missing, corrupt or foreign: an InputError."""
    return load_kind(path, KIND, "comparison", "tms-dropout phase comparison")
