"""Moments of a truncated power of an affine form over the unit cube.

The one integral the exact loss needs:

    J_q(b, c) = E[(b + c . u)_+^q],   u ~ Uniform[0, 1]^k,  q >= 1,

evaluated exactly and without catastrophic cancellation when some c_j are
tiny or zero. The textbook inclusion-exclusion formula

    J_q = q!/(q+k)! * sum_S (-1)^(k-|S|) (b + sum_{j in S} c_j)_+^(q+k) / prod_j c_j

divides by every c_j at once and loses about log10(|b| / |c_j|) digits per
small coefficient. Here instead:

1. Reflection: u_j -> 1 - u_j for c_j < 0 makes every coefficient a_j >= 0
   and the offset the minimum of the form, lo = b + sum_j min(c_j, 0).
2. Pivot on the largest remaining coefficient a_d and integrate it out,
   J_q(o; a_d, rest) = [J_{q+1}(o + a_d; rest) - J_{q+1}(o; rest)] / ((q+1) a_d),
   but only at nodes whose range [o, o + sum(rest) + a_d] straddles 0. There
   a_d is at least 1/(#remaining) of the range, so the difference loses a
   bounded number of digits whatever the smaller coefficients are.
   A node that straddles 0 with a pivot below TINY_PIVOT (1e-140) is 0 to
   far below rounding, and is taken as 0.
3. Any node whose range does not straddle 0 is either 0 (range <= 0) or a
   polynomial moment (range >= 0), E[(o + sum_j a_j u_j)^q], summed from
   positive terms only: sum_r C(q, r) o^(q-r) mu_r with mu_r the raw moments
   of sum_j a_j u_j, built by binomial convolution of E[u^s] = 1/(s+1).

The recursion is laid out breadth-first over the 2^(k+1) nodes of the pivot
tree so that every step is one batched tensor operation. It is written in
torch (float64) so that derivatives come from autograd: E[u_j y_+^(q-1)] is
dJ_q/dc_j / q, which the exact loss uses.
"""

from __future__ import annotations

import math

import torch

#: A node that straddles 0 with a pivot at most this is taken as 0. Its range is at most k times the
#: pivot, so its value is below (k 1e-140)^q and its derivatives below (k 1e-140)^(q-1): far under the
#: rounding of any term the loss adds it to. Dividing by such a pivot is what would not be harmless:
#: the derivative of the divided difference divides by its square, which underflows to 0 below 1e-154
#: (0/0: NaN).
TINY_PIVOT = 1e-140
#: Forms whose scale max(|b|, |c_j|) is below this are evaluated rescaled to 1 (see truncated_power_moment).
RESCALE_BELOW = 1e-30
#: Forms of scale below this are 0 (within 1e-100 of the kink at b = 0, c = 0).
ZERO_SCALE = 1e-100


def _powers(x: torch.Tensor, n: int) -> torch.Tensor:
    """x^0, ..., x^n stacked on a new last axis, by repeated products.

    Not x ** arange(n + 1): the derivative of x^0 at x = 0 is 0 * inf = NaN,
    which would leak through torch.where into the gradients.
    """
    out = [torch.ones_like(x), x]
    for _ in range(n - 1):
        out.append(out[-1] * x)
    return torch.stack(out[: n + 1], -1)


def _binomial_row(q: int, dtype, device) -> torch.Tensor:
    return torch.tensor([math.comb(q, r) for r in range(q + 1)], dtype=dtype, device=device)


def truncated_power_moment(offset: torch.Tensor, coef: torch.Tensor, q: int) -> torch.Tensor:
    """E[(offset + coef . u)_+^q] for u uniform on the unit cube.

    offset: (...,); coef: (..., k) with k >= 0; q >= 1. Returns (...,).
    Exact up to rounding; differentiable in offset and coef (autograd).

    >>> import torch
    >>> truncated_power_moment(torch.tensor(0.0, dtype=torch.float64),
    ...                        torch.tensor([1.0], dtype=torch.float64), 2)
    tensor(0.3333, dtype=torch.float64)
    """
    if q < 1:
        raise ValueError(f"q = {q} is not allowed; the order must be an integer >= 1")
    # J_q is homogeneous of degree q: J_q(s b, s c) = s^q J_q(b, c). A form of tiny scale is
    # evaluated at scale 1 (a constant s, so autograd's derivatives are the true ones, each of its
    # own degree); else its powers and the squared pivots of the derivatives would underflow (0/0).
    # A form of scale below ZERO_SCALE is taken as 0, with zero derivatives: it lies within 1e-100 of
    # b = 0, c = 0, the kink of the loss, where the derivative is the one from b < 0.
    scale = torch.maximum(offset.abs(), coef.abs().amax(-1) if coef.shape[-1] else offset.abs()).detach()
    if not bool((scale < RESCALE_BELOW).any()):
        return _moment(offset, coef, q)
    zero = scale < ZERO_SCALE
    scale = torch.where((scale < RESCALE_BELOW) & ~zero, scale, torch.ones_like(scale))
    # zero forms enter as exact zeros, so that no 0/0 of theirs reaches the derivatives
    offset = torch.where(zero, torch.zeros_like(offset), offset / scale)
    coef = torch.where(zero[..., None], torch.zeros_like(coef), coef / scale[..., None])
    return _moment(offset, coef, q) * scale**q


