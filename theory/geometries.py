"""The geometry catalogue: named families W(theta), b(theta) and their closed-form losses.

A geometry is a composite of blocks, each on its own features and neurons:

- ignore(f): feature f not represented; its bias b_f free (optimum: its mean);
- dedicated(f, k): feature f alone on neuron k, norm w_f and bias b_f free;
- antipodal(f, g, k): features f and g on neuron k with opposite signs,
  norms w_f, w_g and biases b_f, b_g free;
- parallel(f, g, k): the same with equal signs (with the biases offsetting
  each other: the dense optimum at p = 0 that the completeness check found);
- polygon(features, (k1, k2)): a regular k-gon in the plane of neurons k1, k2,
  shared norm r, shared bias, and the angle phi of its first vertex from
  neuron k1 (with dropout the loss depends on phi: the privileged basis).

ClosedForm(geometry) gives the loss from theory.symbolic, one regime at a
time: each evaluation checks the regime's conditions, and a point outside
every regime derived so far gets its own (derived once, cached).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from theory.errors import InputError
from theory.loss import expected_loss
from theory.setup import Setup
from theory.symbolic import RegimeLoss, density_symbols, derive_loss, importance_symbols, p_symbol

BLOCK_KINDS = ("ignore", "dedicated", "antipodal", "parallel", "polygon")


@dataclass(frozen=True)
class Block:
    kind: str
    features: tuple[int, ...]
    neurons: tuple[int, ...] = ()

    def __post_init__(self):
        if self.kind not in BLOCK_KINDS:
            raise InputError(f"block kind {self.kind!r} is unknown; allowed: {', '.join(BLOCK_KINDS)}")
        wanted = {"ignore": (1, 0), "dedicated": (1, 1), "antipodal": (2, 1), "parallel": (2, 1)}
        if self.kind in wanted and (len(self.features), len(self.neurons)) != wanted[self.kind]:
            f, k = wanted[self.kind]
            raise InputError(f"a {self.kind} block takes {f} feature(s) and {k} neuron(s)")
        if self.kind == "polygon" and (not 2 <= len(self.features) <= 6 or len(self.neurons) != 2):
            raise InputError("a polygon block takes 2 to 6 features and 2 neurons")

    @property
    def label(self) -> str:
        return "_".join(str(f) for f in self.features)


def ignore(f: int) -> Block:
    return Block("ignore", (f,))


def dedicated(f: int, neuron: int) -> Block:
    return Block("dedicated", (f,), (neuron,))


def antipodal(f: int, g: int, neuron: int) -> Block:
    return Block("antipodal", (f, g), (neuron,))


def parallel(f: int, g: int, neuron: int) -> Block:
    return Block("parallel", (f, g), (neuron,))


def polygon(features, neurons=(0, 1)) -> Block:
    return Block("polygon", tuple(features), tuple(neurons))


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
        return sum(len(block.features) for block in self.blocks if block.kind != "ignore")

    def parameters(self) -> tuple[sp.Symbol, ...]:
        return tuple(_block_parts(self.blocks, self.n_features, self.n_hidden)[2])

    def matrices(self) -> tuple[sp.Matrix, sp.Matrix]:
        """W(theta) (m, n) and b(theta) (n,) as sympy matrices."""
        W, b, _ = _block_parts(self.blocks, self.n_features, self.n_hidden)
        return W, b

    def start(self) -> np.ndarray:
        """A default starting point: unit norms, zero biases, polygons at angle 0.1."""
        values = []
        for symbol in self.parameters():
            kind = symbol.name.split("_")[0]
            values.append({"w": 1.0, "r": 1.0, "b": 0.0, "phi": 0.1}[kind])
        return np.array(values)


def _block_parts(blocks, n, m):
    W = sp.zeros(m, n)
    b = sp.zeros(n, 1)
    params: list[sp.Symbol] = []
    for block in blocks:
        if block.kind == "ignore":
            (f,) = block.features
            b[f] = sp.Symbol(f"b_{f}", real=True)
            params.append(b[f])
        elif block.kind in ("dedicated", "antipodal", "parallel"):
            (k,) = block.neurons
            signs = (1, 1) if block.kind == "parallel" else (1, -1)
            for sign, f in zip(signs, block.features, strict=False):
                w = sp.Symbol(f"w_{f}", positive=True)
                W[k, f] = sign * w
                b[f] = sp.Symbol(f"b_{f}", real=True)
                params.extend([w, b[f]])
        else:
            k1, k2 = block.neurons
            r = sp.Symbol(f"r_{block.label}", positive=True)
            bias = sp.Symbol(f"b_{block.label}", real=True)
            phi = sp.Symbol(f"phi_{block.label}", real=True)
            count = len(block.features)
            for t, f in enumerate(block.features):
                angle = phi + 2 * sp.pi * t / count
                W[k1, f] = r * sp.cos(angle)
                W[k2, f] = r * sp.sin(angle)
                b[f] = bias
            params.extend([r, bias, phi])
    return W, b, params


def setup_args(setup: Setup) -> np.ndarray:
    """A setup as the closed forms' columns: density_0..n-1, importance_0..n-1, p."""
    return np.array([*setup.density, *setup.importance, setup.p])


