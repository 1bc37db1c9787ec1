"""Closed-form expected loss of a parametrised (W(theta), b(theta)), one regime at a time.

The same enumeration as theory.loss (dropout masks x active sets x outputs,
then E[y_+^2] over the cube by the pivot recursion of theory.cube), carried
out in sympy. The ReLU makes the loss piecewise: which branch each node of
the pivot tree takes (zero, polynomial, or divided difference) depends on
signs of offsets b_i + sum c_j. Those branches are chosen at a reference
point theta0 (each symbolic quantity travels with its numeric value there),
and every choice is recorded as a condition g(theta, p) >= 0. The result is
exact on the region where all the conditions hold: the regime. Outside it
another regime must be derived (theory.geometries does that, and keeps
them). regime_path lists the choices without deriving anything, so it names
the regime a point gets (theory.regime_store keeps regimes by it).

Conditions come from the reflection of negative coefficients, the zero and
polynomial shortcuts, and the divided-difference branch. That branch is
exact for any non-zero pivot, but numerically sound only where, as in
theory.cube, the node really straddles 0 and the pivot is the largest
remaining coefficient; so it records the straddle (offset <= 0 <= offset +
sum), pivot >= every other remaining coefficient, and pivot > 0 (strict).

Symbols: p (dropout rate), density_i = 1 - S_i, importance_i.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import sympy as sp

p_symbol = sp.Symbol("p", nonnegative=True)


def density_symbols(n: int) -> tuple[sp.Symbol, ...]:
    return tuple(sp.Symbol(f"density_{i}", positive=True) for i in range(n))


def importance_symbols(n: int) -> tuple[sp.Symbol, ...]:
    return tuple(sp.Symbol(f"importance_{i}", nonnegative=True) for i in range(n))


@dataclass(frozen=True)
class _Value:
    """A symbolic quantity and its numeric value at the reference point."""

    expr: sp.Expr
    value: float

    def __add__(self, other: _Value) -> _Value:
        return _Value(self.expr + other.expr, self.value + other.value)

    def __neg__(self) -> _Value:
        return _Value(-self.expr, -self.value)


@dataclass(frozen=True)
class RegimeLoss:
    """L(theta; density, importance, p) in closed form, valid where every condition is >= 0
    and every strict condition is > 0."""

    expr: sp.Expr
    conditions: tuple[sp.Expr, ...]
    strict: tuple[sp.Expr, ...]
    params: tuple[sp.Symbol, ...]
    n_features: int
    max_active: int


def _moments(coefs: list[sp.Expr], order: int) -> list[sp.Expr]:
    """Raw moments E[(sum_j a_j u_j)^r], r = 0..order, u_j uniform on [0, 1]."""
    mu = [sp.Integer(1)] + [sp.Integer(0)] * order
    for a in coefs:
        mu = [
            sum(sp.binomial(r, s) * a**s / (s + 1) * mu[r - s] for s in range(r + 1))
            for r in range(order + 1)
        ]
    return mu


def _cube(
    offset: _Value, coefs: list[_Value], q: int, conditions: list[sp.Expr], strict: list[sp.Expr]
) -> sp.Expr:
    """E[(offset + sum_j a_j u_j)_+^q] for a_j >= 0 sorted by value, largest first."""
    top = offset.value + sum(a.value for a in coefs)
    if offset.value >= 0:
        conditions.append(offset.expr)
        mu = _moments([a.expr for a in coefs], q)
        return sum(sp.binomial(q, r) * offset.expr ** (q - r) * mu[r] for r in range(q + 1))
    if top <= 0:
        conditions.append(-(offset.expr + sum(a.expr for a in coefs)))
        return sp.Integer(0)
    pivot, rest = coefs[0], coefs[1:]
    conditions.append(-offset.expr)
    conditions.append(offset.expr + sum(a.expr for a in coefs))
    conditions.extend(pivot.expr - a.expr for a in rest)  # the pivot is the largest, as in theory.cube
    strict.append(pivot.expr)
    upper = _cube(offset + pivot, rest, q + 1, conditions, strict)
    lower = _cube(offset, rest, q + 1, conditions, strict)
    return (upper - lower) / ((q + 1) * pivot.expr)


def truncated_power_moment(
    offset: _Value, coefs: list[_Value], q: int, conditions: list[sp.Expr], strict: list[sp.Expr]
) -> sp.Expr:
    """E[(offset + c . u)_+^q] in the regime of the reference values.

    Appends the regime's conditions g >= 0 to conditions and g > 0 to strict.
    """
    lo = offset
    reflected = []
    for c in coefs:
        if c.expr == 0:
            continue
        if c.value < 0:
            conditions.append(-c.expr)
            lo = lo + c
            reflected.append(-c)
        else:
            conditions.append(c.expr)
            reflected.append(c)
    reflected.sort(key=lambda a: -a.value)
    return _cube(lo, reflected, q, conditions, strict)


def reference_values(
    W: sp.Matrix, b: sp.Matrix, point: dict[sp.Symbol, float], p_value: float
) -> tuple[np.ndarray, np.ndarray]:
    """W (m, n) and b (n,) at the point, as the floats derive_loss takes its choices on."""
    numeric = {**point, p_symbol: p_value}
    W_val = np.array(W.subs(numeric).evalf(), dtype=float)
    return W_val, np.array(b.subs(numeric).evalf(), dtype=float).ravel()


def _kept_gram(W_val: np.ndarray, mask, p_value: float) -> np.ndarray:
    """W^T D W / (1 - p) for the dropout mask's diagonal D: the coefficients of the inputs."""
    return W_val.T @ np.diag(mask) @ W_val / (1 - p_value)


