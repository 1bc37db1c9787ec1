"""The exact loss compiled (numba): theory.loss's enumeration, its cube integrals as a forward jet.

The same sum as theory.loss (dropout masks x active sets x outputs) of

    E[(x_i - y_+)^2] = [i in A]/3 - 2 E[u_i y_+] + E[y_+^2],   E[u_i y_+] = (1/2) dJ_2/dc_i,

with J_2 = E[y_+^2] by theory.cube's pivot recursion (reflection, the largest
coefficient integrated out first, divided differences only where a node
straddles 0, polynomial moments elsewhere, the same rescaling of tiny forms),
written as loops over one form at a time. A first pass from the root down marks
the nodes the root reads (a node below one that is 0 or a polynomial is never
computed) and the highest moment each level needs; the values are then computed
from the leaves up over those nodes only. The derivative dJ_2/dc_i is carried
forward through the recursion beside the value (a tangent in the direction of
c_i), so one pass gives both. Float64 throughout. The mask that drops every
unit leaves y = b+, whose term is summed in closed form.

The gradient is one reverse pass per form (_jet_backward: the adjoints of the
nodes from the root to the leaves, then of the moments and the offsets) over
the values the forward pass kept, of the form's whole term J_2 - [i active]
dJ_2/dc_i at once; the chain through M = W^T diag(mask) W / (1 - p) gives
dL/dW. The value alone is compiled without any of it. theory.loss stays the reference it
is tested against (tests/theory/test_compiled_loss.py). The global search
(theory.optimize) and the exact-loss fits (theory.exact_fit) run on it.
"""

from __future__ import annotations

import itertools
import math

import numba as nb
import numpy as np

from theory.cube import RESCALE_BELOW, TINY_PIVOT, ZERO_SCALE
from theory.errors import InputError
from theory.loss import MAX_EXACT_FEATURES, LossAndGrad, LossBounds, bracket, check_many, check_max_active
from theory.setup import Setup

#: Largest order q + k of a moment: q = 2 and k <= MAX_EXACT_FEATURES active features.
_MAX_ORDER = 2 + MAX_EXACT_FEATURES


def _tables(size: int) -> np.ndarray:
    """[C(r, s), C(r, s) / (s + 1)] for r, s <= size: the binomials of the polynomial nodes, and the
    weights by which integrating out one coefficient spreads a moment over the lower ones."""
    table = np.zeros((2, size + 1, size + 1))
    for r in range(size + 1):
        for s in range(r + 1):
            table[0, r, s] = math.comb(r, s)
            table[1, r, s] = math.comb(r, s) / (s + 1.0)
    return table


_TABLES = _tables(_MAX_ORDER)

# how _jet computes a node: not at all (its parent does not read it), 0, its polynomial, the divided
# difference of its children; needed, not yet classified
_UNUSED, _ZERO, _POLYNOMIAL, _DIVIDED, _NEEDED = 0, 1, 2, 3, 4


