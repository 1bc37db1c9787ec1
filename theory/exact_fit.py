"""Fitting candidates on the exact loss: polygons, in every vertex order, warm-started along density.

A polygon under dropout meets dozens of ReLU regimes, each costly to derive
symbolically, so geometries with a polygon block are fitted on the exact loss
itself: its gradient with respect to W and b (theory.compiled_loss), chained
through the sympy Jacobian of W(theta), b(theta), one L-BFGS-B run per (row, geometry,
vertex order, start), all runs' evaluations batched
(theory.optimize.minimize_lockstep). Along the density axis (the last axis of
the cells) each cell starts from a few fixed starts and from the previous
cell's optimum; then, walking back down, from the next cell's optimum, kept
where it is lower.

Regular polygons are fitted in every vertex order. A free polygon (free
vertices) whose regular counterpart is a candidate, and an irregular one (free
angles) whose free counterpart is, are fitted a stage later: from their
parent's optima in its PARENT_ORDERS best orders at that cell, and from their
own optimum at the neighbouring cell (the free fit from every order would cost
12x for a pentagon). Why so many starts: the fits land in different local
minima on the torch and the compiled loss, which agree to 1e-15, so a single
chain of starts is not enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sympy as sp

from theory import code_cache, storage
from theory.blocks import Block
from theory.closed_fit import starts
from theory.compiled_loss import expected_loss_and_grad_many_compiled
from theory.fits import Fits
from theory.geometries import Geometry, polygon_blocks, polygon_vertices, vertex_variants
from theory.optimize import minimize_lockstep
from theory.progress import Progress
from theory.setup import Setup

#: Families whose W(theta), b(theta) have more operations than this get numpy code with their common
#: subexpressions computed once (lambdify's cse): a 5-simplex's plane rotations (3,895 operations) repeat
#: the same products, and its Jacobian's code runs 17x faster so. Below it (polygons, 24 at most;
#: tetrahedra, 405) the code is lambdify's plain one.
CSE_ABOVE_OPS = 500


class Family:
    """One geometry's W(theta), b(theta) and their Jacobian, vectorised over many thetas.

    Family.of(geometry) gives each block layout's Family once per process; its numpy code (sympy's
    Jacobian and lambdify: seconds for a free pentagon or a tetrahedron) is kept on disk by
    theory.code_cache, in the cache folder `families`, named by a digest of W(theta), b(theta), the
    parameters, this file, theory/code_cache.py and the sympy and numpy versions.
    """

    def __init__(self, geometry: Geometry):
        self.geometry = geometry
        W, b = geometry.matrices()
        self.params = geometry.parameters()
        entries = sp.Matrix(list(W) + list(b))
        key = code_cache.digest(
            sp.srepr(entries),
            sp.srepr(tuple(self.params)),
            Path(__file__).read_bytes(),
            Path(code_cache.__file__).read_bytes(),
            sp.__version__,
            np.__version__,
        )
        folder = storage.cache_folder("families")

        def stored(part: str, expressions):
            """part's numpy code, read from disk, or written (and expressions() computed) only now."""

            def write():
                cse = sp.count_ops(list(entries)) > CSE_ABOVE_OPS
                return code_cache.lambdify(self.params, list(expressions()), cse=cse)

            return code_cache.stored_function(folder / f"{key}.{part}.py", write)

        self._values = stored("values", lambda: entries)
        self._jacobian = stored("jacobian", lambda: entries.jacobian(self.params))
        self.shape = (geometry.n_hidden, geometry.n_features)
        #: norms are non-negative; biases and angles are free
        self.bounds = [(0.0, None) if role == "norm" else (None, None) for role in geometry.roles()]

    @classmethod
    def of(cls, geometry: Geometry) -> Family:
        """The Family of the geometry's blocks (its name aside), built once per process."""
        key = (geometry.n_features, geometry.n_hidden, geometry.blocks)
        if key not in _FAMILIES:
            _FAMILIES[key] = cls(geometry)
        return _FAMILIES[key]

    def __call__(self, thetas: np.ndarray):
        """(W (N, m, n), b (N, n), Jacobian (N, m n + n, P)) at thetas (N, P). One theta is evaluated
        on floats, not on arrays of one element, without numpy's overhead per operation on thousands of
        entries (a fit on the sampled loss evaluates one theta at a time): the same operations, and in
        every family the tests try the batched call's numbers bit for bit."""
        thetas = np.atleast_2d(thetas)
        N, P = thetas.shape
        m, n = self.shape
        if N == 1:
            point = thetas[0].tolist()
            values = np.array(self._values(*point), dtype=float)[None]
            jac = np.array(self._jacobian(*point), dtype=float)[None]
        else:
            columns = list(thetas.T)
            values = _columns(self._values(*columns), N)
            jac = _columns(self._jacobian(*columns), N)
        return values[:, : m * n].reshape(N, m, n), values[:, m * n :], jac.reshape(N, m * n + n, P)


