"""Phase diagrams over (density, p) for any n features in m neurons, from blocks: 20 in 5.

A composite geometry puts each block on its own features and its own neurons.
Then the loss is a sum over blocks, exactly: a feature's output y_i sees only
its block's features and the dropout masks of its block's neurons, which are
independent of everything else, so the expectation over the rest integrates
out. An ignored feature costs I_i Var(x_i) = I_i (s/3 - s^2/4) (bias at its
mean s/2, s the density). And the loss is linear in the importances, so a
block on features f..f+k-1 with importance decay**i costs decay**f times the
same block on features 0..k-1 (its optimum unchanged).

So one fit per block shape gives every composite of every size:

- shapes: dedicated (1 feature, 1 neuron); pair (2 on 1: antipodal or
  same-sign); k-gon for k = 3..max_polygon in a plane of 2 neurons (regular
  in every vertex order, free norms and biases per vertex, or free angles
  too), each fitted by
  theory.sparsity_phase.density_diagram on features 0..k-1 (importance
  decay**i), the best kind per cell kept;
- structures: every multiset of shapes on at most m neurons and n features;
- arrangements: each structure's blocks in every order, on consecutive
  features from the most important, the rest ignored.

The phase is the structure of least loss (its best arrangement), with the
runner-up structure and the margin. Restrictions, stated in the Dataset's
attrs: blocks are planar (no tetrahedra or other 3-d shapes), take runs of
consecutive features in importance order, and the ignored features are the
least important.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

import numpy as np
import xarray as xr

from theory.errors import InputError
from theory.geometries import (
    Geometry,
    antipodal,
    dedicated,
    free_polygon,
    ignore,
    irregular_polygon,
    parallel,
    polygon,
)
from theory.loss import MAX_EXACT_FEATURES
from theory.phase import TIE, _rank
from theory.progress import Progress
from theory.sparsity_phase import density_diagram, grid_exact_loss, max_angle_to_neuron, superposition_onset

POLYGON_NAMES = {3: "triangle", 4: "square", 5: "pentagon", 6: "hexagon"}
ASSUMPTIONS = (
    "blocks on disjoint features and neurons (the loss is then a sum over blocks, exactly); planar blocks "
    "only (dedicated, pair on one neuron, k-gon in a plane of two neurons); each block on consecutive "
    "features in importance order; the least important features ignored"
)


@dataclass(frozen=True)
class Shape:
    """A block shape: `features` features on `neurons` neurons, fitted as the best of `kinds`."""

    name: str
    features: int
    neurons: int

    def geometries(self) -> tuple[Geometry, ...]:
        """The kinds this shape is fitted as, on features 0.. and neurons 0.. (ignore last, unused)."""
        k, G = self.features, Geometry
        if (k, self.neurons) == (1, 1):
            return (G("dedicated", 1, 1, (dedicated(0, 0),)), G("ignore", 1, 1, (ignore(0),)))
        if (k, self.neurons) == (2, 1):
            return (G("antipodal", 2, 1, (antipodal(0, 1, 0),)), G("same-sign", 2, 1, (parallel(0, 1, 0),)))
        name = POLYGON_NAMES[k]
        return (
            G(name, k, 2, (polygon(range(k)),)),
            G(f"{name}, free vertices", k, 2, (free_polygon(range(k)),)),
            G(f"{name}, free angles", k, 2, (irregular_polygon(range(k)),)),
        )


def shapes(max_polygon: int) -> tuple[Shape, ...]:
    if not 2 <= max_polygon <= max(POLYGON_NAMES):
        raise InputError(f"max_polygon = {max_polygon} is not allowed; it must be 2 (no polygons) to 6")
    polygons = tuple(Shape(POLYGON_NAMES[k], k, 2) for k in range(3, max_polygon + 1))
    return (Shape("dedicated", 1, 1), Shape("pair", 2, 1)) + polygons


def structures(n_features: int, n_hidden: int, options: tuple[Shape, ...]) -> list[tuple[int, ...]]:
    """Every multiset of shapes (indices into options, sorted) on at most n_hidden neurons and
    n_features features; the empty one (ignore all) first."""
    out = [()]
    for size in range(1, n_hidden + 1):
        for combo in itertools.combinations_with_replacement(range(len(options)), size):
            if (
                sum(options[s].neurons for s in combo) <= n_hidden
                and sum(options[s].features for s in combo) <= n_features
            ):
                out.append(combo)
    return out


def structure_name(combo: tuple[int, ...], options: tuple[Shape, ...]) -> str:
    """'pentagon + 2 pairs' (largest shapes first); 'ignore all' for none."""
    if not combo:
        return "ignore all"
    parts = []
    for s in sorted(set(combo), key=lambda s: (-options[s].features, s)):
        count = combo.count(s)
        name = options[s].name
        parts.append(name if count == 1 else f"{count} {name}" + ("" if name == "dedicated" else "s"))
    return " + ".join(parts)


def _arrangements(combo: tuple[int, ...]) -> list[tuple[int, ...]]:
    return sorted(set(itertools.permutations(combo)))


@dataclass
class BlockFits:
    """Each shape's best kind per (p, density) on features 0..k-1: loss, W (k on its neurons), b, kind,
    vertex order (polygons)."""

    loss: np.ndarray  # (S, P, D)
    W: list[np.ndarray]  # per shape (P, D, neurons, features)
    b: list[np.ndarray]  # per shape (P, D, features)
    kind: list[np.ndarray]  # per shape (P, D) of str
    order: list[np.ndarray]  # per shape (P, D, features): vertex order, -1 for non-polygons


def fit_blocks(options: tuple[Shape, ...], decay: float, density, p, progress=None) -> BlockFits:
    """Fit every shape over the (p, density) grid (theory.sparsity_phase.density_diagram).

    progress: None, False or a theory.progress.Progress, counting (shape, p, density) cells.
    """
    density, ps = np.asarray(density, float), np.asarray(p, float)
    losses, Ws, bs, kinds, orders = [], [], [], [], []
    with Progress.of(progress, len(options) * density.size * ps.size, "block fits", "cell") as bar:
        for shape in options:
            fit = _fit_shape(shape, decay, density, ps, bar)
            for found, out in zip(fit, (losses, Ws, bs, kinds, orders), strict=True):
                out.append(found)
    return BlockFits(np.stack(losses), Ws, bs, kinds, orders)


def _fit_shape(shape: Shape, decay: float, density, ps, bar):
    """One shape's best fit per cell: (loss, W, b, kind, vertex order)."""
    geometries = shape.geometries()
    ds = density_diagram(
        shape.features, shape.neurons, decay ** np.arange(shape.features), density, ps, geometries, bar
    )
    # "ignore" is only there because a diagram needs two candidates; the composite ignores by itself
    usable = [g for g, geometry in enumerate(geometries) if geometry.blocks[0].kind != "ignore"]
    loss = ds.loss.values[..., usable]
    counts = [len(geometries[g].parameters()) for g in usable]
    best = np.asarray(usable)[_rank(loss, counts)[0]]
    take = best[..., None, None]
    return (
        np.take_along_axis(ds.loss.values, best[..., None], -1)[..., 0],
        np.take_along_axis(ds.geometry_W.values, take[..., None], 2)[:, :, 0],
        np.take_along_axis(ds.geometry_b.values, take, 2)[:, :, 0],
        np.asarray(ds.geometry.values)[best],
        np.take_along_axis(ds.vertex_order.values, take, 2)[:, :, 0],
    )


