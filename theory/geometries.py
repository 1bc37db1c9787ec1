"""The geometry catalogue: named families W(theta), b(theta) and their closed-form losses.

A geometry is a composite of blocks (theory.blocks), each on its own features and neurons.

ClosedForm(geometry) gives the loss from theory.symbolic, one regime at a
time: each evaluation checks the regime's conditions, and a point outside
every regime derived so far gets its own (derived once, and kept on disk with
its numpy code by theory.regime_store for later processes).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from theory.blocks import Block
from theory.errors import InputError
from theory.loss import expected_loss
from theory.regime_store import RegimeStore
from theory.setup import Setup
from theory.symbolic import derive_loss, reference_values, regime_path


@dataclass(frozen=True)
class Geometry:
    """A named composite of blocks for an (n_features, n_hidden) problem."""

    name: str
    n_features: int
    n_hidden: int
    blocks: tuple[Block, ...]

    def __post_init__(self):
        features = [f for block in self.blocks for f in block.features]
        neurons = [k for block in self.blocks for k in block.neurons]
        if sorted(features) != list(range(self.n_features)):
            raise InputError(
                f"geometry {self.name!r} does not fit n_features = {self.n_features}: "
                f"its blocks cover features {sorted(features)}; each feature must be in exactly one block"
            )
        if len(set(neurons)) != len(neurons) or any(not 0 <= k < self.n_hidden for k in neurons):
            raise InputError(
                f"geometry {self.name!r} does not fit n_hidden = {self.n_hidden}: it uses neurons {neurons}; "
                "each must be in range and in at most one block"
            )

    @property
    def represented(self) -> int:
        """How many features the geometry gives a direction: all but the ignored ones."""
        return sum(len(block.features) for block in self.blocks if block.type.represents)

    def parameters(self) -> tuple[sp.Symbol, ...]:
        return tuple(_block_parts(self.blocks, self.n_features, self.n_hidden)[2])

    def matrices(self) -> tuple[sp.Matrix, sp.Matrix]:
        """W(theta) (m, n) and b(theta) (n,) as sympy matrices."""
        W, b, _ = _block_parts(self.blocks, self.n_features, self.n_hidden)
        return W.copy(), b.copy()

    def numeric_W_b(self, theta) -> tuple[np.ndarray, np.ndarray]:
        """W (m, n) and b (n,) at parameters theta (in the order of parameters()), as numpy arrays."""
        if self not in _NUMERIC:
            W, b = self.matrices()
            params = self.parameters()
            _NUMERIC[self] = (sp.lambdify(params, W, "numpy"), sp.lambdify(params, b, "numpy"))
        W_of, b_of = _NUMERIC[self]
        theta = np.asarray(theta, dtype=float)
        return (
            np.asarray(W_of(*theta), dtype=float).reshape(self.n_hidden, self.n_features),
            np.asarray(b_of(*theta), dtype=float).ravel(),
        )

    def start(self) -> np.ndarray:
        """A default starting point: unit norms, zero biases, polygons at angle 0.1."""
        return np.array([{"norm": 1.0, "bias": 0.0, "angle": 0.1}[role] for role in self.roles()])

    def roles(self) -> np.ndarray:
        """Each parameter's role: 'norm' (>= 0), 'bias' or 'angle'."""
        return parameter_roles(self.parameters())


#: numeric_W_b's compiled W(theta), b(theta), per geometry.
_NUMERIC: dict[Geometry, tuple] = {}

#: A parameter's role, read from its symbol's name (w_*, r_*: norms; b_*: biases; phi_*: angles).
_ROLES = {"w": "norm", "r": "norm", "b": "bias", "phi": "angle"}


def parameter_roles(parameters) -> np.ndarray:
    """The roles of sympy parameter symbols ('norm', 'bias' or 'angle'), in their order."""
    return np.array([_ROLES[t.name.split("_")[0]] for t in parameters])


@functools.cache
def _block_parts(blocks, n, m):
    """W (m, n) and b (n, 1) as sympy matrices, and the parameters, block after block (built once per
    layout: the fits ask for a geometry's parameters thousands of times; callers get copies of W, b)."""
    W = sp.zeros(m, n)
    b = sp.zeros(n, 1)
    params: list[sp.Symbol] = []
    for block in blocks:
        params.extend(block.type.parametrise(block, W, b))
    return W, b, params


