"""A regular polygon turned in the plane of two neurons under dropout: its loss to first order in density.

k features of importance 1 and density s at the vertices of a regular k-gon,
columns w_i = r (cos theta_i, sin theta_i) with theta_i = phi + 2 pi i / k,
one bias b for all, in two hidden units dropped independently with
probability p (inverted dropout). Without dropout the loss depends on W only
through W^T W, so the turn phi is free. Under dropout the output of feature j
when feature i is active reads

    g_ij(D) = sum_l D_l w_il w_jl / (1 - p),   D_l in {0, 1} kept with probability 1 - p,

and with one neuron dropped g_ij = r^2 cos theta_i cos theta_j / (1 - p)
depends on phi. Turning the polygon by 2 pi / k relabels its features;
turning it by pi / 2 swaps the neurons (and flips one's sign), which the
independent masks cannot see; reflecting it (phi -> -phi) flips a neuron's
sign. So the exact loss at every density is even in phi with period

    T(k) = 2 pi / lcm(k, 4)   (`rotation_period`; 18 degrees for the pentagon),

and its extremes in phi sit at 0 (a vertex on a neuron) and T / 2, unless it
is constant.

To first order in density one feature is active at a time and, with b <= 0,
an inactive sample costs nothing. Feature i active with value x ~ U[0, 1]
under mask D costs F(g_ii, b) for its own output and H(g_ij, b) for each
other output j, where (for b <= 0)

    F(a, b) = int_0^1 (x - relu(a x + b))^2 dx,   H(c, b) = int_0^1 relu(c x + b)^2 dx = (c + b)^3 / (3 c)
              (0 unless c + b > 0),

so that L / s -> sum_i E_D[F(g_ii, b) + sum_{j != i} H(g_ij, b)] (`first_order_loss`), a closed form in
r, b, phi and p over the four masks. A bias above zero costs b^2 on every
empty sample, zeroth order in s, so at this order b <= 0.

Two exact facts the tests hold (sympy): at p = 0 the first-order loss is the
same at every turn; the square (k = 4) with b = 0 is the same at every turn
under any p, because with one neuron dropped the self-term's loss of gain,
1 - 2 r^2 cos^2 theta / (1 - p) + r^4 cos^4 theta / (1 - p)^2, and the one
neighbour it now reaches, r^4 cos^2 theta sin^2 theta / (1 - p)^2, add up
to 1 - 2 r^2 cos^2 theta / (1 - p) + r^4 cos^2 theta / (1 - p)^2, and the two
single-drop masks together leave no theta. Any other polygon under dropout
has a preferred turn (`first_order_optimum` at each phi; which one wins
depends on k and p). scripts/polygon_rotation.py holds the closed form
against the exact loss, a fit of phi on the exact loss and Monte Carlo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from theory.errors import InputError

#: masks of two independently dropped units: (kept_0, kept_1)
_MASKS = ((1, 1), (1, 0), (0, 1), (0, 0))


@dataclass(frozen=True)
class TurnedPolygon:
    """The least first-order loss of the regular k-gon at a given turn, over its norm and bias (b <= 0)."""

    k: int
    p: float
    phi: float  # turn of the first vertex from neuron 0, radians
    norm: float  # r, every column's norm
    bias: float  # b <= 0, every feature's bias
    loss: float  # lim_{s -> 0} L / s at (r, b, phi), importance 1 for every feature


def rotation_period(k: int) -> float:
    """T = 2 pi / lcm(k, 4): a regular k-gon's exact loss in two dropped neurons repeats every T in phi."""
    return 2 * math.pi / math.lcm(_sides(k), 4)


def polygon_W(r, phi, k: int) -> np.ndarray:
    """W (2, k) of the regular k-gon of norm r whose first vertex is at angle phi from neuron 0."""
    theta = phi + 2 * np.pi * np.arange(_sides(k)) / k
    return r * np.stack([np.cos(theta), np.sin(theta)])


def own_term(a, b):
    """F(a, b) = int_0^1 (x - relu(a x + b))^2 dx for b <= 0 (numpy broadcasting)."""
    a, b = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float))
    cut = np.where(a > 0, np.clip(-b / np.where(a > 0, a, 1.0), 0.0, 1.0), 1.0)  # relu is zero below x = cut
    c = 1.0 - a
    return cut**3 / 3 + c**2 * (1 - cut**3) / 3 - c * b * (1 - cut**2) + b**2 * (1 - cut)


def other_term(c, b):
    """H(c, b) = int_0^1 relu(c x + b)^2 dx for b <= 0 (numpy broadcasting)."""
    c, b = np.broadcast_arrays(np.asarray(c, float), np.asarray(b, float))
    on = (c > 0) & (c + b > 0)
    return np.where(on, np.where(on, c + b, 0.0) ** 3 / (3 * np.where(on, c, 1.0)), 0.0)


def first_order_loss(r, b, phi, p: float, k: int):
    """lim_{s -> 0} L / s of the regular k-gon (norm r, bias b <= 0, turn phi) in two neurons under dropout p;
    r, b and phi broadcast together."""
    k, p = _sides(k), _rate(p)
    r, b, phi = np.broadcast_arrays(np.asarray(r, float), np.asarray(b, float), np.asarray(phi, float))
    if np.any(b > 0):
        raise InputError(
            "first_order_loss needs b <= 0: a positive bias costs b^2 at zeroth order in density"
        )
    theta = phi[..., None] + 2 * np.pi * np.arange(k) / k  # (..., k)
    cos, sin = np.cos(theta), np.sin(theta)
    scale = (r**2 / (1 - p))[..., None, None]
    off = ~np.eye(k, dtype=bool)
    total = np.zeros(r.shape)
    for kept_0, kept_1 in _MASKS:
        weight = (1 - p if kept_0 else p) * (1 - p if kept_1 else p)
        if weight == 0:
            continue
        gain = scale * (
            kept_0 * cos[..., :, None] * cos[..., None, :] + kept_1 * sin[..., :, None] * sin[..., None, :]
        )
        own = own_term(np.diagonal(gain, axis1=-2, axis2=-1), b[..., None]).sum(-1)
        other = (other_term(gain, b[..., None, None]) * off).sum((-2, -1))
        total = total + weight * (own + other)
    return total


def first_order_optimum(phi: float, p: float, k: int, grid: int = 161) -> TurnedPolygon:
    """The norm and bias (b <= 0) of least first-order loss at turn phi: the best of a grid over
    r in [0, 2.5], b in [-2.5, 0], polished from its three best points (L-BFGS-B, bounded)."""
    k, p = _sides(k), _rate(p)
    r_axis, b_axis = np.linspace(0, 2.5, grid), np.linspace(-2.5, 0, grid)
    R, B = np.meshgrid(r_axis, b_axis, indexing="ij")
    values = first_order_loss(R, B, phi, p, k)
    starts = np.argsort(values, axis=None)[:3]
    best = None
    for index in starts:
        start = np.array([R.flat[index], B.flat[index]])
        result = minimize(
            lambda z: float(first_order_loss(z[0], z[1], phi, p, k)),
            start,
            method="L-BFGS-B",
            bounds=[(0, None), (None, 0)],
            options={"ftol": 1e-15, "gtol": 1e-11},
        )
        if best is None or result.fun < best.fun:
            best = result
    return TurnedPolygon(k, p, float(phi), float(best.x[0]), float(best.x[1]), float(best.fun))


def _sides(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise InputError(f"k = {k!r} is not allowed; a polygon needs an integer number of vertices >= 2")
    return int(k)


def _rate(p) -> float:
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise InputError(f"p = {p} is outside the allowed range [0, 1)")
    return p