def catalogue(n_features: int, n_hidden: int) -> tuple[Geometry, ...]:
    """The standard candidates for the problems the theory studies: (2, 1), (3, 2), (5, 2)."""
    shape = (n_features, n_hidden)
    G = Geometry
    if shape == (2, 1):
        return (
            G("ignore all", 2, 1, (ignore(0), ignore(1))),
            G("dedicated 0", 2, 1, (dedicated(0, 0), ignore(1))),
            G("dedicated 1", 2, 1, (dedicated(1, 0), ignore(0))),
            G("antipodal", 2, 1, (antipodal(0, 1, 0),)),
            G("same-sign pair", 2, 1, (parallel(0, 1, 0),)),
        )
    if shape == (3, 2):
        return (
            G("ignore all", 3, 2, (ignore(0), ignore(1), ignore(2))),
            G("dedicated 0", 3, 2, (dedicated(0, 0), ignore(1), ignore(2))),
            G("dedicated 0 1", 3, 2, (dedicated(0, 0), dedicated(1, 1), ignore(2))),
            G("antipodal 0 1, ignore 2", 3, 2, (antipodal(0, 1, 0), ignore(2))),
            G("antipodal 0 2, ignore 1", 3, 2, (antipodal(0, 2, 0), ignore(1))),
            G("antipodal 1 2, dedicated 0", 3, 2, (dedicated(0, 0), antipodal(1, 2, 1))),
            G("antipodal 0 2, dedicated 1", 3, 2, (antipodal(0, 2, 0), dedicated(1, 1))),
            G("triangle", 3, 2, (polygon((0, 1, 2)),)),
        )
    if shape == (5, 2):
        return (
            G("pentagon", 5, 2, (polygon(range(5)),)),
            G("square, ignore 4", 5, 2, (polygon(range(4)), ignore(4))),
            G("two antipodal, ignore 4", 5, 2, (antipodal(0, 2, 0), antipodal(1, 3, 1), ignore(4))),
            G("two dedicated", 5, 2, (dedicated(0, 0), dedicated(1, 1), ignore(2), ignore(3), ignore(4))),
            G(
                "antipodal 0 1, dedicated 2",
                5,
                2,
                (antipodal(0, 1, 0), dedicated(2, 1), ignore(3), ignore(4)),
            ),
            G("triangle, ignore 3 4", 5, 2, (polygon(range(3)), ignore(3), ignore(4))),
        )
    raise InputError(
        f"no catalogue for n_features = {n_features}, n_hidden = {n_hidden}; "
        "build a Geometry from blocks instead"
    )


def geometry(name: str, n_features: int, n_hidden: int) -> Geometry:
    """A catalogue geometry by name."""
    options = catalogue(n_features, n_hidden)
    for g in options:
        if g.name == name:
            return g
    raise InputError(
        f"unknown geometry {name!r} for ({n_features}, {n_hidden}); "
        f"allowed: {', '.join(repr(g.name) for g in options)}"
    )


@dataclass
class Evaluation:
    """A batched evaluation: loss, gradient and Hessian (None unless asked for), regime index per cell."""

    value: np.ndarray
    grad: np.ndarray | None
    hess: np.ndarray | None
    regime: np.ndarray


@dataclass
class _Compiled:
    """One regime, lambdified; the gradient is compiled on first use (it is the slow part)."""

    regime: RegimeLoss
    args: tuple
    value: object
    conditions: object
    strict: object
    _gradient: object = None

    _hessian: object = None

    def gradient(self, *values):
        if self._gradient is None:
            derivatives = [sp.diff(self.regime.expr, t) for t in self.regime.params]
            self._gradient = sp.lambdify(self.args, derivatives, "numpy", cse=True)
        return self._gradient(*values)

    def hessian(self, *values):
        if self._hessian is None:
            hessian = sp.hessian(self.regime.expr, self.regime.params)
            self._hessian = sp.lambdify(self.args, hessian.tolist(), "numpy", cse=True)
        return self._hessian(*values)