def canonical_geometry(block: Block) -> Geometry:
    """This block alone: features 0..k-1 on neurons 0.. (one neuron, unused, for ignore)."""
    features = tuple(range(len(block.features)))
    neurons = tuple(range(len(block.neurons)))
    alone = Block(block.kind, features, neurons)
    return Geometry(f"{block.kind} block", len(features), max(1, len(neurons)), (alone,))


def cyclic_orders(features) -> list[tuple[int, ...]]:
    """The distinct vertex orders of a polygon on these features, up to rotation and reflection.

    The first is `features` itself. k vertices have (k - 1)! / 2 orders (one for k <= 3, 3 for a
    square, 12 for a pentagon). A reflection is a neuron sign flip, which leaves the loss unchanged,
    so an order and its reverse are one geometry.
    """
    first, *rest = tuple(features)
    if not rest:
        return [(first,)]
    return [
        (first, *(rest[i] for i in perm))
        for perm in itertools.permutations(range(len(rest)))
        if perm <= perm[::-1]
    ]


def polygon_blocks(geometry: Geometry) -> list[int]:
    """Indices of the geometry's polygon blocks with a vertex order (regular or free; an irregular
    polygon's order is wherever its angles put the vertices)."""
    return [i for i, block in enumerate(geometry.blocks) if block.type.ordered]


def counter_clockwise(block: Block, W: np.ndarray) -> tuple[int, ...]:
    """A planar block's features in the order of W's columns counter-clockwise from its first feature."""
    k1, k2 = block.neurons
    angle = {f: np.arctan2(W[k2, f], W[k1, f]) for f in block.features}
    first = block.features[0]
    return tuple(sorted(block.features, key=lambda f: (angle[f] - angle[first]) % (2 * np.pi)))


def polygon_vertices(geometry: Geometry, W: np.ndarray) -> list[int]:
    """The polygon blocks' features in vertex order, one block after another: a regular or free
    polygon's in its block's order, an irregular one's read off W (counter-clockwise)."""
    out = []
    for block in geometry.blocks:
        if block.type.ordered:
            out += block.features
        elif block.type.polygon:
            out += counter_clockwise(block, W) if np.isfinite(W).all() else block.features
    return [int(f) for f in out]


def with_vertex_orders(geometry: Geometry, orders) -> Geometry:
    """The geometry with its polygon blocks' vertices in the given orders (one per polygon block).

    The name, the parameters' names and everything else are unchanged.
    """
    blocks = list(geometry.blocks)
    indices = polygon_blocks(geometry)
    if len(orders) != len(indices):
        raise InputError(f"{geometry.name!r} has {len(indices)} polygon block(s), got {len(orders)} order(s)")
    for i, order in zip(indices, orders, strict=True):
        if sorted(order) != sorted(blocks[i].features):
            raise InputError(f"vertex order {tuple(order)} is not an order of {blocks[i].features}")
        blocks[i] = Block(blocks[i].kind, tuple(int(f) for f in order), blocks[i].neurons)
    return Geometry(geometry.name, geometry.n_features, geometry.n_hidden, tuple(blocks))


def vertex_variants(geometry: Geometry) -> list[Geometry]:
    """The geometry in every distinct vertex order of its polygons; the geometry itself first."""
    choices = [cyclic_orders(geometry.blocks[i].features) for i in polygon_blocks(geometry)]
    return [with_vertex_orders(geometry, orders) for orders in itertools.product(*choices)]


def setup_args(setup: Setup) -> np.ndarray:
    """A setup as the closed forms' columns: density_0..n-1, importance_0..n-1, p."""
    if setup.dropout_groups is not None:
        raise InputError(
            "the closed forms assume every hidden unit is dropped on its own; with dropout_groups, fit on "
            "the exact loss (theory.fits.fit_geometries does)"
        )
    return np.array([*setup.density, *setup.importance, setup.p])


@dataclass
class Evaluation:
    """A batched evaluation: loss, gradient and Hessian (None unless asked for), regime index per cell."""

    value: np.ndarray
    grad: np.ndarray | None
    hess: np.ndarray | None
    regime: np.ndarray