def _cube_choices(offset: float, coefs: list[float], out: list[int]) -> None:
    """_cube's choices (0: polynomial, 1: zero, 2: divided difference, then both children)."""
    top = offset + sum(coefs)
    if offset >= 0:
        out.append(0)
    elif top <= 0:
        out.append(1)
    else:
        out.append(2)
        _cube_choices(offset + coefs[0], coefs[1:], out)
        _cube_choices(offset, coefs[1:], out)


def regime_path(W_val: np.ndarray, b_val: np.ndarray, p_value: float, max_active: int | None = None) -> bytes:
    """Every choice derive_loss takes at these reference values (see reference_values), in its order.

    Two points with the same path get the same regime from derive_loss, so the path names the
    regime without deriving it (theory.regime_store keeps regimes by it). It repeats the choices
    of truncated_power_moment and _cube on the same floats in the same order (the coefficients
    there are dummy symbols, never identically 0): which coefficients are reflected, the order
    the sort leaves them in, and each node's branch.
    """
    m, n = W_val.shape
    max_active = n if max_active is None else max_active
    out: list[int] = [max_active]
    for mask in itertools.product([0, 1], repeat=m):
        M_val = _kept_gram(W_val, mask, p_value)
        for k in range(max_active + 1):
            for active in itertools.combinations(range(n), k):
                for i in range(n):
                    lo = float(b_val[i])
                    reflected = []
                    for j in active:
                        c = float(M_val[i, j])
                        if c < 0:
                            lo = lo + c
                            reflected.append(-c)
                        else:
                            reflected.append(c)
                        out.append(int(c < 0))
                    order = sorted(range(len(reflected)), key=lambda j: -reflected[j])
                    out.extend(order)
                    _cube_choices(lo, [reflected[j] for j in order], out)
    return np.array(out, dtype=np.int16).tobytes()


def derive_loss(
    W: sp.Matrix,
    b: sp.Matrix,
    params: tuple[sp.Symbol, ...],
    point: dict[sp.Symbol, float],
    p_value: float,
    max_active: int | None = None,
) -> RegimeLoss:
    """The expected loss of (W(theta), b(theta)) in the regime that contains (point, p_value).

    W: sympy Matrix (m, n) in params; b: (n,). max_active truncates the sum to
    active sets of at most that many features (leading orders in the density).
    """
    m, n = W.shape
    max_active = n if max_active is None else max_active
    density, importance = density_symbols(n), importance_symbols(n)
    W_val, b_val = reference_values(W, b, point, p_value)
    gammas = sp.symbols(f"gamma_0:{n}", real=True)
    beta = sp.Symbol("beta", real=True)
    conditions: list[sp.Expr] = []
    strict: list[sp.Expr] = []
    total = sp.Integer(0)
    for mask in itertools.product([0, 1], repeat=m):
        kept = sum(mask)
        p_mask = (1 - p_symbol) ** kept * p_symbol ** (m - kept)
        D = sp.diag(*mask)
        M = (W.T * D * W) / (1 - p_symbol)
        M_val = _kept_gram(W_val, mask, p_value)
        for k in range(max_active + 1):
            for active in itertools.combinations(range(n), k):
                p_set = sp.Mul(*[density[j] if j in active else 1 - density[j] for j in range(n)])
                for i in range(n):
                    coefs = [_Value(sp.expand(M[i, j]), float(M_val[i, j])) for j in active]
                    local: list[sp.Expr] = []
                    local_strict: list[sp.Expr] = []
                    # Dummy symbols for the coefficients: E[u_i y_+] = (1/2) dE[y_+^2]/dc_i.
                    # Kept even where c_i is identically 0, whose derivative is still needed.
                    dummies = [_Value(g, c.value) for g, c in zip(gammas, coefs, strict=False)]
                    second = truncated_power_moment(
                        _Value(beta, float(b_val[i])), dummies, 2, local, local_strict
                    )
                    term = second
                    if i in active:
                        pos = active.index(i)
                        term = sp.Rational(1, 3) - sp.diff(second, gammas[pos]) + second
                    replace = {g: c.expr for g, c in zip(gammas, coefs, strict=False)}
                    replace[beta] = b[i]
                    total += p_mask * p_set * importance[i] * term.xreplace(replace)
                    conditions.extend(sp.expand(g.xreplace(replace)) for g in local)
                    strict.extend(sp.expand(g.xreplace(replace)) for g in local_strict)
    unique = tuple(dict.fromkeys(c for c in conditions if not (c.is_number and c >= 0)))
    unique_strict = tuple(dict.fromkeys(c for c in strict if not (c.is_number and c > 0)))
    if any(c.is_number for c in unique + unique_strict):
        raise AssertionError("a regime condition is violated at its own reference point")
    return RegimeLoss(
        expr=total,
        conditions=unique,
        strict=unique_strict,
        params=tuple(params),
        n_features=n,
        max_active=max_active,
    )