@nb.njit(cache=True, inline="always")
def _jet(b, c, k, seed, tables, work, keep_levels):
    """(J_2, dJ_2/dc_seed) of the form b + c[:k] . u (seed < 0: no tangent), carried forward together.

    Returns them and the unit the form was rescaled by (0 for a form taken as 0). work: _scratch(n).
    With keep_levels, every level's node values stay in work for _jet_backward.
    """
    a, a_dot, src, sgn, mu, mu_dot, off, off_dot, val, val_dot, powers, suffix = work[:12]
    state, deepest = work[18:]
    q = 2
    tangent = seed >= 0
    scale = abs(b)
    for j in range(k):
        scale = max(scale, abs(c[j]))
    if scale < ZERO_SCALE:
        return 0.0, 0.0, 0.0  # unit 0 marks the zero form for _jet_backward
    unit = 1.0
    if scale < RESCALE_BELOW:  # homogeneous: J of degree 2, its first derivatives 1, second 0
        unit = scale
    # reflection: u_j -> 1 - u_j for c_j < 0; the tangent is the direction of c_seed
    lo = b / unit
    lo_dot = 0.0
    for j in range(k):
        cj = c[j] / unit
        d = 1.0 if j == seed else 0.0
        sign = -1.0 if cj < 0.0 else 1.0
        if cj < 0.0:
            lo += cj
            lo_dot += d
        a[j] = sign * cj
        a_dot[j] = sign * d
        src[j] = j  # the coefficient a sorted position came from, and its sign
        sgn[j] = sign
    # largest first (insertion sort, k <= 12), carrying tangents
    for j in range(1, k):
        x_val, x_dot, x_src, x_sgn = a[j], a_dot[j], src[j], sgn[j]
        i = j - 1
        while i >= 0 and a[i] < x_val:
            a[i + 1], a_dot[i + 1], src[i + 1], sgn[i + 1] = a[i], a_dot[i], src[i], sgn[i]
            i -= 1
        a[i + 1], a_dot[i + 1], src[i + 1], sgn[i + 1] = x_val, x_dot, x_src, x_sgn
    # offsets of the nodes: node t of level d (t < 2^d) has bit j set if pivot j took its upper end
    off[0], off_dot[0] = lo, lo_dot
    for d in range(k):
        half = 1 << d
        for t in range(half):
            off[half + t] = off[t] + a[d]
            off_dot[half + t] = off_dot[t] + a_dot[d]
    for d in range(k):  # how far above its offset a node of level d reaches: sum_{j >= d} a_j
        reach = 0.0
        for j in range(d, k):
            reach += a[j]
        suffix[d] = reach
    # top down: the nodes the root needs and how each is computed (a node below one that is 0 or a
    # polynomial is never computed); deepest[d]: the highest moment order levels <= d read
    state[0, 0] = _NEEDED
    for d in range(k):
        half = 1 << d
        pivot = a[d]
        deepest[d] = deepest[d - 1] if d > 0 else -1
        for t in range(2 * half):
            state[d + 1, t] = _UNUSED
        for t in range(half):
            if state[d, t] != _NEEDED:
                continue
            o = off[t]
            if o + suffix[d] <= 0.0 or (o < 0.0 and pivot <= TINY_PIVOT):
                state[d, t] = _ZERO
            elif o >= 0.0:
                state[d, t] = _POLYNOMIAL
                deepest[d] = q + d
            else:
                state[d, t] = _DIVIDED
                state[d + 1, t] = _NEEDED
                state[d + 1, half + t] = _NEEDED
    # raw moments mu[d, r] = E[(sum_{j >= d} a_j u_j)^r], r <= deepest[d], from the smallest coefficient up
    for r in range(q + k + 1):
        mu[k, r] = 0.0
        mu_dot[k, r] = 0.0
    mu[k, 0] = 1.0
    for d in range(k - 1, -1, -1):
        size = deepest[d] + 1
        ad, add = a[d], a_dot[d]
        powers[0] = 1.0  # a_d^s
        for s in range(1, size + 1):
            powers[s] = powers[s - 1] * ad
        for r in range(size):
            total, total_dot = 0.0, 0.0
            if tangent:
                for s in range(r + 1):
                    weight = tables[1, r, s]
                    power_1 = s * powers[s - 1] if s >= 1 else 0.0
                    old, old_dot = mu[d + 1, r - s], mu_dot[d + 1, r - s]
                    total += weight * powers[s] * old
                    total_dot += weight * (power_1 * add * old + powers[s] * old_dot)
            else:
                for s in range(r + 1):
                    total += tables[1, r, s] * powers[s] * mu[d + 1, r - s]
            mu[d, r] = total
            mu_dot[d, r] = total_dot
    power = q + k
    for t in range(1 << k):
        if state[k, t] != _NEEDED:
            continue
        o = off[t]
        if o > 0.0:
            lower = 1.0  # o^(power - 1), by multiplication (** with a variable exponent is libm's pow)
            for _ in range(power - 1):
                lower *= o
            val[k, t] = lower * o
            val_dot[k, t] = power * lower * off_dot[t]
        else:
            val[k, t] = 0.0
            val_dot[k, t] = 0.0
    child = k  # the level that holds the children's values
    for d in range(k - 1, -1, -1):
        level = d if keep_levels else k  # in place unless kept
        order = q + d
        half = 1 << d
        pivot, pivot_dot = a[d], a_dot[d]
        per_pivot = 1.0 / pivot if pivot > 0.0 else 0.0  # read only where pivot > TINY_PIVOT
        per_denominator = per_pivot / (order + 1)
        for t in range(half):
            how = state[d, t]
            if how == _UNUSED:
                continue
            o = off[t]  # the node's offset: its leaves below share the low bits
            o_dot = off_dot[t]
            if how == _ZERO:
                value, value_dot = 0.0, 0.0
            elif how == _POLYNOMIAL:  # sum_r C(order, r) mu_r o^e, e = order - r, and its tangent
                value, value_dot = 0.0, 0.0
                powers[0] = 1.0  # o^e
                for e in range(1, order + 1):
                    powers[e] = powers[e - 1] * o
                if tangent:
                    for r in range(order + 1):
                        e = order - r
                        weight = tables[0, order, r]
                        p1 = e * powers[e - 1] if e >= 1 else 0.0
                        value += weight * mu[d, r] * powers[e]
                        value_dot += weight * (mu_dot[d, r] * powers[e] + mu[d, r] * p1 * o_dot)
                else:
                    for r in range(order + 1):
                        value += tables[0, order, r] * mu[d, r] * powers[order - r]
            else:  # divided difference of the children
                value = (val[child, half + t] - val[child, t]) * per_denominator
                value_dot = (val_dot[child, half + t] - val_dot[child, t]) * per_denominator
                value_dot -= value * pivot_dot * per_pivot
            val[level, t], val_dot[level, t] = value, value_dot
        child = level
    return val[child, 0] * unit * unit, val_dot[child, 0] * unit, unit