#: Regimes with more operations than this get their derivatives numerically
#: (complex step, then central differences) instead of symbolically: sympy's
#: diff and cse of a triangle regime (~10^4 operations) took 11 s for the
#: gradient and 48 s for the Hessian, and a polygon meets dozens of regimes
#: over a phase diagram; 2-in-1 blocks' regimes have at most ~400 operations.
SYMBOLIC_DERIVATIVE_OPS = 2000

#: Complex-step size: f'(x) = Im f(x + ih) / h with no cancellation, exact to rounding.
_COMPLEX_STEP = 1e-30
#: Relative step of the central differences of the gradient that give a numeric Hessian.
_HESSIAN_STEP = 1e-5


@dataclass
class _Compiled:
    """One regime's numpy code (from the regime store); derivatives compiled on first use (they are
    the slow part).

    Within a regime the loss is one analytic expression (polynomials, divided
    differences, sin and cos), so for large expressions the gradient comes
    exactly from the complex step, and the Hessian from central differences of
    that gradient (relative error ~1e-10, enough for Newton steps; the
    stopping rule uses the exact gradient).
    """

    store: RegimeStore
    regime_id: str
    count: int
    _functions: dict = field(default_factory=dict)
    _symbolic: bool | None = None

    def _function(self, part: str):
        if part not in self._functions:
            self._functions[part] = self.store.function(self.regime_id, part)
        return self._functions[part]

    def value(self, *values):
        return self._function("value")(*values)

    def conditions(self, *values):
        return self._function("conditions")(*values)

    def strict(self, *values):
        return self._function("strict")(*values)

    @property
    def symbolic(self) -> bool:
        if self._symbolic is None:
            self._symbolic = self.store.operations(self.regime_id) <= SYMBOLIC_DERIVATIVE_OPS
        return self._symbolic

    def _complex_step(self, theta: list, rest: list) -> np.ndarray:
        """Gradient (..., P) by the complex step, for theta columns of any common shape."""
        count = len(theta)
        theta = np.stack(np.broadcast_arrays(*theta), 0).astype(complex)  # (P, ...)
        shifted = np.broadcast_to(theta, (count,) + theta.shape).copy()  # (P: direction, P, ...)
        shifted[np.arange(count), np.arange(count)] += 1j * _COMPLEX_STEP
        out = np.imag(self.value(*shifted.swapaxes(0, 1), *[np.asarray(r)[None] for r in rest]))
        out = np.broadcast_to(out, (count,) + theta.shape[1:])  # a constant expression gives a scalar
        return np.moveaxis(out, 0, -1) / _COMPLEX_STEP

    def gradient(self, *values):
        count = self.count
        if not self.symbolic:
            grad = self._complex_step(list(values[:count]), list(values[count:]))
            return [grad[..., k] for k in range(count)]
        return self._function("gradient")(*values)

    def hessian(self, *values):
        count = self.count
        if not self.symbolic:
            theta = np.stack(np.broadcast_arrays(*values[:count]), 0).astype(float)  # (P, ...)
            step = _HESSIAN_STEP * (1.0 + np.abs(theta))
            shifted = np.broadcast_to(theta, (2, count) + theta.shape).copy()  # (sign, direction, P, ...)
            shifted[0, np.arange(count), np.arange(count)] += step
            shifted[1, np.arange(count), np.arange(count)] -= step
            grad = self._complex_step(
                list(np.moveaxis(shifted, 2, 0)), [np.asarray(r)[None, None] for r in values[count:]]
            )  # (sign, direction, ..., component)
            hess = (grad[0] - grad[1]) / (2 * step[..., None])  # (direction, ..., component)
            hess = 0.5 * (hess + np.swapaxes(hess, 0, -1))
            return [[hess[j, ..., k] for k in range(count)] for j in range(count)]
        return self._function("hessian")(*values)