def _ignore_loss(density: np.ndarray) -> np.ndarray:
    """Var(x) of a feature of this density: the loss of ignoring it (bias at its mean), importance 1."""
    return density / 3 - density**2 / 4


def composite_diagram(
    n_features: int,
    n_hidden: int,
    decay: float,
    density,
    p,
    max_polygon: int = 5,
    progress=None,
) -> xr.Dataset:
    """Optimal composite over (p, density) for n_features in n_hidden, importance decay**i.

    Returns a Dataset shaped like theory.sparsity_phase.density_diagram's
    (geometry = the structures; loss, phase, runner_up, margin, W, b,
    represented, max_angle_to_neuron, superposition_onset) plus `composite`,
    the winning arrangement with each block's kind and features,
    `dimensions_per_feature` and each shape's fit (`block_loss`, `block_kind`).
    progress: None (a bar on a terminal, else a line every ~10 s) or False; it counts the
    block fits' (shape, p, density) cells, which are almost all of the time.
    """
    if not (isinstance(n_features, int) and isinstance(n_hidden, int) and n_features >= 1 and n_hidden >= 1):
        raise InputError(f"n_features = {n_features!r}, n_hidden = {n_hidden!r}: both must be integers >= 1")
    if not (np.isfinite(decay) and 0 < decay <= 1):
        raise InputError(f"decay = {decay} is not allowed; it must be in (0, 1]")
    density, ps = np.asarray(density, float), np.asarray(p, float)
    options = shapes(max_polygon)
    fits = fit_blocks(options, decay, density, ps, progress)
    importance = decay ** np.arange(n_features)
    ignored = importance[:, None, None] * _ignore_loss(density)[None, None, :]  # (n, 1, D)
    tail = np.concatenate([np.cumsum(ignored[::-1], 0)[::-1], np.zeros_like(ignored[:1])])  # from f on

    combos = structures(n_features, n_hidden, options)
    shape = (len(ps), len(density))
    losses = np.full(shape + (len(combos),), np.inf)
    best_arrangement = np.empty(shape + (len(combos),), dtype=object)
    for c, combo in enumerate(combos):
        for arrangement in _arrangements(combo):
            total = np.zeros(shape)
            first = 0
            for s in arrangement:
                total = total + importance[first] * fits.loss[s]
                first += options[s].features
            total = total + tail[first]
            better = total < losses[..., c]
            losses[..., c] = np.where(better, total, losses[..., c])
            for index in zip(*np.nonzero(better), strict=True):
                best_arrangement[index + (c,)] = arrangement
    # ties: fewest features represented, then fewest polygons (at p = 0 a square is two antipodal pairs)
    counts = [sum(10 * options[s].features + (options[s].neurons == 2) for s in combo) for combo in combos]
    phase, runner_up, margin = _rank(losses, counts)

    W = np.zeros(shape + (n_hidden, n_features))
    b = np.zeros(shape + (n_features,))
    composite = np.empty(shape, dtype=object)
    for index in np.ndindex(*shape):
        arrangement = best_arrangement[index + (phase[index],)]
        W[index], b[index], composite[index] = _assemble(
            arrangement, options, fits, index, (n_hidden, n_features), density[index[1]]
        )
    represented = (np.linalg.norm(W, axis=-2) > 0).sum(-1)
    frobenius = (W**2).sum((-1, -2))
    exact = np.full(shape, np.nan)
    if n_features <= MAX_EXACT_FEATURES:
        exact = grid_exact_loss(importance, density, ps, W, b)
    names = [structure_name(combo, options) for combo in combos]
    return xr.Dataset(
        {
            "loss": (
                ("p", "density", "geometry"),
                losses,
                {
                    "description": "each structure's least loss over its arrangements and parameters",
                    "convention": "sum over features, importance-weighted",
                },
            ),
            "phase": (
                ("p", "density"),
                phase,
                {"description": f"index into geometry: least loss (ties within {TIE}: see attrs['ties'])"},
            ),
            "runner_up": (("p", "density"), runner_up, {"description": "least-loss structure not tied"}),
            "margin": (("p", "density"), margin, {"description": "runner-up's loss minus the optimum's"}),
            "optimal_loss": (("p", "density"), losses.min(-1)),
            "exact_loss": (
                ("p", "density"),
                exact,
                {
                    "description": "theory.expected_loss of the assembled optimum (a check of the sum over "
                    f"blocks); NaN when n_features > {MAX_EXACT_FEATURES}"
                },
            ),
            "composite": (
                ("p", "density"),
                composite.astype(str),
                {"description": "the optimum: each block's kind and features (polygons in vertex order)"},
            ),
            "W": (("p", "density", "hidden", "feature"), W),
            "b": (("p", "density", "feature"), b),
            "represented": (
                ("p", "density"),
                represented,
                {"description": "features the optimal geometry represents"},
            ),
            "dimensions_per_feature": (
                ("p", "density"),
                n_hidden / np.where(frobenius > 0, frobenius, np.nan),
                {"description": "m / ||W||_F^2 (TMS): 1 / (features per dimension)"},
            ),
            "max_angle_to_neuron": (
                ("p", "density"),
                max_angle_to_neuron(W),
                {"description": "largest angle (degrees) from a represented feature to its nearest neuron"},
            ),
            "superposition_onset": (
                ("p",),
                superposition_onset(density, represented, n_hidden),
                {"description": "largest density at which the optimum represents more features than neurons"},
            ),
            "block_loss": (
                ("shape", "p", "density"),
                fits.loss,
                {"description": "each shape's best loss on features 0..k-1 (importance decay**i)"},
            ),
            "block_kind": (("shape", "p", "density"), np.stack(fits.kind).astype(str)),
        },
        coords={
            "p": ps,
            "density": density,
            "sparsity": ("density", 1 - density),
            "geometry": names,
            "shape": [s.name for s in options],
            "hidden": np.arange(n_hidden),
            "feature": np.arange(n_features),
            "importance": ("feature", importance),
        },
        attrs={
            "kind": "tms-dropout composite phase diagram over (density, p)",
            "n_features": n_features,
            "n_hidden": n_hidden,
            "decay": decay,
            "max_polygon": max_polygon,
            "assumptions": ASSUMPTIONS,
            "ties": "structures within TIE of the least loss: fewest features represented, then fewest "
            "polygons (at p = 0 a square is two antipodal pairs)",
            "structures": json.dumps(
                {name: [options[s].name for s in combo] for name, combo in zip(names, combos, strict=True)}
            ),
        },
    )


def _assemble(arrangement, options, fits: BlockFits, index, shape: tuple[int, int], density: float):
    """The composite's W (m, n), b (n) and description at one cell (p, density index): blocks on
    consecutive features and neurons in arrangement order, the rest ignored (bias at the mean)."""
    n_hidden, n_features = shape
    W = np.zeros(shape)
    b = np.full(n_features, density / 2)
    first, neuron, parts = 0, 0, []
    for s in arrangement:
        k, c = options[s].features, options[s].neurons
        W[neuron : neuron + c, first : first + k] = fits.W[s][index]
        b[first : first + k] = fits.b[s][index]
        order = [int(v) + first for v in fits.order[s][index] if v >= 0]
        features = order if order else range(first, first + k)
        parts.append(f"{fits.kind[s][index]} {' '.join(map(str, features))}")
        first, neuron = first + k, neuron + c
    if first < n_features:
        parts.append(f"ignore {first}" + (f"-{n_features - 1}" if first < n_features - 1 else ""))
    return W, b, ", ".join(parts)
