"""Phase diagrams over (density, p) for one importance profile: 5 features in 2 dims.

theory.phase fits every geometry on its closed form, which is fast while the
blocks sit on one neuron each. A polygon under dropout meets dozens of
regimes, each costly to derive, so here the geometries split two ways:

- separable geometries (every block on its own neurons) keep their closed
  forms (theory.optimize.fit_geometry, all cells at once);
- geometries with a polygon block are fitted on the exact loss itself: its
  gradient with respect to W and b (theory.expected_loss_and_grad_many),
  chained through the sympy Jacobian of W(theta), b(theta), one L-BFGS-B run
  per (p, geometry, start), all runs' evaluations batched
  (theory.optimize.minimize_lockstep). Along the density axis each cell
  starts from a few fixed starts and from the previous cell's optimum.

For 5 in 2 the candidates are the catalogue, the other two ways of pairing
features 0-3 into two antipodal pairs, the pentagon and square with a free
norm and bias per vertex (features of unequal importance), and the pentagon
with free angles too; for 3 in 2 the triangle with free vertices and with
free angles (under dropout the optimal triangle is isosceles: the more
important feature moves towards the diagonal between the neurons).

The phase is the geometry of least loss (ties within theory.phase.TIE go to
the fewest parameters), with the runner-up and the
margin; the winner's (W, b) is scored by theory.expected_loss in every cell.
"""

from __future__ import annotations

import json

import numpy as np
import sympy as sp
import xarray as xr

from theory.errors import InputError
from theory.geometries import (
    Block,
    Geometry,
    antipodal,
    catalogue,
    free_polygon,
    ignore,
    irregular_polygon,
    polygon_blocks,
    polygon_vertices,
    vertex_variants,
)
from theory.loss import expected_loss_and_grad_many
from theory.optimize import minimize_lockstep, minimize_loss
from theory.phase import TIE, _fit_all, _rank, check_grid, starts, with_exact_minimum
from theory.progress import Progress
from theory.setup import Setup


def candidates(n_features: int, n_hidden: int) -> tuple[Geometry, ...]:
    """The catalogue; for 3 in 2 also the triangle with free vertices (norms, biases) and with free
    angles; for 5 in 2 the other pairings, the pentagon with free vertices and free angles, and the
    square with free vertices."""
    geometries = catalogue(n_features, n_hidden)
    if (n_features, n_hidden) == (3, 2):
        geometries += (
            Geometry("triangle, free vertices", 3, 2, (free_polygon(range(3)),)),
            Geometry("triangle, free angles", 3, 2, (irregular_polygon(range(3)),)),
        )
    if (n_features, n_hidden) == (5, 2):
        G = Geometry
        geometries += (
            G("antipodal 0 1 and 2 3, ignore 4", 5, 2, (antipodal(0, 1, 0), antipodal(2, 3, 1), ignore(4))),
            G("antipodal 0 3 and 1 2, ignore 4", 5, 2, (antipodal(0, 3, 0), antipodal(1, 2, 1), ignore(4))),
            G("pentagon, free vertices", 5, 2, (free_polygon(range(5)),)),
            G("pentagon, free angles", 5, 2, (irregular_polygon(range(5)),)),
            G("square, free vertices, ignore 4", 5, 2, (free_polygon(range(4)), ignore(4))),
        )
    return geometries


def needs_exact(geometry: Geometry) -> bool:
    """Whether a geometry is fitted on the exact loss (it has a polygon block) or on its closed form."""
    return any(block.kind.endswith("polygon") for block in geometry.blocks)


