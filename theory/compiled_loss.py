"""The exact loss compiled (numba): theory.loss's enumeration, its cube integrals as a forward jet.

The same sum as theory.loss (dropout masks x active sets x outputs) of

    E[(x_i - y_+)^2] = [i in A]/3 - 2 E[u_i y_+] + E[y_+^2],   E[u_i y_+] = (1/2) dJ_2/dc_i,

with J_2 = E[y_+^2] by theory.cube's pivot recursion (reflection, the largest
coefficient integrated out first, divided differences only where a node
straddles 0, polynomial moments elsewhere, the same rescaling of tiny forms),
written as loops over one form at a time. The derivative dJ_2/dc_i is carried
forward through the recursion beside the value (a tangent in the direction of
c_i), so one pass gives both. Float64 throughout.

With grad, the pass also carries the gradients of both in (b, c) (vector
forward mode: k + 1 components per node), so the loss's gradient
d/d(b, c) [J_2 - dJ_2/dc_i] comes out of the same pass, and the chain through
M = W^T diag(mask) W / (1 - p) gives dL/dW. theory.loss stays the reference it
is tested against (tests/theory/test_compiled_loss.py). The global search
(theory.optimize) and the exact-loss fits (theory.exact_fit) run on it.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from theory.cube import RESCALE_BELOW, TINY_PIVOT, ZERO_SCALE
from theory.errors import InputError
from theory.loss import MAX_EXACT_FEATURES, LossAndGrad, check_many
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
def _jet(b, c, k, seed, grad, binom, work, out_g, out_h):
    """(J_2, dJ_2/dc_seed) of the form b + c[:k] . u (seed < 0: no tangent), carried forward together.

    With grad, also their gradients in (b, c_0, .., c_{k-1}): out_g = grad J_2, out_h = grad dJ_2/dc_seed
    (k + 1 each). work: _scratch(n).
    """
    (
        a,
        a_dot,
        src,
        sgn,
        lo_g,
        mu,
        mu_dot,
        mu_g,
        mu_dg,
        off,
        off_dot,
        off_g,
        val,
        val_dot,
        val_g,
        val_dg,
        powers,
    ) = work
    q = 2
    width = k + 1
    if grad:
        for x in range(width):
            out_g[x] = 0.0
            out_h[x] = 0.0
    scale = abs(b)
    for j in range(k):
        scale = max(scale, abs(c[j]))
    if scale < ZERO_SCALE:
        return 0.0, 0.0
    unit = 1.0
    if scale < RESCALE_BELOW:  # homogeneous: J of degree 2, its first derivatives 1, second 0
        unit = scale
    # reflection: u_j -> 1 - u_j for c_j < 0; the tangent is the direction of c_seed
    lo = b / unit
    lo_dot = 0.0
    if grad:
        for x in range(width):
            lo_g[x] = 0.0
        lo_g[0] = 1.0
    for j in range(k):
        cj = c[j] / unit
        d = 1.0 if j == seed else 0.0
        sign = -1.0 if cj < 0.0 else 1.0
        if cj < 0.0:
            lo += cj
            lo_dot += d
            if grad:
                lo_g[1 + j] = 1.0
        a[j] = sign * cj
        a_dot[j] = sign * d
        # grad a_j is sign at component 1 + j (c_j) and 0 elsewhere: kept as (src, sgn)
        src[j] = 1 + j
        sgn[j] = sign
    # largest first (insertion sort, k <= 12), carrying tangents and gradients
    for j in range(1, k):
        x_val, x_dot, x_src, x_sgn = a[j], a_dot[j], src[j], sgn[j]
        i = j - 1
        while i >= 0 and a[i] < x_val:
            a[i + 1], a_dot[i + 1], src[i + 1], sgn[i + 1] = a[i], a_dot[i], src[i], sgn[i]
            i -= 1
        a[i + 1], a_dot[i + 1], src[i + 1], sgn[i + 1] = x_val, x_dot, x_src, x_sgn
    # raw moments mu[d, r] = E[(sum_{j >= d} a_j u_j)^r], r <= q + d, from the smallest coefficient up
    top = q + k
    for r in range(top + 1):
        mu[k, r] = 0.0
        mu_dot[k, r] = 0.0
        if grad:
            for x in range(width):
                mu_g[k, r, x] = 0.0
                mu_dg[k, r, x] = 0.0
    mu[k, 0] = 1.0
    for d in range(k - 1, -1, -1):
        size = q + d + 1
        ad, add, ad_src, ad_sgn = a[d], a_dot[d], src[d], sgn[d]
        powers[0] = 1.0  # a_d^s
        for s in range(1, size + 1):
            powers[s] = powers[s - 1] * ad
        for r in range(size):
            total, total_dot = 0.0, 0.0
            if grad:
                for x in range(width):
                    mu_g[d, r, x] = 0.0
                    mu_dg[d, r, x] = 0.0
            for s in range(r + 1):
                weight = binom[r, s] / (s + 1.0)
                power = powers[s]  # a_d^s, and its first and second derivatives in a_d
                power_1 = s * powers[s - 1] if s >= 1 else 0.0
                power_2 = s * (s - 1) * powers[s - 2] if s >= 2 else 0.0
                old, old_dot = mu[d + 1, r - s], mu_dot[d + 1, r - s]
                total += weight * power * old
                total_dot += weight * (power_1 * add * old + power * old_dot)
                if grad:
                    for x in range(width):
                        ag = ad_sgn if x == ad_src else 0.0
                        mu_g[d, r, x] += weight * (power_1 * ag * old + power * mu_g[d + 1, r - s, x])
                        mu_dg[d, r, x] += weight * (
                            power_2 * add * ag * old
                            + power_1 * add * mu_g[d + 1, r - s, x]
                            + power_1 * ag * old_dot
                            + power * mu_dg[d + 1, r - s, x]
                        )
            mu[d, r] = total
            mu_dot[d, r] = total_dot
    # offsets of the leaves: node t at depth k has bit d set if pivot d took its upper end
    off[0], off_dot[0] = lo, lo_dot
    if grad:
        for x in range(width):
            off_g[0, x] = lo_g[x]
    for d in range(k):
        half = 1 << d
        for t in range(half):
            off[half + t] = off[t] + a[d]
            off_dot[half + t] = off_dot[t] + a_dot[d]
            if grad:
                for x in range(width):
                    off_g[half + t, x] = off_g[t, x]
                off_g[half + t, src[d]] += sgn[d]
    leaves = 1 << k
    power = q + k
    for t in range(leaves):
        o = off[t]
        if o > 0.0:
            val[t] = o**power
            val_dot[t] = power * o ** (power - 1) * off_dot[t]
            if grad:
                first = power * o ** (power - 1)
                second = power * (power - 1) * o ** (power - 2) * off_dot[t]
                for x in range(width):
                    val_g[t, x] = first * off_g[t, x]
                    val_dg[t, x] = second * off_g[t, x]  # the offsets' tangents are constants
        else:
            val[t] = 0.0
            val_dot[t] = 0.0
            if grad:
                for x in range(width):
                    val_g[t, x] = 0.0
                    val_dg[t, x] = 0.0
    for d in range(k - 1, -1, -1):
        suffix = 0.0
        for j in range(d, k):
            suffix += a[j]
        order = q + d
        half = 1 << d
        pivot, pivot_dot = a[d], a_dot[d]
        for t in range(half):
            o = off[t]  # the node's offset: its leaves below share the low bits
            o_dot = off_dot[t]
            lo_v, lo_d = val[t], val_dot[t]
            hi_v, hi_d = val[half + t], val_dot[half + t]
            if o + suffix <= 0.0 or (o < 0.0 and pivot <= TINY_PIVOT):
                value, value_dot = 0.0, 0.0
                if grad:
                    for x in range(width):
                        val_g[t, x] = 0.0
                        val_dg[t, x] = 0.0
            elif o >= 0.0:
                # sum_r C(order, r) mu_r o^e, e = order - r, with its tangent and gradients
                value, value_dot = 0.0, 0.0
                if grad:
                    for x in range(width):
                        val_g[t, x] = 0.0
                        val_dg[t, x] = 0.0
                powers[0] = 1.0  # o^e
                for e in range(1, order + 1):
                    powers[e] = powers[e - 1] * o
                for r in range(order + 1):
                    e = order - r
                    weight = binom[order, r]
                    p0 = powers[e]
                    p1 = e * powers[e - 1] if e >= 1 else 0.0
                    p2 = e * (e - 1) * powers[e - 2] if e >= 2 else 0.0
                    value += weight * mu[d, r] * p0
                    value_dot += weight * (mu_dot[d, r] * p0 + mu[d, r] * p1 * o_dot)
                    if grad:
                        for x in range(width):
                            og = off_g[t, x]
                            val_g[t, x] += weight * (mu_g[d, r, x] * p0 + mu[d, r] * p1 * og)
                            val_dg[t, x] += weight * (
                                mu_dg[d, r, x] * p0
                                + mu_dot[d, r] * p1 * og
                                + mu_g[d, r, x] * p1 * o_dot
                                + mu[d, r] * p2 * o_dot * og
                            )
            else:
                denominator = (order + 1) * pivot
                value = (hi_v - lo_v) / denominator
                value_dot = (hi_d - lo_d) / denominator - value * pivot_dot / pivot
                if grad:
                    for x in range(width):
                        ag = sgn[d] if x == src[d] else 0.0
                        g = (val_g[half + t, x] - val_g[t, x]) / denominator - value * ag / pivot
                        val_dg[t, x] = (
                            (val_dg[half + t, x] - val_dg[t, x]) / denominator
                            - (hi_d - lo_d) * ag / (denominator * pivot)
                            - g * pivot_dot / pivot
                            + value * pivot_dot * ag / (pivot * pivot)
                        )
                        val_g[t, x] = g
            val[t], val_dot[t] = value, value_dot
    if grad:
        for x in range(width):
            out_g[x] = val_g[0, x] * unit
            out_h[x] = val_dg[0, x]
    return val[0] * unit * unit, val_dot[0] * unit


@nb.njit(cache=True)
def _scratch(n):
    """_jet's work arrays for forms of up to n coefficients."""
    w = n + 1
    return (
        np.empty(n), np.empty(n), np.empty(n, np.int64), np.empty(n), np.empty(w),  # a, a_dot, src, sgn, lo_g
        np.empty((n + 1, n + 3)), np.empty((n + 1, n + 3)),  # mu, mu_dot
        np.empty((n + 1, n + 3, w)), np.empty((n + 1, n + 3, w)),  # mu_g, mu_dg
        np.empty(1 << n), np.empty(1 << n), np.empty((1 << n, w)),  # off, off_dot, off_g
        np.empty(1 << n), np.empty(1 << n), np.empty((1 << n, w)), np.empty((1 << n, w)),  # val, .., val_dg
        np.empty(n + 4),  # powers
    )  # fmt: skip


