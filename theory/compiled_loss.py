"""The exact loss compiled (numba): theory.loss's enumeration, its cube integrals as a forward jet.

The same sum as theory.loss (dropout masks x active sets x outputs) of

    E[(x_i - y_+)^2] = [i in A]/3 - 2 E[u_i y_+] + E[y_+^2],   E[u_i y_+] = (1/2) dJ_2/dc_i,

with J_2 = E[y_+^2] by theory.cube's pivot recursion (reflection, the largest
coefficient integrated out first, divided differences only where a node
straddles 0, polynomial moments elsewhere, the same rescaling of tiny forms),
written as loops over one form at a time. The derivative dJ_2/dc_i is carried
forward through the recursion beside the value (a tangent in the direction of
c_i), so one pass gives both. Float64 throughout.

This is the value only: the gradient (an adjoint of this pass) is not written
yet, so the fits still use theory.loss. theory.loss stays the reference it is
tested against (tests/theory/test_compiled_loss.py).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from theory.cube import RESCALE_BELOW, TINY_PIVOT, ZERO_SCALE
from theory.errors import InputError
from theory.loss import MAX_EXACT_FEATURES, check_many
from theory.setup import Setup

#: Largest order q + k of a moment: q = 2 and k <= MAX_EXACT_FEATURES active features.
_MAX_ORDER = 2 + MAX_EXACT_FEATURES


def _binomials(size: int) -> np.ndarray:
    table = np.zeros((size + 1, size + 1))
    for r in range(size + 1):
        for s in range(r + 1):
            table[r, s] = math.comb(r, s)
    return table


_BINOM = _binomials(_MAX_ORDER)


@nb.njit(cache=True)
def _jet(b, c, k, seed, binom, a, a_dot, mu, mu_dot, off, off_dot, val, val_dot):
    """(J_2, dJ_2/dc_seed) of the form b + c[:k] . u (seed < 0: no derivative).

    Scratch: a, a_dot (k,); mu, mu_dot (k + 1, k + 3); off, off_dot, val, val_dot (2^k,).
    """
    q = 2
    scale = abs(b)
    for j in range(k):
        scale = max(scale, abs(c[j]))
    if scale < ZERO_SCALE:
        return 0.0, 0.0
    unit = 1.0
    if scale < RESCALE_BELOW:  # homogeneous of degree 2 (its c-derivative of degree 1)
        unit = scale
    # reflection: u_j -> 1 - u_j for c_j < 0; the tangent is the direction of c_seed
    lo = b / unit
    lo_dot = 0.0
    for j in range(k):
        cj = c[j] / unit
        d = 1.0 if j == seed else 0.0
        if cj < 0.0:
            lo += cj
            lo_dot += d
            a[j] = -cj
            a_dot[j] = -d
        else:
            a[j] = cj
            a_dot[j] = d
    # largest first (insertion sort, k <= 12)
    for j in range(1, k):
        x, xd = a[j], a_dot[j]
        i = j - 1
        while i >= 0 and a[i] < x:
            a[i + 1], a_dot[i + 1] = a[i], a_dot[i]
            i -= 1
        a[i + 1], a_dot[i + 1] = x, xd
    # raw moments mu[d, r] = E[(sum_{j >= d} a_j u_j)^r], r <= q + d, from the smallest coefficient up
    top = q + k
    for r in range(top + 1):
        mu[k, r] = 0.0
        mu_dot[k, r] = 0.0
    mu[k, 0] = 1.0
    for d in range(k - 1, -1, -1):
        size = q + d + 1
        ad, add = a[d], a_dot[d]
        for r in range(size):
            total, total_dot = 0.0, 0.0
            power = 1.0  # a_d^s
            power_dot = 0.0  # d(a_d^s)
            for s in range(r + 1):
                weight = binom[r, s] / (s + 1.0)
                total += weight * power * mu[d + 1, r - s]
                total_dot += weight * (power_dot * mu[d + 1, r - s] + power * mu_dot[d + 1, r - s])
                power_dot = power_dot * ad + power * add
                power *= ad
            mu[d, r] = total
            mu_dot[d, r] = total_dot
    # offsets of the leaves: node t at depth k has bit d set if pivot d took its upper end
    off[0], off_dot[0] = lo, lo_dot
    for d in range(k):
        half = 1 << d
        for t in range(half):
            off[half + t] = off[t] + a[d]
            off_dot[half + t] = off_dot[t] + a_dot[d]
    leaves = 1 << k
    for t in range(leaves):
        o = off[t]
        if o > 0.0:
            val[t] = o ** (q + k)
            val_dot[t] = (q + k) * o ** (q + k - 1) * off_dot[t]
        else:
            val[t] = 0.0
            val_dot[t] = 0.0
    # suffix sums: the range above a node at depth d is sum_{j >= d} a_j
    for d in range(k - 1, -1, -1):
        suffix, suffix_dot = 0.0, 0.0
        for j in range(d, k):
            suffix += a[j]
            suffix_dot += a_dot[j]
        order = q + d
        half = 1 << d
        pivot, pivot_dot = a[d], a_dot[d]
        for t in range(half):
            o = off[t]  # the node's offset: its leaves below share the low bits
            o_dot = off_dot[t]
            lo_child, lo_child_dot = val[t], val_dot[t]
            hi_child, hi_child_dot = val[half + t], val_dot[half + t]
            if o + suffix <= 0.0 or (o < 0.0 and pivot <= TINY_PIVOT):
                value, value_dot = 0.0, 0.0
            elif o >= 0.0:
                # sum_r C(order, r) mu_r o^(order - r), by Horner's rule, with its derivative
                value = binom[order, 0] * mu[d, 0]
                value_dot = binom[order, 0] * mu_dot[d, 0]
                for r in range(1, order + 1):
                    value_dot = value_dot * o + value * o_dot + binom[order, r] * mu_dot[d, r]
                    value = value * o + binom[order, r] * mu[d, r]
            else:
                denominator = (order + 1) * pivot
                value = (hi_child - lo_child) / denominator
                value_dot = (hi_child_dot - lo_child_dot) / denominator - value * pivot_dot / pivot
            val[t], val_dot[t] = value, value_dot
    return val[0] * unit * unit, val_dot[0] * unit


@nb.njit(cache=True, parallel=True)
def _losses(W, b, density, importance, p, binom):
    """The exact loss of models W (B, m, n), b (B, n), each at its own setup: density, importance (B, n),
    p (B,)."""
    B, m, n = W.shape
    out = np.zeros(B)
    for model in nb.prange(B):
        keep = 1.0 - p[model]
        a = np.empty(n)
        a_dot = np.empty(n)
        mu = np.empty((n + 1, n + 3))
        mu_dot = np.empty((n + 1, n + 3))
        off = np.empty(1 << n)
        off_dot = np.empty(1 << n)
        val = np.empty(1 << n)
        val_dot = np.empty(1 << n)
        M = np.empty((n, n))
        coef = np.empty(n)
        members = np.empty(n, dtype=np.int64)
        total = 0.0
        for mask in range(1 << m):
            kept = 0
            for h in range(m):
                kept += (mask >> h) & 1
            p_mask = keep**kept * p[model] ** (m - kept)
            if p_mask == 0.0:
                continue
            for i in range(n):
                for j in range(n):
                    s = 0.0
                    for h in range(m):
                        if (mask >> h) & 1:
                            s += W[model, h, i] * W[model, h, j]
                    M[i, j] = s / keep
            for active in range(1 << n):
                p_set = 1.0
                k = 0
                for j in range(n):
                    if (active >> j) & 1:
                        p_set *= density[model, j]
                        members[k] = j
                        k += 1
                    else:
                        p_set *= 1.0 - density[model, j]
                if p_set == 0.0:
                    continue
                per_set = 0.0
                for i in range(n):
                    seed = -1
                    for t in range(k):
                        coef[t] = M[i, members[t]]
                        if members[t] == i:
                            seed = t
                    value, cross = _jet(
                        b[model, i], coef, k, seed, binom, a, a_dot, mu, mu_dot, off, off_dot, val, val_dot
                    )
                    term = value
                    if seed >= 0:  # i active: 1/3 - 2 E[u_i y_+] + E[y_+^2], E[u_i y_+] = dJ/dc_i / 2
                        term += 1.0 / 3.0 - cross
                    per_set += importance[model, i] * term
                total += p_mask * p_set * per_set
        out[model] = total
    return out


def expected_loss_compiled(setup: Setup, W, b) -> np.ndarray:
    """theory.expected_loss, compiled: W (..., m, n), b (..., n) broadcast; returns the batch shape."""
    if not isinstance(setup, Setup):
        raise InputError(f"expected_loss_compiled needs a theory.Setup, got {type(setup).__name__}")
    W, b = setup.check_parameters(W, b)
    batch = np.broadcast_shapes(W.shape[:-2], b.shape[:-1])
    m, n = setup.n_hidden, setup.n_features
    Wf = np.broadcast_to(W, batch + (m, n)).reshape(-1, m, n)
    bf = np.broadcast_to(b, batch + (n,)).reshape(-1, n)
    return expected_loss_many_compiled([setup] * len(Wf), Wf, bf).reshape(batch)


def expected_loss_many_compiled(setups, W, b) -> np.ndarray:
    """The exact loss of B models, each at its own setup (one shape): W (B, m, n), b (B, n); (B,)."""
    setups, W, b = check_many(setups, W, b)
    density = np.array([s.density for s in setups])
    importance = np.array([s.importance_array for s in setups])
    p = np.array([s.p for s in setups], dtype=float)
    return _losses(np.ascontiguousarray(W), np.ascontiguousarray(b), density, importance, p, _BINOM)