@dataclass
class RegimeForm:
    """The closed-form loss of one geometry derived as a whole, regime by regime.

    ClosedForm uses one per block (each block on its own features and
    neurons). Regimes in use are kept in `regimes`; a point outside all of them
    gets the regime derive_loss gives there: from the store (theory.regime_store,
    which keeps what earlier processes derived), or derived (derive=True) and
    stored.
    """

    geometry: Geometry
    regimes: list[_Compiled] = field(default_factory=list)

    def __post_init__(self):
        self._W, self._b = self.geometry.matrices()
        self._params = self.geometry.parameters()
        self.store = RegimeStore(self._W, self._b, self._params)

    def parameters(self) -> tuple[sp.Symbol, ...]:
        return self._params

    @staticmethod
    def _holds(compiled: _Compiled, theta_columns, p, shape, tolerance: float) -> np.ndarray:
        """Where the regime's conditions hold, for columns of theta (each of the given shape)."""
        ok = np.ones(shape, dtype=bool)
        for c in compiled.conditions(*theta_columns, p):
            ok &= np.broadcast_to(np.asarray(c, dtype=float), shape) >= -tolerance
        for c in compiled.strict(*theta_columns, p):
            ok &= np.broadcast_to(np.asarray(c, dtype=float), shape) > 0
        return ok

    def regime_at(self, theta, p: float, tolerance: float = 1e-12, derive: bool = True) -> _Compiled | None:
        """The compiled regime whose conditions hold at (theta, p)."""
        theta = [float(t) for t in theta]
        for compiled in self.regimes:
            if self._holds(compiled, theta, p, (), tolerance):
                return compiled
        return self._derive(theta, p, derive)

    def _derive(self, theta, p: float, derive: bool = True) -> _Compiled | None:
        """The regime derive_loss gives at (theta, p), now in use: from the store, or derived and
        stored (None if it is not stored and derive is False)."""
        point = dict(zip(self._params, (float(t) for t in theta), strict=True))
        regime_id = self.store.regime_id(regime_path(*reference_values(self._W, self._b, point, p), p))
        if not self.store.has(regime_id):
            if not derive:
                return None
            self.store.save(regime_id, derive_loss(self._W, self._b, self._params, point, p))
        compiled = _Compiled(self.store, regime_id, len(self._params))
        self.regimes.append(compiled)
        return compiled

    def evaluate(self, theta: np.ndarray, columns: np.ndarray, order: int = 0, hint=None) -> Evaluation:
        """Batched loss (C,), gradient (C, P) for order >= 1, Hessian (C, P, P) for order 2.

        theta: (C, P); columns: (C, 2n + 1), setup_args(setup) per cell: density_0..n-1,
        importance_0..n-1, p. Each cell uses a regime whose conditions hold
        there, trying first the regime index in hint (C,) if given; cells
        outside every regime so far get a new one derived.
        """
        cells, count = theta.shape
        out = Evaluation(
            value=np.empty(cells),
            grad=np.empty((cells, count)) if order >= 1 else None,
            hess=np.empty((cells, count, count)) if order >= 2 else None,
            regime=np.full(cells, -1),
        )
        p_column = columns[:, -1]

        def fill(index: int, candidates: np.ndarray) -> None:
            compiled = self.regimes[index]
            th = [theta[candidates, k] for k in range(count)]
            ok = self._holds(compiled, th, p_column[candidates], candidates.shape, 1e-12)
            idx = candidates[ok]
            if idx.size == 0:
                return
            args = (*[t[ok] for t in th], *[columns[idx, j] for j in range(columns.shape[1])])
            out.value[idx] = np.broadcast_to(compiled.value(*args), idx.shape)
            if order >= 1:
                out.grad[idx] = np.stack(
                    [np.broadcast_to(g, idx.shape) for g in compiled.gradient(*args)], -1
                )
            if order >= 2:
                rows = compiled.hessian(*args)
                out.hess[idx] = np.stack(
                    [np.stack([np.broadcast_to(h, idx.shape) for h in row], -1) for row in rows], -2
                )
            out.regime[idx] = index

        if hint is not None:
            for index in np.unique(hint[hint >= 0]):
                fill(int(index), np.flatnonzero(hint == index))
        index = 0
        while (out.regime < 0).any():
            if index == len(self.regimes):
                first = int(np.flatnonzero(out.regime < 0)[0])
                self._derive(theta[first], float(p_column[first]))  # no regime held there
            fill(index, np.flatnonzero(out.regime < 0))
            index += 1
        return out


#: Block forms shared by every ClosedForm in the process (a dedicated block is
#: the same whichever feature and neuron it sits on), keyed by canonical block.
_BLOCK_FORMS: dict[Geometry, RegimeForm] = {}