class Family:
    """One geometry's W(theta), b(theta) and their Jacobian, vectorised over many thetas."""

    def __init__(self, geometry: Geometry):
        self.geometry = geometry
        W, b = geometry.matrices()
        self.params = geometry.parameters()
        entries = sp.Matrix(list(W) + list(b))
        self._values = sp.lambdify(self.params, list(entries), "numpy")
        self._jacobian = sp.lambdify(self.params, list(entries.jacobian(self.params)), "numpy")
        self.shape = (geometry.n_hidden, geometry.n_features)
        #: norms (w_*, r_*) are non-negative; biases and angles are free
        self.bounds = [
            (0.0, None) if t.name.split("_")[0] in ("w", "r") else (None, None) for t in self.params
        ]

    def __call__(self, thetas: np.ndarray):
        """(W (N, m, n), b (N, n), Jacobian (N, m n + n, P)) at thetas (N, P)."""
        thetas = np.atleast_2d(thetas)
        N, P = thetas.shape
        m, n = self.shape
        columns = list(thetas.T)
        values = np.stack([np.broadcast_to(np.asarray(v, float), (N,)) for v in self._values(*columns)], 1)
        jac = np.stack([np.broadcast_to(np.asarray(v, float), (N,)) for v in self._jacobian(*columns)], 1)
        return values[:, : m * n].reshape(N, m, n), values[:, m * n :], jac.reshape(N, m * n + n, P)


def fit_exact(
    families: list[Family], setups: list[Setup], start_sets: list[list[np.ndarray]], gtol: float = 1e-9
) -> tuple[np.ndarray, np.ndarray]:
    """Each (setup, family)'s least exact loss over its starts: losses (S, F) and thetas [[theta]].

    start_sets[s * F + f]: the starts of family f at setup s.
    """
    jobs = [
        (s, f, x)
        for s in range(len(setups))
        for f in range(len(families))
        for x in start_sets[s * len(families) + f]
    ]

    def evaluate(xs, rows):
        W = np.empty((len(rows), *families[0].shape))
        b = np.empty((len(rows), families[0].shape[1]))
        jacobians = [None] * len(rows)
        family_of = np.array([jobs[row][1] for row in rows])
        for f in np.unique(family_of):
            mine = np.flatnonzero(family_of == f)
            W[mine], b[mine], jac = families[f](np.stack([xs[k] for k in mine]))
            for k, J in zip(mine, jac, strict=True):
                jacobians[k] = J
        result = expected_loss_and_grad_many([setups[jobs[row][0]] for row in rows], W, b)
        entries = np.concatenate([result.grad_W.reshape(len(rows), -1), result.grad_b], axis=1)
        return result.loss, [entries[k] @ jacobians[k] for k in range(len(rows))]

    runs = minimize_lockstep(
        evaluate,
        [x for _, _, x in jobs],
        bounds=[families[f].bounds for _, f, _ in jobs],
        options={"gtol": gtol},
    )
    losses = np.full((len(setups), len(families)), np.inf)
    thetas = [[None] * len(families) for _ in setups]
    for (s, f, _), run in zip(jobs, runs, strict=True):
        if np.isfinite(run.fun) and run.fun < losses[s, f]:
            losses[s, f], thetas[s][f] = run.fun, run.x
    return losses, thetas


def constrained(geometry: Geometry) -> Geometry:
    """The geometry one step more constrained: free angles -> free vertices -> regular polygon."""
    step = {"irregular polygon": "free polygon", "free polygon": "polygon"}
    blocks = tuple(
        Block(step.get(block.kind, block.kind), block.features, block.neurons) for block in geometry.blocks
    )
    return Geometry(f"{geometry.name} (constrained)", geometry.n_features, geometry.n_hidden, blocks)