def _moment(offset: torch.Tensor, coef: torch.Tensor, q: int) -> torch.Tensor:
    """truncated_power_moment for a form of any scale that does not underflow."""
    k = coef.shape[-1]
    dtype, device = coef.dtype, coef.device
    negative = coef < 0
    # where(), not abs()/clamp(): at c_j = 0 both must pick the same branch for
    # the chain rule through the reflection to stay right.
    lo = offset + torch.where(negative, coef, torch.zeros_like(coef)).sum(-1)
    a = torch.where(negative, -coef, coef)
    a = torch.sort(a, dim=-1, descending=True).values

    # Raw moments mu^(d)_r = E[(sum_{j>=d} a_j u_j)^r], r = 0..q+k-d, built
    # from the smallest coefficient up; all terms are non-negative.
    max_order = q + k
    r_idx = torch.arange(max_order + 1, device=device)
    inv_s1 = 1.0 / (r_idx.to(dtype) + 1.0)  # E[u^s] = 1/(s+1)
    binom = torch.tensor(
        [[math.comb(r, s) for s in range(max_order + 1)] for r in range(max_order + 1)],
        dtype=dtype,
        device=device,
    )
    # mu_new[r] = sum_s C(r, s) a^s/(s+1) mu_old[r - s]: one shifted copy of
    # mu_old per s, scaled by the constant row C(., s) (elementwise products:
    # far cheaper, forward and backward, than a batch of tiny matrix products).
    shift_rows = [
        torch.where(r_idx >= s, binom[:, s], torch.zeros((), dtype=dtype)) for s in range(max_order + 1)
    ]
    moments = [None] * (k + 1)
    mu = torch.zeros(coef.shape[:-1] + (max_order + 1,), dtype=dtype, device=device)
    mu[..., 0] = 1.0
    moments[k] = mu
    for d in range(k - 1, -1, -1):
        size = q + d + 1  # depth d is used up to order q + d, and needs no more of depth d + 1
        powers = _powers(a[..., d], size - 1) * inv_s1[:size]  # a^s/(s+1)
        new = mu[..., :size] * powers[..., :1]
        for s in range(1, size):
            shifted = torch.nn.functional.pad(mu[..., : size - s], (s, 0))
            new = new + shifted * shift_rows[s][:size] * powers[..., s : s + 1]
        mu = new
        moments[d] = mu

    # Offsets of the 2^d nodes at depth d (bit j set: pivot j took its upper end).
    offsets = [lo.unsqueeze(-1)]
    for d in range(k):
        o = offsets[-1]
        offsets.append(torch.cat([o, o + a[..., d : d + 1]], dim=-1))
    suffix = torch.flip(torch.cumsum(torch.flip(a, [-1]), -1), [-1])  # sum_{j>=d} a_j

    value = offsets[k].clamp(min=0) ** (q + k)
    for d in range(k - 1, -1, -1):
        o = offsets[d]
        order = q + d
        # sum_r C(order, r) mu_r o^(order - r), by Horner's rule in o >= 0.
        weights = _binomial_row(order, dtype, device) * moments[d][..., : order + 1]
        o_pos = o.clamp(min=0)
        polynomial = weights[..., :1].expand_as(o)
        for r in range(1, order + 1):
            polynomial = torch.addcmul(weights[..., r : r + 1], polynomial, o_pos)
        pivot = a[..., d : d + 1]
        safe_pivot = torch.where(pivot > TINY_PIVOT, pivot, torch.ones_like(pivot))
        half = 2**d
        divided = (value[..., half:] - value[..., :half]) / ((order + 1) * safe_pivot)
        hi = o + suffix[..., d : d + 1]
        # A straddling node whose whole range (suffix) is below ZERO_SCALE is 0 as well (its value below
        # ZERO_SCALE^(q + d), its derivatives below (q + d) ZERO_SCALE^(q + d - 1), d >= 1): several tiny
        # pivots in a row would otherwise chain divisions by each into derivatives that overflow (0 * inf).
        value = torch.where(
            (hi <= 0) | ((o < 0) & ((pivot <= TINY_PIVOT) | (suffix[..., d : d + 1] <= ZERO_SCALE))),
            torch.zeros_like(o),
            torch.where(o >= 0, polynomial, divided),
        )
    return value.squeeze(-1)