@nb.njit(cache=True, parallel=True)
def _losses(W, b, density, importance, p, binom, grad, out_gW, out_gb):
    """The exact loss of models W (B, m, n), b (B, n), each at its own setup: density, importance (B, n),
    p (B,). With grad, its gradients into out_gW (B, m, n), out_gb (B, n)."""
    B, m, n = W.shape
    out = np.zeros(B)
    for model in nb.prange(B):
        keep = 1.0 - p[model]
        work = _scratch(n)
        g = np.empty(n + 1)
        h = np.empty(n + 1)
        M = np.empty((n, n))
        G = np.zeros((n, n))  # dL/dM for the current mask
        coef = np.empty(n)
        members = np.empty(n, dtype=np.int64)
        total = 0.0
        if grad:
            for i in range(n):
                out_gb[model, i] = 0.0
                for hh in range(m):
                    out_gW[model, hh, i] = 0.0
        for mask in range(1 << m):
            kept = 0
            for hh in range(m):
                kept += (mask >> hh) & 1
            p_mask = keep**kept * p[model] ** (m - kept)
            if p_mask == 0.0:
                continue
            for i in range(n):
                for j in range(n):
                    acc = 0.0
                    for hh in range(m):
                        if (mask >> hh) & 1:
                            acc += W[model, hh, i] * W[model, hh, j]
                    M[i, j] = acc / keep
                    G[i, j] = 0.0
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
                    value, cross = _jet(b[model, i], coef, k, seed, grad, binom, work, g, h)
                    term = value
                    if seed >= 0:  # i active: 1/3 - 2 E[u_i y_+] + E[y_+^2], E[u_i y_+] = dJ/dc_i / 2
                        term += 1.0 / 3.0 - cross
                    per_set += importance[model, i] * term
                    if grad:
                        weight = p_mask * p_set * importance[model, i]
                        active_i = 1.0 if seed >= 0 else 0.0
                        out_gb[model, i] += weight * (g[0] - active_i * h[0])
                        for t in range(k):
                            G[i, members[t]] += weight * (g[1 + t] - active_i * h[1 + t])
                total += p_mask * p_set * per_set
            if grad:  # M_ij = sum_h kept_h W_hi W_hj / keep
                for hh in range(m):
                    if (mask >> hh) & 1:
                        for a_ in range(n):
                            acc = 0.0
                            for j in range(n):
                                acc += (G[a_, j] + G[j, a_]) * W[model, hh, j]
                            out_gW[model, hh, a_] += acc / keep
        out[model] = total
    return out