@dataclass(frozen=True)
class _Part:
    """One block of a composite: its form, its parameter columns, its setup columns."""

    form: RegimeForm
    params: np.ndarray
    columns: np.ndarray


class ClosedForm:
    """The closed-form loss of a geometry, the sum of its blocks' losses, with the exact loss as the check.

    Blocks share no features and no neurons, so output i depends only on its
    own block's features and neurons, and the dropout masks of different
    neurons are independent: the loss (a sum over features) is exactly the sum
    of the blocks' losses, each a function of its own parameters and of its
    features' densities and importances. Each block's loss is derived once,
    regime by regime, on the block alone (features 0..k-1, neurons 0..), and
    shared through cache (default: one per process) by every geometry that
    contains the block. A composite's regimes are thus products of its
    blocks' few regimes, never derived as a whole.

    loss(theta, setup) evaluates the regimes containing (theta, setup.p); a
    point outside every regime derived so far gets one derived for it
    (derive=True) or the exact loss (derive=False).
    """

    def __init__(self, geometry: Geometry, cache: dict[Geometry, RegimeForm] | None = None):
        self.geometry = geometry
        cache = _BLOCK_FORMS if cache is None else cache
        self._params = geometry.parameters()
        n = geometry.n_features
        parts, offset = [], 0
        for block in geometry.blocks:
            canonical = canonical_geometry(block)
            count = len(canonical.parameters())
            features = np.array(block.features)
            columns = np.concatenate([features, n + features, [2 * n]])
            if canonical not in cache:
                cache[canonical] = RegimeForm(canonical)
            parts.append(_Part(cache[canonical], np.arange(offset, offset + count), columns))
            offset += count
        if offset != len(self._params):
            raise AssertionError("block parameters do not add up to the geometry's")
        self._parts = tuple(parts)

    def parameters(self) -> tuple[sp.Symbol, ...]:
        return self._params

    def numeric_W_b(self, theta) -> tuple[np.ndarray, np.ndarray]:
        return self.geometry.numeric_W_b(theta)

    def _check(self, setup: Setup) -> None:
        g = self.geometry
        if (setup.n_features, setup.n_hidden) != (g.n_features, g.n_hidden):
            raise InputError(
                f"geometry {g.name!r} is for ({g.n_features}, {g.n_hidden}); "
                f"the setup is ({setup.n_features}, {setup.n_hidden})"
            )

    def evaluate(self, theta: np.ndarray, columns: np.ndarray, order: int = 0, hint=None) -> Evaluation:
        """Batched loss (C,), gradient (C, P) for order >= 1, Hessian (C, P, P) for order 2.

        theta: (C, P); columns: (C, 2n + 1), setup_args(setup) per cell: density_0..n-1,
        importance_0..n-1, p. The regime is per cell and block, (C, blocks);
        hint, a previous result's regime, is tried first.
        """
        cells, count = theta.shape
        out = Evaluation(
            value=np.zeros(cells),
            grad=np.zeros((cells, count)) if order >= 1 else None,
            hess=np.zeros((cells, count, count)) if order >= 2 else None,
            regime=np.empty((cells, len(self._parts)), dtype=int),
        )
        for j, part in enumerate(self._parts):
            result = part.form.evaluate(
                theta[:, part.params], columns[:, part.columns], order, None if hint is None else hint[:, j]
            )
            out.value += result.value
            if order >= 1:
                out.grad[:, part.params] += result.grad
            if order >= 2:
                out.hess[:, part.params[:, None], part.params[None, :]] += result.hess
            out.regime[:, j] = result.regime
        return out

    def loss(self, theta, setup: Setup, derive: bool = True) -> float:
        self._check(setup)
        theta = np.asarray(theta, float)
        if not derive and any(
            part.form.regime_at(theta[part.params], setup.p, derive=False) is None for part in self._parts
        ):
            W, b = self.numeric_W_b(theta)
            return float(expected_loss(setup, W, b))
        return float(self.evaluate(np.atleast_2d(theta), setup_args(setup)[None]).value[0])

    def loss_and_grad(self, theta, setup: Setup) -> tuple[float, np.ndarray]:
        self._check(setup)
        result = self.evaluate(np.atleast_2d(np.asarray(theta, float)), setup_args(setup)[None], order=1)
        return float(result.value[0]), result.grad[0]