class Orders:
    """One exact-fitted geometry in each vertex order of its polygons: a Family per order.

    Parameter names do not depend on the order (theory.geometries.Block.label), so
    every order's theta maps to the geometry's own parameter order (canonical).
    """

    def __init__(self, geometry: Geometry):
        self.geometry = geometry
        self.variants = vertex_variants(geometry)
        self._families = {}
        names = [t.name for t in geometry.parameters()]
        self._positions = [np.array([names.index(t.name) for t in v.parameters()]) for v in self.variants]
        self.names = names

    def family(self, v: int) -> Family:
        """Order v's Family, built on first use (a free pentagon's sympy Jacobian takes a while)."""
        if v not in self._families:
            self._families[v] = Family(self.variants[v])
        return self._families[v]

    def canonical(self, v: int, theta: np.ndarray) -> np.ndarray:
        out = np.empty(len(self.names))
        out[self._positions[v]] = theta
        return out

    def in_order(self, v: int, theta: np.ndarray) -> np.ndarray:
        return np.asarray(theta)[self._positions[v]]

    def vertices(self, v: int) -> list[int]:
        """The polygon blocks' features in variant v's order, one block after another."""
        return [f for i in polygon_blocks(self.variants[v]) for f in self.variants[v].blocks[i].features]

    def index(self, vertices) -> int:
        """The variant whose polygons have these vertex orders (0 when the geometry has no order to
        choose: an irregular polygon takes any)."""
        if len(self.variants) == 1:
            return 0
        return [self.vertices(v) for v in range(len(self.variants))].index(list(vertices))


def _from_parent(child: Orders, parent: Orders, theta: np.ndarray, vertices) -> np.ndarray:
    """A start for a less constrained geometry from its parent's optimum theta (parent's parameter
    order), in the child's parameter order: a free polygon's vertices take the shared norm and bias;
    an irregular polygon's vertex angles are the parent's phi + 2 pi t / k, t the vertex's place in
    the parent's order `vertices` (its polygons' features, one block after another)."""
    values = dict(zip(parent.names, theta, strict=True))
    block_of = {f: block for block in child.geometry.blocks for f in block.features}
    place = {f: t for block in child.geometry.blocks for t, f in enumerate(_block_vertices(block, vertices))}
    out = []
    for name in child.names:
        kind, rest = name.split("_", 1)
        if name in values or not rest.isdigit():
            out.append(values[name])
            continue
        block = block_of[int(rest)]
        shared = values.get(f"{kind}_{block.label}")
        if kind == "phi":
            shared = values[f"phi_{block.label}"] + 2 * np.pi * place[int(rest)] / len(block.features)
        out.append(shared)
    return np.array(out, dtype=float)


def _block_vertices(block: Block, vertices) -> list[int]:
    """The block's features in the order they appear in `vertices` (its own order if absent)."""
    mine = [f for f in vertices if f in block.features]
    return mine if len(mine) == len(block.features) else list(block.features)


def _rotated_start(geometry: Geometry) -> np.ndarray:
    """The default start with every polygon turned to pi / 4 (as in theory.phase.starts)."""
    angle = np.array([t.name.startswith("phi") for t in geometry.parameters()])
    return np.where(angle, np.pi / 4, geometry.start())


def _warm_starts(geometry: Geometry, previous) -> list[np.ndarray]:
    """After the first cell: the previous cell's optimum, the default start, a shorter one, a rotated one."""
    return [previous, geometry.start(), starts(geometry)[1], _rotated_start(geometry)]


def _order_starts(orders: Orders, v_best: int | None, previous, last: dict) -> dict[int, list[np.ndarray]]:
    """Starts per vertex order of a regular polygon geometry at one (cell, p).

    At the first cell (v_best None): the block's own order from every fixed start, the others from
    two. Later: the previous cell's best order warm-started from `previous` (its optimum, in the
    geometry's parameter order), every other order from its own last optimum (last[v]).
    """
    out = {}
    for v, variant in enumerate(orders.variants):
        if v_best is None:
            out[v] = list(starts(variant)) if v == 0 else [variant.start(), _rotated_start(variant)]
        elif v == v_best:
            out[v] = _warm_starts(variant, orders.in_order(v, previous))
        else:
            out[v] = [last[v]]
    return out


