"""Trained 20-in-5 models against the composite theory, by loss, cell by cell.

    python scripts/twenty_in_five.py [--out runs/twenty_in_five] [--config configs/study/twenty_in_five.toml]
                                     [--samples 4000000] [--structure] [--free K] [--bracket K]
                                     [--completeness D [--completeness-dropout D]] [--linear] [--summary]

Trains (or resumes) the config's sweep (the study's: the TMS sparsity
schedule, p = 0, 0.15, 0.4, importance 0.7**i, 0.9**i and 1, 3 seeds),
computes theory's phase diagram on the same grid (composites of blocks on
disjoint neurons, `theory.composite`, and its search over all of W and b on
a fixed sample, taken as the optimum where it beats the family:
`theory.diagram.search_optimum`), and puts them side by side:

- the best trained model per cell: the seed of least stored sampled loss,
  then re-scored on --samples fresh samples with another random stream (the
  minimum over seeds of noisy estimates is biased low; the re-score is not),
  with its standard error: 4e6 samples resolve about 0.1-0.2% of the loss;
- theory's optimum (its W, b) scored on the same samples, and the ratio
  trained / theory with its 2-standard-error range (of the trained loss); a
  ratio below 0.995 whose range stays below 1 is a cell where training
  beats theory's optimum; the same ratio against the family alone (exact:
  the sum of its blocks' exact losses), below 0.995 where the family is
  missing a geometry;
- what the two optima look like: features represented (||W_i|| > 0.5),
  the mean over them of the neurons each uses (participation ratio of its
  column's squared entries; a composite block uses 1 or 2), the features
  whose columns overlap another's (|cos| > 0.1), and the mean bias of the
  represented features; and theory's composite, or the search where it won.

With --completeness, theory's diagram also gets its completeness check
(theory.diagram.completeness: the least loss over all of W and b, searched
on the exact loss truncated to few active features, bracketed rigorously)
at the sparse cells, and OUT/completeness.md puts each minimum (re-scored
on the trained models' stream too) beside the best trained model and the
family, with its tegum factors.

With --linear, every cell also gets the optimum of the model where no ReLU
clips (theory.linear_regime: its loss in closed form, an upper bound on the
ReLU model's, minimised over all of W), scored on the trained models'
samples beside the family's: at density one it is the trained optimum.

Where theory's search is the optimum, theory.tail_offset.search_structures
fits the structure of a free head (the features the search represents) and
every other feature along one direction, from the search's end point and on
its samples: OUT/head_and_tail.nc and OUT/head_and_tail.md (per cell the
structure's loss over the search's, with a norm per tail feature and with
one norm, and the search's hidden offset). A ratio of 1 where that offset is
not near zero says the search's optimum has that shape. Where that head has
one feature per unit, its symmetric form is fitted too (theory.tilted_frame:
the head's columns at one angle about the tail's direction), from the
search's end point and from random starts: its loss over the search's, its
tilt and the cosine between head columns.

Writes OUT/comparison.nc (every number above per cell, with the config),
OUT/comparison.md (the table) and OUT/comparison.png (ratio against
density per p, one panel per importance profile). Also (alone with
--structure) what each cell's best trained model is: OUT/structure.md, its
tegum factors (theory.metrics.tegum_factors: groups of overlapping features,
orthogonal to each other, each named from its Gram matrix, with the
dimensions it spans and how many neurons that span is spread over) and
biases, and OUT/structure_<importance>.png, its W at three densities and
every p.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from compare.plots import plot_loss_ratios, profile  # noqa: E402
from sim import sweep  # noqa: E402
from sim.config import TrainConfig  # noqa: E402
from sim.results import load  # noqa: E402
from sim.trainer import sampled_loss  # noqa: E402
from theory import Setup, metrics, minimize_loss  # noqa: E402
from theory.candidates import catalogue  # noqa: E402
from theory.compiled_loss import expected_loss_bounds_compiled  # noqa: E402
from theory.composite import ignore_loss  # noqa: E402
from theory.diagram import completeness, phase_diagram  # noqa: E402
from theory.linear_regime import linear_optimum  # noqa: E402
from theory.phase_plots import importance_axis  # noqa: E402
from theory.storage import save_dataset, save_text  # noqa: E402
from theory.tail_offset import TAILS, search_structures  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REPRESENTED = 0.5  # a feature is represented when ||W_i|| exceeds this
OVERLAP = 0.1  # two represented columns overlap when |cos| exceeds this
RESCORE_SEED = 12345  # the re-score's random streams (not the sweep's)
BEATS = 0.995  # training beats the family below this ratio (and with its range below 1)
COMPLETENESS_STARTS = 8  # random starts per cell at p = 0 (under dropout: warm starts only)


def describe(W: np.ndarray, b: np.ndarray, density) -> dict:
    """What one model (m, n) looks like, its features at `density` (n,) or one value: the represented
    features' count, spread over neurons, overlaps, mean cosine and bias, and the offset the other
    features make in the hidden layer at their mean inputs (theory.metrics.hidden_offset: its norm, the
    mean cosine of their columns, and the mean fraction of a represented feature's mean input it removes
    before the dropout mask)."""
    norms = metrics.feature_norms(W)
    shown = norms > REPRESENTED
    unit = W[:, shown] / norms[shown]
    k = int(shown.sum())
    signed = unit.T @ unit - np.eye(k)
    offset = metrics.hidden_offset(W, density, REPRESENTED)
    return {
        "represented": k,
        "neurons_per_feature": float(metrics.neurons_per_feature(W)[shown].mean()) if k else np.nan,
        "overlapping": int((np.abs(signed) > OVERLAP).any(axis=1).sum()),
        "mean_cosine": float(signed.sum() / (k * (k - 1))) if k > 1 else np.nan,
        "bias": float(b[shown].mean()) if k else np.nan,
        "offset_norm": offset.offset_norm,
        "tail_cosine": offset.tail_cosine,
        "centred": float(offset.centred[shown].mean()) if k else np.nan,
    }


def add_looks(ds: xr.Dataset, name: str, W: np.ndarray, b: np.ndarray, setups) -> None:
    """`describe` of every cell's model, W (cells, m, n) and b (cells, n) in ds's cell order with their
    setups, as variables name_<key> of ds."""
    dims, shape = ds.ratio.dims, ds.ratio.shape
    looks = [describe(w, v, setup.density) for w, v, setup in zip(W, b, setups, strict=True)]
    for key in looks[0]:
        ds[f"{name}_{key}"] = (dims, np.array([x[key] for x in looks]).reshape(shape))


def compare(config: TrainConfig, runs: xr.Dataset, theory: xr.Dataset, samples: int) -> xr.Dataset:
    dims = theory.optimal_loss.dims  # p, importance_decay, sparsity
    best_seed = runs.sampled_loss.fillna(np.inf).argmin("seed")
    W = runs.W.isel(seed=best_seed).transpose(*dims, "hidden", "feature").values
    b = runs.b.isel(seed=best_seed).transpose(*dims, "feature").values
    setups = list(config.grid.setups().reshape(-1))
    flat_W, flat_b = W.reshape(-1, *W.shape[-2:]), b.reshape(-1, b.shape[-1])
    scored = sampled_loss(setups, flat_W, flat_b, n_samples=samples, seed=RESCORE_SEED, backend="auto")
    theory_W = theory.W.transpose(*dims, "hidden", "feature").values.reshape(flat_W.shape)
    theory_b = theory.b.transpose(*dims, "feature").values.reshape(flat_b.shape)
    # theory's optimum on the same stream: the ratio's sampling errors largely cancel
    rescored = sampled_loss(setups, theory_W, theory_b, n_samples=samples, seed=RESCORE_SEED, backend="auto")
    shape = theory.optimal_loss.shape
    trained, stderr = scored.mean.reshape(shape), scored.stderr.reshape(shape)
    optimum = rescored.mean.reshape(shape)
    family = (theory.family_loss if "family_loss" in theory else theory.optimal_loss).values
    wins = theory.search_wins.values if "search_wins" in theory else np.zeros(shape, dtype=bool)
    out = xr.Dataset(
        {
            "trained_loss": (dims, trained, {"description": f"best seed's loss on {samples} fresh samples"}),
            "trained_stderr": (dims, stderr),
            "best_seed": (dims, runs.seed.values[best_seed.transpose(*dims).values]),
            "theory_loss": (
                dims,
                optimum,
                {"description": "the diagram's optimum (W, b) on the trained models' samples (same stream)"},
            ),
            "theory_stated": (
                dims,
                theory.optimal_loss.values,
                {
                    "description": "the diagram's optimal_loss: the family's exact loss, or the search's own "
                    "Monte Carlo loss where search_wins"
                },
            ),  # fmt: skip
            "family_loss": (dims, family, {"description": "the composite family's optimum: exact"}),
            "search_wins": (dims, wins, {"description": "the diagram's optimum is its search's end point"}),
            "ratio": (dims, trained / optimum, {"description": "trained / theory"}),
            "ratio_low": (dims, (trained - 2 * stderr) / optimum),
            "ratio_high": (dims, (trained + 2 * stderr) / optimum),
            "family_ratio": (dims, trained / family, {"description": "trained / family"}),
            "theory_composite": (dims, theory.composite.values),
            "theory_represented": (dims, theory.represented.values),
        },
        coords={d: theory[d] for d in dims} | {"density": theory.density},
        attrs={
            "config": json.dumps(config.to_dict()),
            "samples": samples,
            "n_features": config.n_features,
            "n_hidden": config.n_hidden,
        },
    )
    add_looks(out, "trained", flat_W, flat_b, setups)
    add_looks(out, "theory", theory_W, theory_b, setups)
    out["beats_theory"] = (out.ratio < BEATS) & (out.ratio_high < 1)
    out["beats_family"] = (out.family_ratio < BEATS) & ((trained + 2 * stderr) / family < 1)
    return out


def table(ds: xr.Dataset) -> str:
    axis = importance_axis(ds.ratio)
    lines = [
        "| importance | p | density | trained | family | theory | trained/theory (2 se) | trained/family "
        "| represented (trained/theory) | neurons per feature (trained/theory) | theory's optimum |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p, a, _, c in cells(ds, axis):
        flag = " **beats**" if bool(c.beats_theory) else ""
        family_flag = " **beats**" if bool(c.beats_family) else ""
        found = "search over all of W, b" if bool(c.search_wins) else str(c.theory_composite.values)
        lines.append(
            f"| {profile(axis, a)} | {p:g} | {float(c.density):.3g} | {float(c.trained_loss):.5f} | "
            f"{float(c.family_loss):.5f} | {float(c.theory_loss):.5f} | {float(c.ratio):.4f} "
            f"({float(c.ratio_low):.4f}-{float(c.ratio_high):.4f}){flag} "
            f"| {float(c.family_ratio):.4f}{family_flag} "
            f"| {int(c.trained_represented)}/{int(c.theory_represented)} "
            f"| {float(c.trained_neurons_per_feature):.2f}/{float(c.theory_neurons_per_feature):.2f} "
            f"| {found} |"
        )
    return "\n".join(lines)


def cells(data: xr.Dataset, axis: str):
    """(p, importance value, sparsity, the cell's Dataset) for every cell, p outermost."""
    for p in data.p.values:
        for a in data[axis].values:
            for s in data.sparsity.values:
                yield p, a, s, data.sel(p=p, sparsity=s, **{axis: a})


def best_model(cell: xr.Dataset) -> tuple[np.ndarray, np.ndarray, float]:
    """W (hidden, feature), b and sampled loss of one cell's seed of least sampled loss."""
    best = int(cell.sampled_loss.fillna(np.inf).argmin("seed"))
    W = cell.W.isel(seed=best).transpose("hidden", "feature").values
    return W, cell.b.isel(seed=best).values, float(cell.sampled_loss[best])


LINEAR_STARTS = 3  # random starts per cell for the linear regime's optimum (besides the family's W)


def with_linear(ds: xr.Dataset, theory: xr.Dataset, config: TrainConfig, samples: int) -> xr.Dataset:
    """At every cell, the optimum of the model where no ReLU clips (theory.linear_regime: its loss in closed
    form, minimised over all of W, from the family's optimum and LINEAR_STARTS random starts), its closed
    form (an upper bound on the ReLU model's loss at that W, b), and its loss on the trained models'
    samples, with the ratio of the best trained model to it and to the better of it and the family."""
    dims = ds.ratio.dims
    setups = config.grid.setups()
    family_W = theory.W.transpose(*dims, "hidden", "feature").values
    shape = ds.ratio.shape
    W = np.zeros(family_W.shape)
    b = np.zeros(family_W.shape[:-2] + family_W.shape[-1:])
    bound, margin = np.zeros(shape), np.zeros(shape)
    for done, index in enumerate(np.ndindex(shape)):
        setup = setups[index]
        rng = np.random.default_rng(done)
        starts = [family_W[index]] + [rng.normal(0, 0.3, family_W[index].shape) for _ in range(LINEAR_STARTS)]
        best = linear_optimum(setup.importance, setup.n_hidden, float(setup.density[0]), setup.p, starts)
        W[index], b[index], bound[index], margin[index] = best.W, best.b, best.loss, best.clipping_margin
    flat_W, flat_b = W.reshape(-1, *W.shape[-2:]), b.reshape(-1, b.shape[-1])
    scored = sampled_loss(
        list(setups.reshape(-1)), flat_W, flat_b, n_samples=samples, seed=RESCORE_SEED, backend="auto"
    )
    linear = scored.mean.reshape(shape)
    ds["linear_bound"] = (
        dims,
        bound,
        {"description": "the linear regime's optimal loss: closed form, an upper bound"},
    )
    ds["linear_loss"] = (
        dims,
        linear,
        {"description": "its W, b on the trained models' samples (same stream)"},
    )
    ds["linear_margin"] = (dims, margin, {"description": "least output argument (>= 0: nothing clips)"})
    ds["linear_ratio"] = (dims, ds.trained_loss.values / linear, {"description": "trained / linear regime"})
    ds["best_ratio"] = (
        dims,
        ds.trained_loss.values / np.minimum(linear, ds.theory_loss.values),
        {"description": "trained / the better of theory's optimum and the linear regime's (same stream)"},
    )
    add_looks(ds, "linear", flat_W, flat_b, list(setups.reshape(-1)))
    ds["linear_W"] = (dims + ("hidden", "feature"), W, {"description": "the linear regime's optimal W"})
    ds["linear_b"] = (dims + ("feature",), b, {"description": "its bias b* = (1 - W^T W) mu"})
    return ds


def linear_summary(ds: xr.Dataset) -> str:
    """Per (p, importance profile): the least ratio trained / linear regime and trained / the better of the
    family and the linear regime, with their densities."""
    axis = importance_axis(ds.ratio)
    lines = []
    for p in ds.p.values:
        for a in ds[axis].values:
            c = ds.sel(p=p, **{axis: a})
            wins = int((c.linear_loss < c.theory_loss).sum())
            least, worst = int(np.argmin(c.best_ratio.values)), int(np.argmax(c.best_ratio.values))
            lines.append(
                f"- p = {p:g}, {profile(axis, a)}: the linear regime below theory's optimum in {wins} of "
                f"{c.ratio.size} cells; trained / the better of the two: least "
                f"{float(c.best_ratio[least]):.4f} "
                f"(density {float(c.density[least]):.3g}), greatest {float(c.best_ratio[worst]):.4f} "
                f"(density {float(c.density[worst]):.3g})"
            )
    return "\n".join(lines)


def exact_brackets(ds: xr.Dataset, config: TrainConfig, runs: xr.Dataset, k: int, densest: float = 0.1):
    """At every cell of density <= densest, the best trained model's loss over all its features truncated
    to at most k active (theory.compiled_loss.expected_loss_bounds_compiled) with its rigorous bracket:
    an independent check of the Monte Carlo re-score, tails included. About 7 s a cell at k = 5."""
    dims = ds.ratio.dims
    W = runs.W.sel(seed=ds.best_seed).transpose(*dims, "hidden", "feature").values
    b = runs.b.sel(seed=ds.best_seed).transpose(*dims, "feature").values
    lower, upper = np.full(ds.ratio.shape, np.nan), np.full(ds.ratio.shape, np.nan)
    setups = config.grid.setups()
    density = ds.density.broadcast_like(ds.ratio).values
    cells = [index for index in np.ndindex(ds.ratio.shape) if density[index] <= densest]
    for done, index in enumerate(cells):
        bounds = expected_loss_bounds_compiled(setups[index], W[index], b[index], k)
        lower[index], upper[index] = float(bounds.lower), float(bounds.upper)
        print(f"  bracket {done + 1}/{len(cells)}: [{lower[index]:.5f}, {upper[index]:.5f}]", flush=True)
    what = f"best trained model's exact loss over active sets of at most {k} features"
    ds["exact_lower"] = (dims, lower, {"description": what, "max_active": k})
    ds["exact_upper"] = (dims, upper, {"description": "its rigorous upper bound (theory.loss.bracket)"})
    return ds


def free_fits(ds: xr.Dataset, config: TrainConfig, k: int, starts: int = 8) -> xr.Dataset:
    """At every cell where training beats the family: the k most important features with all of W
    (m, k) and b free, minimised on the exact loss (theory.minimize_loss), the other n - k ignored
    (bias at the mean, theory.composite.ignore_loss): does a geometry of k features spread over
    every neuron account for the gap?"""
    m = config.grid.n_hidden
    loss = np.full(ds.ratio.shape, np.nan)
    setups = config.grid.setups()
    cells = list(zip(*np.nonzero(ds.beats_family.values), strict=True))
    for done, index in enumerate(cells):
        setup = setups[index]
        importance = np.asarray(setup.importance_array)
        head = Setup(k, m, sparsity=setup.sparsity[:k], importance=importance[:k], p=setup.p)
        tail = float((importance[k:] * ignore_loss(setup.density[k:])).sum())
        loss[index] = minimize_loss(head, n_starts=starts).loss + tail
        ratio = loss[index] / ds.trained_loss.values[index]
        print(f"  free fit {done + 1}/{len(cells)}: {ratio:.4f} of trained", flush=True)
    ds[f"free_{k}_loss"] = (
        ds.ratio.dims,
        loss,
        {"description": f"the {k} most important features, all of W and b free (exact loss), the rest "
         "ignored; only where training beats the family"},
    )  # fmt: skip
    ds[f"free_{k}_over_trained"] = ds[f"free_{k}_loss"] / ds.trained_loss
    return ds


def with_completeness(ds: xr.Dataset, theory: xr.Dataset, config: TrainConfig, samples: int) -> xr.Dataset:
    """The completeness search's minima (theory.diagram.completeness) beside the trained models: each
    re-scored on `samples` samples with the trained models' stream (the theory's own Monte Carlo used
    another), and the ratio trained / direct."""
    dims = ds.ratio.dims
    for name in ("direct_lower", "direct_upper", "direct_monte_carlo", "direct_monte_carlo_stderr"):
        ds[name] = theory[name].transpose(*dims)
    done = np.isfinite(ds.direct_upper.values)
    W = theory.direct_W.transpose(*dims, "hidden", "feature").values[done]
    b = theory.direct_b.transpose(*dims, "feature").values[done]
    setups = list(config.grid.setups()[done])
    scored = sampled_loss(setups, W, b, n_samples=samples, seed=RESCORE_SEED, backend="auto")
    direct, stderr = np.full(ds.ratio.shape, np.nan), np.full(ds.ratio.shape, np.nan)
    direct[done], stderr[done] = scored.mean, scored.stderr
    ds["direct_loss"] = (dims, direct, {"description": f"completeness minimum on {samples} fresh samples"})
    ds["direct_stderr"] = (dims, stderr)
    ds["trained_over_direct"] = ds.trained_loss / ds.direct_loss
    looks = [describe(w, v, setup.density) for w, v, setup in zip(W, b, setups, strict=True)]
    for key in ("represented", "neurons_per_feature", "bias", "offset_norm", "centred"):
        values = np.full(ds.ratio.shape, np.nan)
        values[done] = [x[key] for x in looks]
        ds[f"direct_{key}"] = (dims, values)
    return ds


def completeness_table(ds: xr.Dataset, theory: xr.Dataset) -> str:
    """Per cell searched: trained, the family, and the direct search's minimum (its rigorous bracket, both
    Monte Carlo scores, and its tegum factors from theory's direct_W), as a Markdown table."""
    axis = importance_axis(ds.ratio)
    lines = [
        "| importance | p | density | trained | family | direct: bracket | direct: Monte Carlo (theory; "
        "trained's stream) | trained / direct | family / direct | represented (trained/direct) | neurons "
        "per feature (trained/direct) | direct's factors (features; dims over neurons) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p, a, s, c in cells(ds, axis):
        if not np.isfinite(float(c.direct_upper)):
            continue
        direct = float(c.direct_loss)
        W = theory.direct_W.sel(p=p, sparsity=s, **{axis: a}).transpose("hidden", "feature").values
        factors = "; ".join(map(str, metrics.tegum_factors(W, REPRESENTED, OVERLAP)))
        lines.append(
            f"| {profile(axis, a)} | {p:g} | {float(c.density):.3g} | {float(c.trained_loss):.5f} "
            f"| {float(c.family_loss):.5f} | [{float(c.direct_lower):.5f}, {float(c.direct_upper):.5f}] "
            f"| {float(c.direct_monte_carlo):.5f}; {direct:.5f} +- {float(c.direct_stderr):.5f} "
            f"| {float(c.trained_over_direct):.4f} | {float(c.family_loss) / direct:.4f} "
            f"| {int(c.trained_represented)}/{int(c.direct_represented)} "
            f"| {float(c.trained_neurons_per_feature):.2f}/{float(c.direct_neurons_per_feature):.2f} "
            f"| {factors} |"
        )
    return "\n".join(lines)


def summary(ds: xr.Dataset) -> str:
    """Per (p, importance profile): cells where training beats the family, the least ratio and where,
    and cells where the best of the seeds stays above the family (ratio > 1.005 beyond 2 se)."""
    axis = importance_axis(ds.ratio)
    lines = []
    for p in ds.p.values:
        for a in ds[axis].values:
            c = ds.sel(p=p, **{axis: a})
            least = int(np.argmin(c.ratio.values))
            beats, above = int(c.beats_theory.sum()), int((c.ratio_low > 1.005).sum())
            ratio, density = c.ratio.values[least], float(c.density.values[least])
            lines.append(
                f"- p = {p:g}, {profile(axis, a)}: training beats theory's optimum in {beats} of "
                f"{c.ratio.size} cells, least ratio {ratio:.4f} (density {density:.3g}); above it in "
                f"{above}; the family alone is beaten in {int(c.beats_family.sum())}, least ratio "
                f"{float(c.family_ratio.min()):.3f}; the search is the optimum in {int(c.search_wins.sum())}"
            )
            if "exact_lower" in c and np.isfinite(c.exact_lower.values).any():
                low, high = c.trained_loss - 2 * c.trained_stderr, c.trained_loss + 2 * c.trained_stderr
                held = np.isfinite(c.exact_lower.values)
                inside = int(((high >= c.exact_lower) & (low <= c.exact_upper)).values[held].sum())
                width = float(((c.exact_upper - c.exact_lower) / c.exact_lower).values[held].max())
                lines.append(
                    f"  - exact bracket (k = {c.exact_lower.attrs['max_active']}) meets the re-scored loss "
                    f"(2 se) in {inside} of {int(held.sum())} sparse cells; widest {100 * width:.2f}%"
                )
            if "trained_over_direct" in c and np.isfinite(c.trained_over_direct.values).any():
                x = c.trained_over_direct.values
                lines.append(
                    "  - trained / completeness minimum (all of W, b on the truncated exact loss): "
                    + ", ".join(
                        f"{v:.4f} (density {d:.3g})"
                        for v, d in zip(x, c.density.values, strict=True)
                        if np.isfinite(v)
                    )
                )
            for name in [v for v in c.data_vars if v.startswith("free_") and v.endswith("_over_trained")]:
                x = c[name].values
                if np.isfinite(x).any():
                    k = name.split("_")[1]
                    lines.append(
                        f"  - {k} features over all neurons, the rest ignored / trained: "
                        + ", ".join(
                            f"{v:.4f} (density {d:.3g})"
                            for v, d in zip(x, c.density.values, strict=True)
                            if np.isfinite(v)
                        )
                    )
    return "\n".join(lines)


def factors_and_biases(W: np.ndarray, b: np.ndarray) -> str:
    """Three Markdown table cells for one model: its tegum factors (theory.metrics.tegum_factors), the
    mean bias of its represented features and of the rest."""
    shown = metrics.feature_norms(W) > REPRESENTED
    factors = "; ".join(map(str, metrics.tegum_factors(W, REPRESENTED, OVERLAP)))
    rest = f"{b[~shown].mean():.3f}" if (~shown).any() else "-"
    return f"{factors or 'none'} | {b[shown].mean() if shown.any() else np.nan:.3f} | {rest}"


def structure_table(runs: xr.Dataset) -> str:
    """Per cell, the best seed's tegum factors (theory.metrics.tegum_factors), the mean bias of its
    represented features and of the rest, as a Markdown table."""
    axis = importance_axis(runs.sampled_loss)
    lines = [
        "| importance | p | density | sampled loss | factors (features; dims over neurons) | bias of "
        "represented | bias of the rest |",
        "|---|---|---|---|---|---|---|",
    ]
    for p, a, s, cell in cells(runs, axis):
        W, b, loss = best_model(cell)
        row = f"| {profile(axis, a)} | {p:g} | {1 - s:.3g} | {loss:.5f} | {factors_and_biases(W, b)} |"
        lines.append(row)
    return "\n".join(lines)


def optimum_table(theory: xr.Dataset) -> str:
    """Per cell, theory's optimum (the family's, or its search's where that won): features represented,
    dimensions per feature, neurons per represented feature, the largest angle to a neuron, its tegum
    factors and the mean bias of its represented features and of the rest, as a Markdown table."""
    axis = importance_axis(theory.optimal_loss)
    wins = theory.search_wins if "search_wins" in theory else xr.zeros_like(theory.optimal_loss, dtype=bool)
    lines = [
        "| importance | p | density | loss | found by | represented | dimensions per feature | neurons per "
        "feature | largest angle to a neuron (deg) | factors (features; dims over neurons) | bias of "
        "represented | bias of the rest | hidden offset of the rest (norm; mean input removed) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p, a, s, cell in cells(theory, axis):
        W, b = cell.W.transpose("hidden", "feature").values, cell.b.values
        shown = metrics.feature_norms(W) > REPRESENTED
        spread = metrics.neurons_per_feature(W)[shown].mean() if shown.any() else np.nan
        angle = metrics.max_angle_to_neuron(W[:, shown]) if shown.any() else np.nan
        found = "search" if bool(wins.sel(p=p, sparsity=s, **{axis: a})) else "family"
        lines.append(
            f"| {profile(axis, a)} | {p:g} | {1 - s:.3g} | {float(cell.optimal_loss):.5f} | {found} "
            f"| {int(shown.sum())} | {float(cell.dimensions_per_feature):.3f} | {spread:.2f} "
            f"| {float(angle):.1f} | {factors_and_biases(W, b)} | {offset_cell(describe(W, b, 1 - s))} |"
        )
    return "\n".join(lines)


def head_and_tail_table(ds: xr.Dataset) -> str:
    """theory.tail_offset.search_structures' fits: one row per fitted cell (the search's loss, the
    structure's over it with each tail, the search's hidden offset; "quiet" below the Dataset's
    quiet_offset), and per p the greatest ratio where the tail does work."""
    quiet_offset = ds.attrs["quiet_offset"]
    axis = next(d for d in ds.search_loss.dims if d not in ("p", "sparsity"))
    lines = [
        "| p | importance | density | head | search | structure / search: a norm each; one norm (se of a "
        "score) | tilted frame / search (tilt, head cosine) | hidden offset |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = ds.stack(cell=ds.search_loss.dims).where(lambda d: d.head_size >= 0, drop=True)
    if not rows.cell.size:
        return "\n".join([*lines, "", "- no cell where the search is the optimum (or no search)"])
    for c in rows.cell:
        row = rows.sel(cell=c)
        ratios = (
            "; ".join(f"{float(row.ratio.sel(tail=t)):.4f}" for t in TAILS)
            + f" ({float(row.structure_stderr.max() / row.search_loss):.4f})"
        )
        quiet = " (quiet)" if float(row.offset_norm) < quiet_offset else ""
        frame = (
            f"{float(row.frame_ratio):.4f} ({float(row.frame_tilt):.3f}, {float(row.frame_head_cosine):.3f})"
            if np.isfinite(float(row.frame_ratio))
            else "-"
        )
        lines.append(
            f"| {float(row.p):g} | {profile(axis, row[axis].item())} | {float(row.density):.3g} "
            f"| {int(row.head_size)} | {float(row.search_loss):.5f} | {ratios} | {frame} "
            f"| {float(row.offset_norm):.3f}{quiet} |"
        )
    lines.append("")
    for p in np.unique(rows.p.values):
        at = rows.where((rows.p == p) & (rows.offset_norm >= quiet_offset), drop=True)
        if not at.cell.size:
            lines.append(f"- p = {p:g}: no fitted cell with a hidden offset of norm >= {quiet_offset}")
            continue
        worst = ", ".join(f"{t} {float(at.ratio.sel(tail=t).max()):.4f}" for t in TAILS)
        framed = at.where(at.frame_ratio.notnull(), drop=True)
        frame = (
            f"; the tilted frame at {framed.cell.size} of them, at most {float(framed.frame_ratio.max()):.4f}"
            if framed.cell.size
            else "; the tilted frame at none of them"
        )
        lines.append(
            f"- p = {p:g}: at the {at.cell.size} cells with a hidden offset of norm >= {quiet_offset}, "
            f"structure / search at most: {worst}{frame}"
        )
    return "\n".join(lines)


def offset_cell(look: dict) -> str:
    """A model's hidden offset (describe's offset_norm and centred) as one Markdown table cell."""
    if look["offset_norm"] == 0 or not look["represented"]:
        return "none"
    return f"{look['offset_norm']:.3f}; {look['centred']:.0%}"


def structure_figure(runs: xr.Dataset, path: Path, densities=(1.0, 0.264, 0.05)) -> None:
    """W of the best seed (neurons x represented features, grouped by factor) at a few densities (rows)
    and every p (columns), one figure per importance profile: path with the profile appended."""
    axis = importance_axis(runs.sampled_loss)
    for a in runs[axis].values:
        fig, axes = plt.subplots(
            len(densities),
            runs.p.size,
            figsize=(4.8 * runs.p.size + 1, 2.8 * len(densities)),
            squeeze=False,
            layout="constrained",
        )
        for row, density in enumerate(densities):
            for col, p in enumerate(runs.p.values):
                cell = runs.sel(p=p, **{axis: a}).sel(sparsity=1 - density, method="nearest")
                W = best_model(cell)[0]
                factors = metrics.tegum_factors(W, REPRESENTED, OVERLAP)
                order = [i for f in factors for i in f.features]
                ax = axes[row, col]
                image = ax.imshow(W[:, order], cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
                edge = -0.5
                for f in factors[:-1]:
                    edge += len(f.features)
                    ax.axvline(edge, color="k", lw=1.5)
                ax.set_xticks(range(len(order)), [str(i) for i in order], fontsize=8)
                ax.set_yticks(range(W.shape[0]))
                kinds = {}  # kind -> neurons of each factor of that kind
                for f in factors:
                    kinds.setdefault(f.kind, []).append(f"{f.neurons:.1f}")
                kinds = ", ".join(
                    f"{len(v)} x {k} ({'/'.join(v)} n)" if len(v) > 1 else f"{k} ({v[0]} n)"
                    for k, v in kinds.items()
                )
                ax.set_title(f"p = {p:g}, density {float(cell.density):.3g}\n{kinds}", fontsize=8, wrap=True)
                if col == 0:
                    ax.set_ylabel("neuron")
        fig.colorbar(image, ax=axes, shrink=0.6, label="W (neuron, feature)")
        fig.suptitle(
            f"20 in 5, {profile(axis, a)}: best trained W (columns: represented features by factor; "
            "n = neurons a factor's span is spread over)",
            fontsize=10,
        )
        fig.savefig(path.with_name(f"{path.stem}_{a:g}{path.suffix}"), dpi=110)
        plt.close(fig)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(ROOT / "configs" / "study" / "twenty_in_five.toml"))
    parser.add_argument("--out", default="runs/twenty_in_five")
    parser.add_argument("--samples", type=int, default=4_000_000)
    parser.add_argument(
        "--summary",
        action="store_true",
        help="only print the summary of an existing OUT/comparison.nc (and rewrite OUT/completeness.md)",
    )
    parser.add_argument(
        "--structure",
        action="store_true",
        help="only train (or resume) and write what the trained optima are: OUT/structure.md, "
        "OUT/structure_<importance>.png",
    )
    parser.add_argument(
        "--bracket",
        type=int,
        default=0,
        metavar="K",
        help="at density <= 0.1, also bracket each best model's loss over all 20 features rigorously on the "
        "exact loss truncated to at most K active (K = 5: about 7 s a cell)",
    )
    parser.add_argument(
        "--completeness",
        type=float,
        default=0.0,
        metavar="D",
        help="also search all of W, b on the truncated exact loss (theory.diagram.completeness) at p = 0 and "
        "density <= D (at most 0.1; about 30 s a cell), and write OUT/completeness.md",
    )
    parser.add_argument(
        "--completeness-dropout",
        type=float,
        default=None,
        metavar="D",
        help="the same under dropout, at density <= D [default: --completeness's D]; minutes a cell on 2 "
        "cores, from the family's optimum and the previous p's minimum only",
    )
    parser.add_argument(
        "--completeness-active",
        default="3,5,6",
        metavar="S,P,C",
        help="the completeness search's truncations: at most S active features to search on, P to polish on, "
        "C to bracket on [default: 3,5,6; 3,4,5 is about 5x faster under dropout]",
    )
    parser.add_argument(
        "--free",
        type=int,
        default=0,
        metavar="K",
        help="where training beats the family, also fit the K most important features in all of W "
        "(K <= 8; about 15 s a cell for K = 6)",
    )
    parser.add_argument(
        "--linear",
        action="store_true",
        help="also fit, at every cell, the optimum of the model where no ReLU clips (theory.linear_regime) "
        "and score it on the trained models' samples; with --summary, add it to OUT's comparison",
    )
    parser.add_argument(
        "--no-search",
        dest="search",
        action="store_false",
        help="the composite family alone: skip the phase diagram's search over all of W, b at every cell "
        "and the head + tail structure fits where it wins (on the study's grid, about 18 of the run's "
        "37 minutes on one core)",
    )
    args = parser.parse_args()
    if args.summary:
        ds = xr.load_dataset(Path(args.out) / "comparison.nc")
        print(summary(ds))
        theory = xr.load_dataset(Path(args.out) / "theory.nc")
        if args.linear:
            ds = with_linear(ds, theory, TrainConfig.from_toml(args.config), int(ds.attrs["samples"]))
            save_dataset(ds, Path(args.out) / "comparison.nc")
            save_text(
                table(ds) + "\n\n" + summary(ds) + "\n\n" + linear_summary(ds) + "\n",
                Path(args.out) / "comparison.md",
            )
            plot_loss_ratios(ds, Path(args.out) / "comparison.png", beats=BEATS)
        if "linear_loss" in ds:
            print(linear_summary(ds))
        save_text(optimum_table(theory) + "\n", Path(args.out) / "optimum.md")
        print(f"wrote {Path(args.out) / 'optimum.md'}")
        if "direct_loss" in ds:
            text = completeness_table(ds, theory)
            save_text(text + "\n", Path(args.out) / "completeness.md")
            print(text)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = TrainConfig.from_toml(args.config)
    runs_path = out / f"runs_{config.steps}.nc"
    print(f"== training: {config.n_cells} models x {config.steps} steps -> {runs_path}")
    sweep.sweep(config, runs_path)
    runs = load(runs_path)
    save_text(structure_table(runs) + "\n", out / "structure.md")
    structure_figure(runs, out / "structure.png")
    print(f"wrote {out / 'structure.md'} and {out}/structure_*.png (the trained optima's factors)")
    if args.structure:
        return
    print("== theory: composite phase diagram on the same grid")
    grid = config.grid
    theory = phase_diagram(grid, catalogue(grid.n_features, grid.n_hidden), search=args.search)
    if args.completeness:
        dropout = args.completeness if args.completeness_dropout is None else args.completeness_dropout
        limit = xr.where(theory.p == 0, args.completeness, dropout) * (1 + 1e-9)  # 1 - 0.95 > 0.05
        where = (theory.density <= limit).broadcast_like(theory.optimal_loss)
        print(f"== completeness: all of W, b on the truncated exact loss at {int(where.sum())} cells")
        starts = tuple(COMPLETENESS_STARTS if p == 0 else 0 for p in grid.p)
        active = tuple(int(k) for k in args.completeness_active.split(","))
        theory = completeness(theory, where=where, n_starts=starts, progress=True, active=active)
    save_dataset(theory, out / "theory.nc")
    save_text(optimum_table(theory) + "\n", out / "optimum.md")
    print(f"wrote {out / 'theory.nc'} and {out / 'optimum.md'} (what theory's optimum is, cell by cell)")
    wins = int(theory.search_wins.sum()) if "search_wins" in theory else 0
    print(f"== the head + one tail direction structure at the {wins} cells where the search is the optimum")
    structures = search_structures(theory, progress=True).assign_attrs(config=json.dumps(config.to_dict()))
    save_dataset(structures, out / "head_and_tail.nc")
    save_text(head_and_tail_table(structures) + "\n", out / "head_and_tail.md")
    print(f"wrote {out / 'head_and_tail.nc'} and {out / 'head_and_tail.md'}")
    print(f"== scoring the best seed of each cell on {args.samples} fresh samples")
    ds = compare(config, runs, theory, args.samples)
    if args.bracket:
        print(f"== exact brackets (at most {args.bracket} active) of the best models at density <= 0.1")
        ds = exact_brackets(ds, config, runs, args.bracket)
    if args.free:
        print(f"== {args.free} features in all of W at the {int(ds.beats_family.sum())} cells training wins")
        ds = free_fits(ds, config, args.free)
    if args.linear:
        print("== the linear regime's optimum at every cell")
        ds = with_linear(ds, theory, config, args.samples)
    if "direct_upper" in theory:
        ds = with_completeness(ds, theory, config, args.samples)
        save_text(completeness_table(ds, theory) + "\n", out / "completeness.md")
        print(completeness_table(ds, theory))
    save_dataset(ds, out / "comparison.nc")
    linear = "\n\n" + linear_summary(ds) if "linear_loss" in ds else ""
    save_text(table(ds) + "\n\n" + summary(ds) + linear + "\n", out / "comparison.md")
    plot_loss_ratios(ds, out / "comparison.png", beats=BEATS)
    beaten = int(ds.beats_theory.sum())
    print(table(ds))
    print(summary(ds) + linear)
    print(f"training beats theory's optimum (ratio < {BEATS}, 2 se) in {beaten} of {ds.ratio.size} cells")
    print(f"wrote {out / 'comparison.nc'}, {out / 'comparison.md'}, {out / 'comparison.png'}")


if __name__ == "__main__":
    main()