@nb.njit(cache=True, inline="always")
def _jet_backward(k, unit, w_value, w_tangent, tables, work, out):
    """The gradient in (b, c_0, .., c_{k-1}) of w_value J_2 + w_tangent dJ_2/dc_seed, into out (k + 1), by
    one reverse pass over what _jet(.., keep_levels=True) just computed for the same form (reverse mode:
    the adjoint of each node, root to leaves, then of the moments and the offsets)."""
    a, a_dot, src, sgn, mu, mu_dot, off, off_dot, val, val_dot, powers, suffix = work[:12]
    bar, bar_dot, mu_bar, mu_dot_bar, off_bar, a_bar = work[12:18]
    q = 2
    for x in range(k + 1):
        out[x] = 0.0
    if unit == 0.0:  # a form below ZERO_SCALE: 0, with zero derivatives
        return
    for r in range(q + k + 1):
        for d in range(k + 1):
            mu_bar[d, r] = 0.0
            mu_dot_bar[d, r] = 0.0
    for t in range(1 << k):
        off_bar[t] = 0.0
    for j in range(k):
        a_bar[j] = 0.0
    # seeds: F = w_value unit^2 J(x / unit) + w_tangent unit J'(x / unit), so dF/dx = w_value unit dJ/dx'
    # + w_tangent dJ'/dx' in the rescaled coordinates x' the pass ran in
    bar[0], bar_dot[0] = w_value * unit, w_tangent
    for d in range(k):
        order = q + d
        half = 1 << d
        pivot, pivot_dot = a[d], a_dot[d]
        per_pivot = 1.0 / pivot if pivot > 0.0 else 0.0
        per_denominator = per_pivot / (order + 1)
        for t in range(half):
            vb, db = bar[t], bar_dot[t]
            bar[t], bar_dot[t], bar[half + t], bar_dot[half + t] = 0.0, 0.0, 0.0, 0.0
            if vb == 0.0 and db == 0.0:
                continue
            o = off[t]
            o_dot = off_dot[t]
            if o + suffix[d] <= 0.0 or (o < 0.0 and pivot <= TINY_PIVOT):
                continue
            if o >= 0.0:
                powers[0] = 1.0
                for e in range(1, order + 1):
                    powers[e] = powers[e - 1] * o
                o_bar = 0.0
                for r in range(order + 1):
                    e = order - r
                    weight = tables[0, order, r]
                    p1 = e * powers[e - 1] if e >= 1 else 0.0
                    p2 = e * (e - 1) * powers[e - 2] if e >= 2 else 0.0
                    mu_bar[d, r] += weight * (vb * powers[e] + db * p1 * o_dot)
                    mu_dot_bar[d, r] += weight * db * powers[e]
                    o_bar += weight * (vb * mu[d, r] * p1 + db * (mu_dot[d, r] * p1 + mu[d, r] * p2 * o_dot))
                off_bar[t] += o_bar
            else:
                value = val[d, t]
                difference_dot = val_dot[d + 1, half + t] - val_dot[d + 1, t]
                # value_dot = difference_dot / denominator - value pivot_dot / pivot
                vb_total = vb - db * pivot_dot * per_pivot
                slope = value * pivot_dot * per_pivot - difference_dot * per_denominator
                a_bar[d] += db * slope * per_pivot
                a_bar[d] -= vb_total * value * per_pivot
                bar[half + t] += vb_total * per_denominator
                bar[t] -= vb_total * per_denominator
                bar_dot[half + t] += db * per_denominator
                bar_dot[t] -= db * per_denominator
    power = q + k
    for t in range(1 << k):
        o = off[t]
        if o > 0.0 and (bar[t] != 0.0 or bar_dot[t] != 0.0):
            lower = 1.0  # o^(power - 2); power >= 2
            for _ in range(power - 2):
                lower *= o
            first = power * lower * o
            second = power * (power - 1) * lower
            off_bar[t] += bar[t] * first + bar_dot[t] * second * off_dot[t]
    # moments, from the largest coefficient down: mu[d] from mu[d + 1] and a_d
    for d in range(k):
        size = q + d + 1
        ad, add = a[d], a_dot[d]
        powers[0] = 1.0
        for s in range(1, size + 1):
            powers[s] = powers[s - 1] * ad
        total = 0.0
        for r in range(size):
            mb, mdb = mu_bar[d, r], mu_dot_bar[d, r]
            if mb == 0.0 and mdb == 0.0:
                continue
            for s in range(r + 1):
                weight = tables[1, r, s]
                power_1 = s * powers[s - 1] if s >= 1 else 0.0
                power_2 = s * (s - 1) * powers[s - 2] if s >= 2 else 0.0
                old, old_dot = mu[d + 1, r - s], mu_dot[d + 1, r - s]
                mu_bar[d + 1, r - s] += weight * (powers[s] * mb + power_1 * add * mdb)
                mu_dot_bar[d + 1, r - s] += weight * powers[s] * mdb
                total += weight * (power_1 * old * mb + (power_2 * add * old + power_1 * old_dot) * mdb)
        a_bar[d] += total
    # offsets: off[half + t] = off[t] + a_d, built for d = 0 .. k - 1; off[0] = lo
    for d in range(k - 1, -1, -1):
        half = 1 << d
        for t in range(half):
            off_bar[t] += off_bar[half + t]
            a_bar[d] += off_bar[half + t]
    # lo = b + sum of the negative c_j; a_d = |c_src[d]|
    out[0] = off_bar[0]
    for d in range(k):
        j = src[d]
        out[1 + j] += sgn[d] * a_bar[d]
        if sgn[d] < 0.0:
            out[1 + j] += off_bar[0]