def _free_starts(free: Orders, v: int, seed, previous) -> list[np.ndarray]:
    """Starts of a free polygon in order v: its parent's optimum `seed` (free parameter order), then
    two fixed starts at the first cell (none for an irregular polygon: its fixed starts put every
    vertex at one angle), or the previous cell's optimum with its vertices moved to this order."""
    first = [free.in_order(v, seed)]
    if previous is None and any(block.kind == "irregular polygon" for block in free.geometry.blocks):
        return first
    if previous is None:
        return first + [free.variants[v].start(), starts(free.variants[v])[1]]
    return first + [free.in_order(v, previous)]


def _fit_orders(
    group: list[Orders], setups: list[Setup], start_sets: dict[tuple[int, int, int], list[np.ndarray]]
) -> tuple[np.ndarray, list[list[np.ndarray]], np.ndarray]:
    """Fit every (setup, geometry, order) that has starts (start_sets[s, e, v]); per (setup, geometry):
    the least loss (S, E), its theta in the geometry's parameter order, the order's index (S, E), and
    every fitted (s, e, v)'s theta in the geometry's parameter order."""
    flat = sorted({(e, v) for _, e, v in start_sets})
    families = [group[e].family(v) for e, v in flat]
    found, thetas = fit_exact(
        families, setups, [start_sets.get((s, e, v), []) for s in range(len(setups)) for e, v in flat]
    )
    loss = np.full((len(setups), len(group)), np.inf)
    best = np.zeros((len(setups), len(group)), dtype=int)
    theta = [[None] * len(group) for _ in setups]
    each = {}
    for s in range(len(setups)):
        for f, (e, v) in enumerate(flat):
            if thetas[s][f] is None:
                continue
            each[s, e, v] = group[e].canonical(v, thetas[s][f])
            if found[s, f] < loss[s, e]:
                loss[s, e], best[s, e], theta[s][e] = found[s, f], v, each[s, e, v]
    return loss, theta, best, each