@dataclass
class ClosedForm:
    """The closed-form loss of a geometry, regime by regime, with the exact loss as the check.

    loss(theta, setup) evaluates the regime containing (theta, setup.p); a
    point outside every regime derived so far gets one derived for it
    (derive=True) or the exact loss (derive=False).
    """

    geometry: Geometry
    max_active: int | None = None
    regimes: list[_Compiled] = field(default_factory=list)

    def __post_init__(self):
        self._W, self._b = self.geometry.matrices()
        self._params = self.geometry.parameters()
        n = self.geometry.n_features
        self._setup_symbols = (*density_symbols(n), *importance_symbols(n), p_symbol)
        self._W_numeric = sp.lambdify(self._params, self._W, "numpy")
        self._b_numeric = sp.lambdify(self._params, self._b, "numpy")

    def parameters(self) -> tuple[sp.Symbol, ...]:
        return self._params

    def numeric_W_b(self, theta) -> tuple[np.ndarray, np.ndarray]:
        theta = np.asarray(theta, dtype=float)
        return (
            np.asarray(self._W_numeric(*theta), dtype=float),
            np.asarray(self._b_numeric(*theta), dtype=float).ravel(),
        )

    def _check(self, setup: Setup) -> None:
        g = self.geometry
        if (setup.n_features, setup.n_hidden) != (g.n_features, g.n_hidden):
            raise InputError(
                f"geometry {g.name!r} is for ({g.n_features}, {g.n_hidden}); "
                f"the setup is ({setup.n_features}, {setup.n_hidden})"
            )

    def _compile(self, regime: RegimeLoss) -> _Compiled:
        args = (*self._params, *self._setup_symbols)
        value = sp.lambdify(args, regime.expr, "numpy", cse=True)
        conditions = sp.lambdify((*self._params, p_symbol), list(regime.conditions), "numpy", cse=True)
        strict = sp.lambdify((*self._params, p_symbol), list(regime.strict), "numpy", cse=True)
        return _Compiled(regime, args, value, conditions, strict)

    @staticmethod
    def _holds(compiled: _Compiled, theta_columns, p, shape, tolerance: float) -> np.ndarray:
        """Where the regime's conditions hold, for columns of theta (each of the given shape)."""
        ok = np.ones(shape, dtype=bool)
        if compiled.regime.conditions:
            for c in compiled.conditions(*theta_columns, p):
                ok &= np.broadcast_to(np.asarray(c, dtype=float), shape) >= -tolerance
        if compiled.regime.strict:
            for c in compiled.strict(*theta_columns, p):
                ok &= np.broadcast_to(np.asarray(c, dtype=float), shape) > 0
        return ok

    def regime_at(self, theta, p: float, tolerance: float = 1e-12, derive: bool = True) -> _Compiled | None:
        """The compiled regime whose conditions hold at (theta, p)."""
        theta = [float(t) for t in theta]
        for compiled in self.regimes:
            if self._holds(compiled, theta, p, (), tolerance):
                return compiled
        if not derive:
            return None
        point = dict(zip(self._params, theta, strict=True))
        regime = derive_loss(self._W, self._b, self._params, point, p, self.max_active)
        compiled = self._compile(regime)
        self.regimes.append(compiled)
        return compiled

    def loss(self, theta, setup: Setup, derive: bool = True) -> float:
        self._check(setup)
        if not derive and self.regime_at(theta, setup.p, derive=False) is None:
            W, b = self.numeric_W_b(theta)
            return float(expected_loss(setup, W, b))
        return float(self.evaluate(np.atleast_2d(np.asarray(theta, float)), setup_args(setup)[None]).value[0])

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
                self.regime_at(theta[first], float(p_column[first]))
            fill(index, np.flatnonzero(out.regime < 0))
            index += 1
        return out

    def loss_and_grad(self, theta, setup: Setup) -> tuple[float, np.ndarray]:
        self._check(setup)
        result = self.evaluate(np.atleast_2d(np.asarray(theta, float)), setup_args(setup)[None], order=1)
        return float(result.value[0]), result.grad[0]