@nb.njit(cache=True)
def _scratch(n):
    """_jet's and _jet_backward's work arrays for forms of up to n coefficients."""
    leaves = 1 << n
    return (
        np.empty(n), np.empty(n), np.empty(n, np.int64), np.empty(n),  # a, a_dot, src, sgn
        np.empty((n + 1, n + 3)), np.empty((n + 1, n + 3)),  # mu, mu_dot
        np.empty(leaves), np.empty(leaves),  # off, off_dot
        np.empty((n + 1, leaves)), np.empty((n + 1, leaves)),  # val, val_dot by level
        np.empty(n + 4), np.empty(n + 1),  # powers, suffix (sum_{j >= d} a_j per level)
        np.empty(leaves), np.empty(leaves),  # bar, bar_dot: adjoints of the nodes
        np.empty((n + 1, n + 3)), np.empty((n + 1, n + 3)),  # mu_bar, mu_dot_bar
        np.empty(leaves), np.empty(n),  # off_bar, a_bar
        np.empty((n + 1, leaves), np.int8), np.empty(max(n, 1), np.int64),  # state, deepest
    )  # fmt: skip


@nb.njit(cache=True)
def _mask_pass(
    total, model, mask, W, b, density, importance, p, leaders, tables, sets, largest, grad, gW, gb, scratch
):
    """total plus one dropout mask's term of model's loss (_losses), summed over the active sets in order;
    with grad, that mask's gradient added into gW, gb. scratch: _mask_scratch."""
    work, g, M, G, coef, members = scratch
    B, m, n = W.shape
    keep = 1.0 - p[model]
    groups = 0
    for hh in range(m):
        groups += leaders[model, hh] == hh
    kept = 0  # kept groups
    split = False
    for hh in range(m):
        bit = (mask >> hh) & 1
        split |= bit != (mask >> leaders[model, hh]) & 1
        if leaders[model, hh] == hh:
            kept += bit
    if split:
        return total
    p_mask = keep**kept * p[model] ** (groups - kept)
    if p_mask == 0.0:
        return total
    if kept == 0 and len(sets) == 1 << n:
        # every unit dropped: y_i = b_i+, E[(x_i - b_i+)^2] = d_i/3 - d_i b_i+ + b_i+^2
        for i in range(n):
            bias = b[model, i] if b[model, i] >= ZERO_SCALE else 0.0  # as _jet: below, 0
            dens = density[model, i]
            total += p_mask * importance[model, i] * (dens / 3.0 - dens * bias + bias * bias)
            if grad and bias > 0.0:
                gb[model, i] += p_mask * importance[model, i] * (2.0 * bias - dens)
        return total
    for i in range(n):
        for j in range(n):
            acc = 0.0
            for hh in range(m):
                if (mask >> hh) & 1:
                    acc += W[model, hh, i] * W[model, hh, j]
            M[i, j] = acc / keep
            G[i, j] = 0.0
    for active in sets:
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
            value, cross, unit = _jet(b[model, i], coef, k, seed, tables, work, grad)
            term = value
            if seed >= 0:  # i active: 1/3 - 2 E[u_i y_+] + E[y_+^2], E[u_i y_+] = dJ/dc_i / 2
                term += 1.0 / 3.0 - cross
            per_set += importance[model, i] * term
            if grad:
                weight = p_mask * p_set * importance[model, i]
                active_i = 1.0 if seed >= 0 else 0.0
                _jet_backward(k, unit, 1.0, -active_i, tables, work, g)  # d term / d(b_i, coef)
                gb[model, i] += weight * g[0]
                for t in range(k):
                    G[i, members[t]] += weight * g[1 + t]
        total += p_mask * p_set * per_set
    if grad:  # M_ij = sum_h kept_h W_hi W_hj / keep
        for hh in range(m):
            if (mask >> hh) & 1:
                for a_ in range(n):
                    acc = 0.0
                    for j in range(n):
                        acc += (G[a_, j] + G[j, a_]) * W[model, hh, j]
                    gW[model, hh, a_] += acc / keep
    return total