#: Family.of's Families, by (n_features, n_hidden, blocks).
_FAMILIES: dict[tuple, Family] = {}


def _columns(entries: list, N: int) -> np.ndarray:
    """Lambdified entries (each an array (N,) or a constant) as one array (N, len(entries))."""
    out = np.empty((N, len(entries)))
    for e, v in enumerate(entries):
        out[:, e] = v
    return out


@dataclass
class ExactFits:
    """Each (setup, family)'s least exact loss over its starts and its theta (None: no start)."""

    loss: np.ndarray  # (S, F)
    theta: list[list[np.ndarray | None]]  # [S][F]


#: A less constrained geometry starts from its parent's optima in the parent's best few vertex orders
#: at the cell (from the best one only, the fit's end point depends on the loss's last bits).
PARENT_ORDERS = 3


def fit_exact(
    families: list[Family],
    setups: list[Setup],
    start_sets: list[list[np.ndarray]],
    gtol: float = 1e-9,
) -> ExactFits:
    """Each (setup, family)'s least exact loss over its starts (L-BFGS-B on the exact loss, lockstep).

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
        result = expected_loss_and_grad_many_compiled([setups[jobs[row][0]] for row in rows], W, b)
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
    return ExactFits(losses, thetas)


def constrained(geometry: Geometry) -> Geometry:
    """The geometry one step more constrained: free angles -> free vertices -> regular polygon."""
    blocks = tuple(block.constrained() for block in geometry.blocks)
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
            self._families[v] = Family.of(self.variants[v])
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


def _from_parent_order(child: Orders, parent: Orders, theta: np.ndarray, u: int) -> tuple[int, np.ndarray]:
    """The child's vertex order matching the parent's order u, and _from_parent's start from the
    parent's optimum theta in that order (in the child's own parameter order)."""
    vertices = parent.vertices(u)
    return child.index(vertices), _from_parent(child, parent, theta, vertices)


def _block_vertices(block: Block, vertices) -> list[int]:
    """The block's features in the order they appear in `vertices` (its own order if absent)."""
    mine = [f for f in vertices if f in block.features]
    return mine if len(mine) == len(block.features) else list(block.features)


def _rotated_start(geometry: Geometry) -> np.ndarray:
    """The default start with every polygon turned to pi / 4 (as in theory.closed_fit.starts)."""
    return np.where(geometry.roles() == "angle", np.pi / 4, geometry.start())


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
    if previous is None and any(b.type.polygon and not b.type.ordered for b in free.geometry.blocks):
        return first
    if previous is None:
        return first + [free.variants[v].start(), starts(free.variants[v])[1]]
    return first + [free.in_order(v, previous)]


@dataclass
class OrderFits:
    """Per (setup, geometry) of a stage: the best vertex order's loss, theta and index; and every
    fitted (setup, geometry, order)'s theta. Thetas are in the geometry's own parameter order."""

    loss: np.ndarray  # (S, E)
    theta: list[list[np.ndarray | None]]  # [S][E]
    order: np.ndarray  # (S, E): index into the geometry's Orders.variants
    each: dict[tuple[int, int, int], tuple[float, np.ndarray]]  # (s, e, v) -> (loss, theta)


def _fit_orders(
    group: list[Orders],
    setups: list[Setup],
    start_sets: dict[tuple[int, int, int], list[np.ndarray]],
) -> OrderFits:
    """Fit every (setup, geometry, order) that has starts (start_sets[s, e, v])."""
    flat = sorted({(e, v) for _, e, v in start_sets})
    families = [group[e].family(v) for e, v in flat]
    fits = fit_exact(
        families,
        setups,
        [start_sets.get((s, e, v), []) for s in range(len(setups)) for e, v in flat],
    )
    loss = np.full((len(setups), len(group)), np.inf)
    best = np.zeros((len(setups), len(group)), dtype=int)
    theta = [[None] * len(group) for _ in setups]
    each = {}
    for s in range(len(setups)):
        for f, (e, v) in enumerate(flat):
            if fits.theta[s][f] is None:
                continue
            each[s, e, v] = fits.loss[s, f], group[e].canonical(v, fits.theta[s][f])
            if fits.loss[s, f] < loss[s, e]:
                loss[s, e], best[s, e], theta[s][e] = fits.loss[s, f], v, each[s, e, v][1]
    return OrderFits(loss, theta, best, each)


def passes(D: int) -> int:
    """Cell fits per geometry along a last axis of D cells: the walk up and back down."""
    return 2 * D - 1