def density_diagram(
    n_features: int,
    n_hidden: int,
    importance,
    density,
    p,
    geometries: tuple[Geometry, ...] | None = None,
    progress=None,
) -> xr.Dataset:
    """Optimal geometry over (p, density) for a fixed importance vector (every feature the same density).

    Returns a Dataset with dims p, density (and geometry, param, hidden,
    feature): each geometry's least loss and its parameters, phase (index
    into geometry), runner-up, margin, the optimum's W and b with their exact
    loss, and the features it represents. progress: None (a bar on a
    terminal, else a line every ~10 s), False, or a theory.progress.Progress
    that counts cells.
    """
    importance = np.asarray(importance, dtype=float)
    density = np.asarray(density, dtype=float)
    ps = np.asarray(p, dtype=float)
    if importance.shape != (n_features,) or not np.all(np.isfinite(importance)) or importance.min() < 0:
        raise InputError(f"importance must be {n_features} finite non-negative numbers, got {importance}")
    check_grid("density", density, 0.0, 1.0, low_open=True)
    check_grid("p", ps, 0.0, 1.0, high_open=True)
    geometries = candidates(n_features, n_hidden) if geometries is None else tuple(geometries)
    if len(geometries) < 2:
        raise InputError("a phase diagram needs at least two geometries to compare")
    for g in geometries:
        if (g.n_features, g.n_hidden) != (n_features, n_hidden):
            raise InputError(
                f"geometry {g.name!r} is for ({g.n_features}, {g.n_hidden}), not ({n_features}, {n_hidden})"
            )
    counts = [len(g.parameters()) for g in geometries]
    shape = (len(ps), len(density))
    losses = np.full(shape + (len(geometries),), np.nan)
    theta = np.full(shape + (len(geometries), max(counts)), np.nan)

    # Separable geometries: closed forms, every cell at once.
    P, D = np.meshgrid(ps, density, indexing="ij")
    args = np.concatenate(
        [np.repeat(D.ravel()[:, None], n_features, 1), np.tile(importance, (D.size, 1)), P.ravel()[:, None]],
        1,
    )
    closed = [g for g in geometries if not needs_exact(g)]
    for g, fit in _fit_all(closed, args).items():
        j = [x.name for x in geometries].index(g)
        losses[..., j] = fit.loss.reshape(shape)
        theta[..., j, : counts[j]] = fit.theta.reshape(shape + (-1,))

    # Polygons: the exact loss, density by density, every p, geometry, vertex order and start in one
    # lockstep. Regular polygons are fitted in every vertex order. A free polygon (free vertices) whose
    # regular counterpart is a candidate, and an irregular one (free angles) whose free counterpart is,
    # are fitted a stage later, once: in the order their parent found best at that cell, starting from
    # its optimum (the free fit in all orders would cost 12x for a pentagon).
    exact = [j for j, g in enumerate(geometries) if needs_exact(g)]
    parent_of = {}
    for j in exact:
        counterpart = constrained(geometries[j]).blocks
        parents = [i for i in exact if geometries[i].blocks == counterpart and i != j]
        if parents:
            parent_of[j] = parents[0]

    def depth(j):
        return 0 if j not in parent_of else 1 + depth(parent_of[j])

    orders = {j: Orders(geometries[j]) for j in exact}
    stages = [
        [j for j in exact if depth(j) == level] for level in range(1 + max(map(depth, exact), default=0))
    ]
    order_index = np.zeros(shape + (len(geometries),), dtype=int)  # into orders[j].variants
    last = {}  # (k, j, v) -> theta of the last optimum found in order v
    with Progress.of(progress, len(ps) * len(density), "phase diagram", "cell") as bar:
        for i, d in enumerate(density):
            setups = [
                Setup(n_features, n_hidden, sparsity=1 - d, importance=importance, p=float(q)) for q in ps
            ]
            for stage in stages:
                start_sets = {}
                for k in range(len(ps)):
                    for e, j in enumerate(stage):
                        previous = theta[k, i - 1, j, : counts[j]] if i > 0 else None
                        if j in parent_of:  # one order: the parent's best here
                            r = parent_of[j]
                            vertices = orders[r].vertices(order_index[k, i, r])
                            v = orders[j].index(vertices)
                            seed = _from_parent(orders[j], orders[r], theta[k, i, r, : counts[r]], vertices)
                            start_sets[k, e, v] = _free_starts(orders[j], v, seed, previous)
                            continue
                        own = {v: last[k, j, v] for v in range(len(orders[j].variants)) if (k, j, v) in last}
                        v_best = order_index[k, i - 1, j] if i > 0 else None
                        for v, x in _order_starts(orders[j], v_best, previous, own).items():
                            start_sets[k, e, v] = x
                found, thetas, best, each = _fit_orders([orders[j] for j in stage], setups, start_sets)
                for (k, e, v), x in each.items():
                    last[k, stage[e], v] = x
                for k in range(len(ps)):
                    for e, j in enumerate(stage):
                        losses[k, i, j] = found[k, e]
                        theta[k, i, j, : counts[j]] = thetas[k][e]
                        order_index[k, i, j] = best[k, e]
            bar.update(len(ps))

    phase, runner_up, margin = _rank(losses, counts)
    W_each, b_each = _optima(geometries, orders, theta, order_index, counts)
    vertex_order = np.full(shape + (len(geometries), n_features), -1)
    for j in exact:
        for index in np.ndindex(*shape):
            vertices = polygon_vertices(orders[j].variants[order_index[index + (j,)]], W_each[index + (j,)])
            vertex_order[index + (j, slice(0, len(vertices)))] = vertices
    W_opt = np.take_along_axis(W_each, phase[..., None, None, None], 2)[:, :, 0]
    b_opt = np.take_along_axis(b_each, phase[..., None, None], 2)[:, :, 0]
    exact_loss = grid_exact_loss(importance, density, ps, W_opt, b_opt)
    represented = np.array([geometries[g].represented for g in phase.ravel()]).reshape(shape)
    onset = superposition_onset(density, represented, n_hidden)
    angle = max_angle_to_neuron(W_opt)
    return xr.Dataset(
        {
            "loss": (
                ("p", "density", "geometry"),
                losses,
                {
                    "description": "each geometry's least loss over its parameters (closed form for "
                    "separable geometries, exact loss for polygons)",
                    "convention": "sum over features, importance-weighted",
                },
            ),
            "phase": (
                ("p", "density"),
                phase,
                {
                    "description": f"index into geometry: least loss (ties within {TIE} relative go to the "
                    "fewest parameters)"
                },
            ),  # fmt: skip
            "runner_up": (
                ("p", "density"),
                runner_up,
                {"description": "least-loss geometry not tied with the phase"},
            ),
            "margin": (("p", "density"), margin, {"description": "runner-up's loss minus the optimum's"}),
            "optimal_loss": (("p", "density"), losses.min(-1)),
            "exact_loss": (
                ("p", "density"),
                exact_loss,
                {"description": "theory.expected_loss of the optimal (W, b): a check on the fits"},
            ),
            "theta": (
                ("p", "density", "geometry", "param"),
                theta,
                {"description": "optimised parameters; names per geometry in attrs['parameters']"},
            ),
            "vertex_order": (
                ("p", "density", "geometry", "vertex"),
                vertex_order,
                {
                    "description": "each polygon's features in the fitted vertex order (counter-clockwise "
                    "from neuron 0 towards neuron 1, one polygon block after another; -1: none); "
                    "regular polygons are fitted in every order, free vertices in their regular "
                    "counterpart's best, free angles from the free vertices' optimum (order read off W)"
                },
            ),
            "W": (("p", "density", "hidden", "feature"), W_opt),
            "geometry_W": (
                ("p", "density", "geometry", "hidden", "feature"),
                W_each,
                {"description": "each geometry's optimal W (W is the phase's)"},
            ),
            "geometry_b": (
                ("p", "density", "geometry", "feature"),
                b_each,
                {"description": "each geometry's optimal b"},
            ),
            "b": (("p", "density", "feature"), b_opt),
            "represented": (
                ("p", "density"),
                represented,
                {"description": "features the optimal geometry represents"},
            ),
            "max_angle_to_neuron": (
                ("p", "density"),
                angle,
                {
                    "description": "largest angle (degrees) between a represented feature's W column and "
                    "its nearest neuron axis: 0 when every feature is neuron-aligned",
                    "units": "degrees",
                },
            ),
            "superposition_onset": (
                ("p",),
                onset,
                {
                    "description": "largest density at which the optimum represents more features than "
                    "there are neurons (NaN: nowhere on the grid)"
                },
            ),
        },
        coords={
            "p": ps,
            "density": density,
            "sparsity": ("density", 1 - density),
            "geometry": [g.name for g in geometries],
            "param": np.arange(max(counts)),
            "vertex": np.arange(n_features),
            "hidden": np.arange(n_hidden),
            "feature": np.arange(n_features),
            "importance": ("feature", importance),
        },
        attrs={
            "kind": "tms-dropout phase diagram over (density, p)",
            "n_features": n_features,
            "n_hidden": n_hidden,
            "parameters": json.dumps({g.name: [t.name for t in g.parameters()] for g in geometries}),
            "fitted_on": json.dumps(
                {g.name: "exact loss" if needs_exact(g) else "closed form" for g in geometries}
            ),
        },
    )