@nb.njit(cache=True)
def _mask_scratch(n, largest):
    """_mask_pass's work arrays: _scratch, the jet's gradient, M and its adjoint, the coefficients and
    the active features of one form."""
    return (
        _scratch(largest),
        np.empty(n + 1),
        np.empty((n, n)),
        np.zeros((n, n)),
        np.empty(n),
        np.empty(n, np.int64),
    )


@nb.njit(cache=True, parallel=True)
def _losses(W, b, density, importance, p, leaders, tables, sets, largest, grad, out_gW, out_gb, by_mask):
    """The exact loss of models W (B, m, n), b (B, n), each at its own setup: density, importance (B, n),
    p (B,), group leaders (B, m) (Setup.group_leaders: a mask that splits a group has probability 0),
    summed over the active sets `sets` (bit masks, ascending; every one of the 2^n, or those of at most
    `largest` features). With grad, its gradients into out_gW (B, m, n) and out_gb (B, n); without,
    those are not read (empty arrays will do). One thread per model; with by_mask (no gradient), one
    per (model, dropout mask), for fewer models than threads (a bracket of one model: 2^m masks of
    equal cost where p > 0): each mask's sum over the active sets is then its own and the masks' sums
    are added in order, equal to the per-model sum to rounding, not bit for bit (that one adds every
    term to one running total). One compiled version serves every case."""
    B, m, n = W.shape
    masks = 1 << m
    per_model = masks if by_mask else 1  # work items per model, each 1 or every mask
    span = masks // per_model
    partial = np.zeros(B * per_model)
    for item in nb.prange(B * per_model):
        model, first = item // per_model, (item % per_model) * span
        scratch = _mask_scratch(n, largest)
        if grad:
            for i in range(n):
                out_gb[model, i] = 0.0
                for hh in range(m):
                    out_gW[model, hh, i] = 0.0
        total = 0.0
        for mask in range(first, first + span):
            total = _mask_pass(
                total, model, mask, W, b, density, importance, p, leaders, tables, sets, largest, grad,
                out_gW, out_gb, scratch,
            )  # fmt: skip
        partial[item] = total
    if not by_mask:
        return partial
    out = np.zeros(B)
    for model in range(B):
        for item in range(model * per_model, (model + 1) * per_model):
            out[model] += partial[item]
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