def expected_loss_compiled(setup: Setup, W, b) -> np.ndarray:
    """theory.expected_loss, compiled: W (..., m, n), b (..., n) broadcast; returns the batch shape."""
    W, b, batch = _flat(setup, W, b)
    return expected_loss_many_compiled([setup] * len(W), W, b).reshape(batch)


def expected_loss_and_grad_compiled(setup: Setup, W, b) -> LossAndGrad:
    """theory.expected_loss_and_grad, compiled: W (..., m, n), b (..., n) broadcast. The gradients have
    the broadcast batch shape (not summed back to W's and b's own shapes)."""
    W, b, batch = _flat(setup, W, b)
    result = expected_loss_and_grad_many_compiled([setup] * len(W), W, b)
    m, n = setup.n_hidden, setup.n_features
    return LossAndGrad(
        loss=result.loss.reshape(batch),
        grad_W=result.grad_W.reshape(batch + (m, n)),
        grad_b=result.grad_b.reshape(batch + (n,)),
    )


def _flat(setup: Setup, W, b):
    if not isinstance(setup, Setup):
        raise InputError(f"the compiled exact loss needs a theory.Setup, got {type(setup).__name__}")
    W, b = setup.check_parameters(W, b)
    batch = np.broadcast_shapes(W.shape[:-2], b.shape[:-1])
    m, n = setup.n_hidden, setup.n_features
    W = np.broadcast_to(W, batch + (m, n)).reshape(-1, m, n)
    b = np.broadcast_to(b, batch + (n,)).reshape(-1, n)
    return W, b, batch


def _run(setups, W, b, grad: bool):
    setups, W, b = check_many(setups, W, b)
    density = np.array([s.density for s in setups])
    importance = np.array([s.importance_array for s in setups])
    p = np.array([s.p for s in setups], dtype=float)
    W, b = np.ascontiguousarray(W), np.ascontiguousarray(b)
    gW = np.empty_like(W) if grad else np.empty((1, 1, 1))
    gb = np.empty_like(b) if grad else np.empty((1, 1))
    return _losses(W, b, density, importance, p, _BINOM, grad, gW, gb), gW, gb


def expected_loss_many_compiled(setups, W, b) -> np.ndarray:
    """The exact loss of B models, each at its own setup (one shape): W (B, m, n), b (B, n); (B,)."""
    return _run(setups, W, b, False)[0]


def expected_loss_and_grad_many_compiled(setups, W, b) -> LossAndGrad:
    """theory.expected_loss_and_grad_many, compiled: B models, each at its own setup."""
    loss, gW, gb = _run(setups, W, b, True)
    return LossAndGrad(loss=loss, grad_W=gW, grad_b=gb)