def _optima(geometries, orders: dict, theta: np.ndarray, order_index: np.ndarray, counts) -> tuple:
    """Every geometry's optimal W (P, D, G, m, n) and b (P, D, G, n) from its fitted parameters
    (polygon geometries in each cell's best vertex order)."""
    P, D, G = theta.shape[:3]
    m, n = geometries[0].n_hidden, geometries[0].n_features
    W = np.full((P, D, G, m, n), np.nan)
    b = np.full((P, D, G, n), np.nan)
    for g, geometry in enumerate(geometries):
        x = theta[:, :, g, : counts[g]]
        if g not in orders:
            W[:, :, g], b[:, :, g], _ = _reshaped(Family(geometry), x)
            continue
        for v in np.unique(order_index[:, :, g]):
            cells = order_index[:, :, g] == v
            Wv, bv, _ = orders[g].family(v)(np.stack([orders[g].in_order(v, t) for t in x[cells]]))
            W[cells, g], b[cells, g] = Wv, bv
    return W, b


def _reshaped(family: Family, x: np.ndarray):
    """family at thetas (..., P), shaped back to the leading dimensions."""
    W, b, jac = family(x.reshape(-1, x.shape[-1]))
    lead = x.shape[:-1]
    return W.reshape(lead + W.shape[1:]), b.reshape(lead + b.shape[1:]), jac