def fit(geometries: list[Geometry], setups: np.ndarray, progress=None) -> Fits:
    """Every geometry's least exact loss at every cell of setups (..., D), walking the last axis up,
    then back down (each cell also started from the next one's optimum, kept where it is lower)."""
    lead, D = setups.shape[:-1], setups.shape[-1]
    rows = setups.reshape(-1, D)
    Q = rows.shape[0]
    n = geometries[0].n_features
    counts = [len(g.parameters()) for g in geometries]
    shape = (Q, D)
    losses = np.full(shape + (len(geometries),), np.nan)
    theta = np.full(shape + (len(geometries), max(counts)), np.nan)
    exact = range(len(geometries))
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
    with Progress.of(progress, Q * passes(D) * len(geometries), "exact-loss fits", "cell") as bar:
        for i in range(D):
            cell_setups = list(rows[:, i])
            here = {}  # (k, j, v) -> (loss, theta) of every order fitted at this cell
            for stage in stages:
                start_sets = {}
                for k in range(Q):
                    for e, j in enumerate(stage):
                        previous = theta[k, i - 1, j, : counts[j]] if i > 0 else None
                        if j in parent_of:  # the parent's best orders here, from its optima in them
                            r = parent_of[j]
                            ranked = sorted((here[x][0], x[2]) for x in here if x[:2] == (k, r))
                            first = None
                            for place, (_, u) in enumerate(ranked[:PARENT_ORDERS]):
                                v, seed = _from_parent_order(orders[j], orders[r], here[k, r, u][1], u)
                                if place == 0:  # with the previous cell's optimum moved to this order
                                    first = v
                                    start_sets[k, e, v] = _free_starts(orders[j], v, seed, previous)
                                else:
                                    start_sets.setdefault((k, e, v), []).append(orders[j].in_order(v, seed))
                            own = order_index[k, i - 1, j]
                            if i > 0 and own != first:  # and in its own order there
                                start_sets.setdefault((k, e, own), []).append(
                                    orders[j].in_order(own, previous)
                                )
                            continue
                        own = {v: last[k, j, v] for v in range(len(orders[j].variants)) if (k, j, v) in last}
                        v_best = order_index[k, i - 1, j] if i > 0 else None
                        for v, x in _order_starts(orders[j], v_best, previous, own).items():
                            start_sets[k, e, v] = x
                fitted = _fit_orders([orders[j] for j in stage], cell_setups, start_sets)
                for (k, e, v), x in fitted.each.items():
                    last[k, stage[e], v] = x[1]
                    here[k, stage[e], v] = x
                for k in range(Q):
                    for e, j in enumerate(stage):
                        losses[k, i, j] = fitted.loss[k, e]
                        theta[k, i, j, : counts[j]] = fitted.theta[k][e]
                        order_index[k, i, j] = fitted.order[k, e]
            bar.update(Q * len(geometries))
        for i in range(D - 2, -1, -1):
            cell_setups = list(rows[:, i])
            for stage in stages:
                start_sets = {}
                for k in range(Q):
                    for e, j in enumerate(stage):
                        v = order_index[k, i + 1, j]
                        if np.isfinite(losses[k, i + 1, j]):
                            start_sets[k, e, v] = [orders[j].in_order(v, theta[k, i + 1, j, : counts[j]])]
                        r = parent_of.get(j)
                        if r is not None and np.isfinite(losses[k, i, r]):  # and from the parent's here
                            u = order_index[k, i, r]
                            v, seed = _from_parent_order(orders[j], orders[r], theta[k, i, r, : counts[r]], u)
                            start_sets.setdefault((k, e, v), []).append(orders[j].in_order(v, seed))
                fitted = _fit_orders([orders[j] for j in stage], cell_setups, start_sets)
                for k in range(Q):
                    for e, j in enumerate(stage):
                        if fitted.loss[k, e] < losses[k, i, j]:
                            losses[k, i, j] = fitted.loss[k, e]
                            theta[k, i, j, : counts[j]] = fitted.theta[k][e]
                            order_index[k, i, j] = fitted.order[k, e]
            bar.update(Q * len(geometries))

    W_each, b_each = _optima(geometries, orders, theta, order_index, counts)
    vertex_order = np.full(shape + (len(geometries), n), -1)
    for j in exact:
        for index in np.ndindex(*shape):
            vertices = polygon_vertices(orders[j].variants[order_index[index + (j,)]], W_each[index + (j,)])
            vertex_order[index + (j, slice(0, len(vertices)))] = vertices

    def solution(j: int, flat_cells: np.ndarray):
        m = geometries[j].n_hidden
        return W_each.reshape(-1, len(geometries), m, n)[flat_cells, j], b_each.reshape(
            -1, len(geometries), n
        )[flat_cells, j]

    return Fits(
        loss=losses.reshape(lead + (D, len(geometries))),
        theta=theta.reshape(lead + (D, len(geometries), max(counts))),
        vertex_order=vertex_order.reshape(lead + (D, len(geometries), n)),
        solution=solution,
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
            W[:, :, g], b[:, :, g], _ = _reshaped(Family.of(geometry), x)
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