def _flat(setup: Setup, W, b, exact: bool = True):
    if not isinstance(setup, Setup):
        raise InputError(f"the compiled exact loss needs a theory.Setup, got {type(setup).__name__}")
    check_many(
        [setup], np.zeros((1, setup.n_hidden, setup.n_features)), np.zeros((1, setup.n_features)), exact
    )
    W, b = setup.check_parameters(W, b)
    batch = np.broadcast_shapes(W.shape[:-2], b.shape[:-1])
    m, n = setup.n_hidden, setup.n_features
    W = np.broadcast_to(W, batch + (m, n)).reshape(-1, m, n)
    b = np.broadcast_to(b, batch + (n,)).reshape(-1, n)
    return W, b, batch


def _run(setups, W, b, grad: bool, max_active: int | None = None, by_mask: bool | None = None):
    """(loss, grad_W, grad_b) of B models by _losses, one thread per model, or per (model, dropout mask)
    where by_mask (default: a bracket, truncated and without the gradient, of fewer models than
    threads)."""
    setups, W, b = check_many(setups, W, b, exact=max_active is None)
    n = setups[0].n_features
    largest = n if max_active is None else min(max_active, n)  # the most coefficients of a form
    sets = _all_sets(n) if largest == n else _sets_up_to(n, largest)
    density = np.array([s.density for s in setups])
    importance = np.array([s.importance_array for s in setups])
    p = np.array([s.p for s in setups], dtype=float)
    leaders = np.array([s.group_leaders for s in setups])
    W, b = np.ascontiguousarray(W), np.ascontiguousarray(b)
    if by_mask is None:
        by_mask = not grad and largest < n and len(W) < nb.get_num_threads()
    if by_mask and grad:
        raise InputError("the loss computed one thread per dropout mask has no gradient")
    gW = np.empty_like(W) if grad else np.empty((0, 0, 0))
    gb = np.empty_like(b) if grad else np.empty((0, 0))
    loss = _losses(W, b, density, importance, p, leaders, _TABLES, sets, largest, grad, gW, gb, by_mask)
    return (loss, gW, gb) if grad else (loss, None, None)


def _all_sets(n: int) -> np.ndarray:
    return np.arange(1 << n, dtype=np.int64)


def _sets_up_to(n: int, max_active: int) -> np.ndarray:
    """The active sets of at most max_active of n features, as bit masks in ascending order."""
    masks = [
        sum(1 << j for j in combo)
        for k in range(max_active + 1)
        for combo in itertools.combinations(range(n), k)
    ]
    return np.array(sorted(masks), dtype=np.int64)


def expected_loss_many_compiled(setups, W, b) -> np.ndarray:
    """The exact loss of B models, each at its own setup (one shape): W (B, m, n), b (B, n); (B,)."""
    return _run(setups, W, b, False)[0]


def expected_loss_and_grad_many_compiled(setups, W, b, max_active: int | None = None) -> LossAndGrad:
    """theory.expected_loss_and_grad_many, compiled: B models, each at its own setup. With max_active,
    the loss summed over active sets of at most that many features (the lower end of
    expected_loss_bounds_compiled) and its gradient; n_features may then exceed MAX_EXACT_FEATURES."""
    if max_active is not None:
        max_active = check_max_active(tuple(setups)[0], max_active)
    loss, gW, gb = _run(setups, W, b, True, max_active)
    return LossAndGrad(loss=loss, grad_W=gW, grad_b=gb)


def expected_loss_bounds_compiled(setup: Setup, W, b, max_active: int) -> LossBounds:
    """theory.expected_loss_bounds, compiled: the loss over active sets of at most max_active features,
    with its rigorous bracket; W (..., m, n), b (..., n) broadcast. The cost grows with the number of
    such sets times 3^max_active, not 3^n: 20 features at max_active = 3 take about as long as 9 exact."""
    max_active = check_max_active(setup, max_active)
    W, b, batch = _flat(setup, W, b, exact=False)
    lower = _run([setup] * len(W), W, b, False, max_active)[0].reshape(batch)
    return bracket(setup, W.reshape(batch + W.shape[1:]), b.reshape(batch + b.shape[1:]), max_active, lower)