def grid_exact_loss(importance, density: np.ndarray, ps: np.ndarray, W: np.ndarray, b: np.ndarray):
    """theory.expected_loss of one model per (p, density) cell: W (P, D, m, n), b (P, D, n)."""
    P, D, m, n = W.shape
    cells = [Setup(n, m, sparsity=1 - d, importance=importance, p=float(q)) for q in ps for d in density]
    return expected_loss_and_grad_many(cells, W.reshape(-1, m, n), b.reshape(-1, n)).loss.reshape(P, D)


def superposition_onset(density: np.ndarray, represented: np.ndarray, n_hidden: int) -> np.ndarray:
    """Per p (rows of represented (P, D)): the largest density whose optimum is in superposition, or NaN."""
    onset = np.full(represented.shape[0], np.nan)
    for k, row in enumerate(represented):
        inside = row > n_hidden
        if inside.any():
            onset[k] = density[inside].max()
    return onset


def max_angle_to_neuron(W: np.ndarray, tolerance: float = 1e-6) -> np.ndarray:
    """Largest angle (degrees) from a represented column of W (..., m, n) to its nearest neuron axis.

    A column is represented when its norm exceeds tolerance; NaN when none is.
    """
    norms = np.linalg.norm(W, axis=-2)
    cosine = np.abs(W).max(-2) / np.where(norms > tolerance, norms, 1.0)
    angles = np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
    angles = np.where(norms > tolerance, angles, -np.inf)
    out = angles.max(-1)
    return np.where(np.isfinite(out), out, np.nan)


def completeness(
    ds: xr.Dataset,
    cells_per_p: int = 2,
    n_starts: int = 8,
    seed: int = 0,
    tolerance: float = 1e-6,
    progress: bool | None = None,
) -> xr.Dataset:
    """Minimise the exact loss over all of W and b at cells_per_p densities per p (evenly spaced, the
    densest included); flag where it beats the catalogue (a phase the catalogue is missing).

    Adds `exact_minimum` (NaN where not sampled) and `missing_phase`
    (exact minimum below the catalogue's best by more than tolerance, relative).
    """
    if isinstance(cells_per_p, bool) or not isinstance(cells_per_p, int) or cells_per_p < 1:
        raise InputError(f"cells_per_p = {cells_per_p!r} is not allowed; it must be an integer >= 1")
    n, m = int(ds.attrs["n_features"]), int(ds.attrs["n_hidden"])
    importance = ds.importance.values
    picks = np.unique(
        np.linspace(ds.density.size - 1, 0, min(cells_per_p, ds.density.size)).round().astype(int)
    )
    minimum = np.full(ds.optimal_loss.shape, np.nan)
    with Progress(ds.p.size * len(picks), "completeness", "cell", show=progress) as bar:
        for k, p_value in enumerate(ds.p.values):
            for i in picks:
                setup = Setup(
                    n, m, sparsity=1 - ds.density.values[i], importance=importance, p=float(p_value)
                )
                minimum[k, i] = minimize_loss(setup, n_starts=n_starts, seed=seed).loss
                bar.update()
    return with_exact_minimum(ds, minimum, tolerance)
