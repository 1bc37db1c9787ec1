"""The exact expected loss under dropout, and its gradient.

    L(W, b) = sum_mask P(mask) sum_A P(A) sum_i I_i E_u[(x_i - ReLU(y_i))^2]
    y_i     = b_i + sum_{j in A} M_mask[i, j] u_j,   M_mask = W^T diag(mask) W / (1 - p)

mask runs over the 2^m dropout patterns, A over the sets of active features
(x_j = u_j ~ Uniform[0, 1] for j in A, else 0). For each term,

    E[(x_i - y_+)^2] = [i in A]/3 - 2 E[u_i y_+] + E[y_+^2],

E[y_+^2] = J_2(b_i, c) from theory.cube (c = M_mask[i, A]) and
E[u_i y_+] = (1/2) dJ_2/dc_i, taken by autograd. Everything is float64.
Cost: 2^m masks x n outputs x sum_k C(n, k) 2^(k+1) tree nodes, i.e. about
2^m n 3^n; masks and active sets of probability zero are skipped.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from theory.cube import truncated_power_moment
from theory.errors import InputError
from theory.setup import Setup

#: Largest n for which the exact loss (all active sets) is allowed.
MAX_EXACT_FEATURES = 12
#: The most features the truncated loss takes (its active sets are bit masks of an int64).
MAX_TRUNCATED_FEATURES = 62
#: Tree nodes per evaluation chunk; bounds memory (autograd keeps them all).
_CHUNK_NODES = 4_000_000
#: Below this many tree nodes per call, pad all active-set sizes into one
#: bucket: a small evaluation is bound by the number of torch calls.
_PADDED_NODES = 300_000


@dataclass(frozen=True)
class LossAndGrad:
    """Exact loss (batch shape) and its gradients, shaped like W and b."""

    loss: np.ndarray
    grad_W: np.ndarray
    grad_b: np.ndarray


@dataclass(frozen=True)
class LossBounds:
    """Loss from active sets of at most max_active features, with a rigorous bracket.

    lower <= L <= upper. omitted_mass is the probability of the active sets
    left out; upper adds a rigorous bound on their contribution (theory.loss.bracket).
    """

    lower: np.ndarray
    upper: np.ndarray
    omitted_mass: float
    max_active: int


def _masks(m: int, p: np.ndarray, leaders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dropout patterns (D, m) in {0, 1} of non-zero probability for some model; probabilities (B, D).

    leaders (B, m): each unit's group leader (Setup.group_leaders). A pattern has probability
    (1 - p)^kept p^(G - kept) over the G groups when every unit matches its leader, else 0."""
    patterns = np.array(list(itertools.product([0.0, 1.0], repeat=m)))
    rows = np.arange(m)
    is_leader = leaders == rows  # (B, m)
    consistent = (patterns[None, :, :] == patterns[:, leaders].transpose(1, 0, 2)).all(-1)  # (B, D)
    kept = patterns @ is_leader.T.astype(float)  # (D, B): kept groups
    groups = is_leader.sum(1)  # (B,)
    prob = (1 - p[:, None]) ** kept.T * p[:, None] ** (groups[:, None] - kept.T)
    prob = np.where(consistent, prob, 0.0)
    nonzero = (prob > 0).any(0)
    return patterns[nonzero], prob[:, nonzero]


def _active_sets(density: np.ndarray, max_active: int, padded: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Active sets of at most max_active features with non-zero probability for some model, in buckets.

    density: (B, n). Each bucket is (indices (C, k), probabilities (B, C)).
    padded=False: one bucket per size k (the least work, sum_k C(n, k) 2^k
    nodes). padded=True: one bucket of width max_active, shorter sets padded
    with index n, which points at a zero coefficient (more nodes, far fewer
    torch calls: the faster choice for small batches).
    """
    n = density.shape[1]
    buckets = []
    for k in range(max_active + 1):
        combos = list(itertools.combinations(range(n), k))
        sets = np.array(combos, dtype=np.int64).reshape(len(combos), k)
        active = np.zeros((len(sets), n), dtype=bool)
        np.put_along_axis(active, sets, True, axis=1)
        prob = np.where(active[None], density[:, None, :], 1.0 - density[:, None, :]).prod(-1)
        keep = (prob > 0).any(0)
        if keep.any():
            buckets.append((sets[keep], prob[:, keep]))
    if padded and len(buckets) > 1:
        width = max(sets.shape[1] for sets, _ in buckets)
        sets = np.concatenate(
            [np.pad(s, ((0, 0), (0, width - s.shape[1])), constant_values=n) for s, _ in buckets]
        )
        buckets = [(sets, np.concatenate([p for _, p in buckets], axis=1))]
    return buckets


@dataclass(frozen=True)
class _Columns:
    """Per-model setup values: density (B, n), importance (B, n), p (B,), group leaders (B, m)."""

    density: np.ndarray
    importance: np.ndarray
    p: np.ndarray
    leaders: np.ndarray

    def __getitem__(self, rows) -> _Columns:
        return _Columns(self.density[rows], self.importance[rows], self.p[rows], self.leaders[rows])

    @staticmethod
    def of(setups, batch: int) -> _Columns:
        """One Setup broadcast to the batch, or a sequence of batch setups (one per model)."""
        if isinstance(setups, Setup):
            setups = [setups]
        density = np.array([s.density for s in setups])
        importance = np.array([s.importance_array for s in setups])
        p = np.array([s.p for s in setups], dtype=float)
        leaders = np.array([s.group_leaders for s in setups])
        if len(setups) == 1:
            return _Columns(*(np.repeat(a, batch, axis=0) for a in (density, importance, p, leaders)))
        return _Columns(density, importance, p, leaders)


def _loss_torch(columns: _Columns, W: torch.Tensor, b: torch.Tensor, max_active: int, create_graph: bool):
    """Loss summed over active sets of size <= max_active; W (B, m, n), b (B, n) float64."""
    n = W.shape[-1]
    importance = torch.as_tensor(columns.importance, dtype=W.dtype)
    patterns, mask_prob = _masks(W.shape[-2], columns.p, columns.leaders)
    patterns = torch.as_tensor(patterns, dtype=W.dtype)
    mask_prob = torch.as_tensor(mask_prob, dtype=W.dtype)
    scale = torch.as_tensor(1.0 / (1.0 - columns.p), dtype=W.dtype)
    M = torch.einsum("bki,dk,bkj,b->bdij", W, patterns, W, scale)  # (B, D, n, n)
    M = torch.nn.functional.pad(M, (0, 1))  # column n: the zero coefficient of padded sets
    padded = W.shape[0] * _nodes_per_model(n, W.shape[-2], max_active) <= _PADDED_NODES
    total = torch.zeros(W.shape[0], dtype=W.dtype)
    for sets, set_prob in _active_sets(columns.density, max_active, padded):
        set_prob = torch.as_tensor(set_prob, dtype=W.dtype)
        idx = torch.as_tensor(sets)
        coef = M[..., idx]  # (B, D, n, C, k): coef[..., i, c, j] = M[i, A_c[j]]
        if not coef.requires_grad:
            coef = coef.detach().requires_grad_(True)
        offset = b[:, None, :, None].expand(coef.shape[:-1])
        second = truncated_power_moment(offset, coef, 2)  # E[y_+^2], (B, D, n, C)
        if sets.shape[1]:
            (dcoef,) = torch.autograd.grad(second.sum(), coef, create_graph=create_graph)
            member = (idx[None, :, :] == torch.arange(n)[:, None, None]).to(W.dtype)  # (n, C, k)
            cross = (dcoef * member).sum(-1) / 2.0  # E[u_i y_+], zero when i not in A
            in_set = member.sum(-1) / 3.0  # E[x_i^2 | A] = 1/3 for i in A
            per_output = in_set - 2.0 * cross + second
        else:
            per_output = second
        per_set = torch.einsum("bdic,bi->bdc", per_output, importance)
        total = total + torch.einsum("bdc,bd,bc->b", per_set, mask_prob, set_prob)
    return total


def _nodes_per_model(n: int, m: int, max_active: int) -> int:
    sets = sum(math.comb(n, k) * 2 ** (k + 1) for k in range(max_active + 1))
    return 2**m * n * sets


def _evaluate(setups, W, b, max_active: int, with_grad: bool):
    """setups: one Setup (broadcast over the batch) or a sequence of them, one per model of W's batch."""
    setup = setups if isinstance(setups, Setup) else setups[0]
    W, b = setup.check_parameters(W, b)
    batch = np.broadcast_shapes(W.shape[:-2], b.shape[:-1])
    m, n = setup.n_hidden, setup.n_features
    Wf = np.broadcast_to(W, batch + (m, n)).reshape(-1, m, n)
    bf = np.broadcast_to(b, batch + (n,)).reshape(-1, n)
    columns = _Columns.of(setups, len(Wf))
    size = max(1, _CHUNK_NODES // _nodes_per_model(n, m, max_active))
    losses, grads_W, grads_b = [], [], []
    for start in range(0, len(Wf), size):
        Wt = torch.tensor(Wf[start : start + size], dtype=torch.float64, requires_grad=with_grad)
        bt = torch.tensor(bf[start : start + size], dtype=torch.float64, requires_grad=with_grad)
        rows = slice(start, start + size)
        loss = _loss_torch(columns[rows], Wt, bt, max_active, create_graph=with_grad)
        if with_grad:
            gW, gb = torch.autograd.grad(loss.sum(), (Wt, bt))
            grads_W.append(gW.numpy())
            grads_b.append(gb.numpy())
        losses.append(loss.detach().numpy())
    loss = np.concatenate(losses).reshape(batch)
    if not np.all(np.isfinite(loss)):
        raise InputError(
            f"the exact loss overflows float64 for these parameters (largest |W| = {np.abs(W).max():.3g}, "
            f"|b| = {np.abs(b).max():.3g}); scale them down"
        )
    if not with_grad:
        return loss, None, None
    # Broadcast parameters get the sum of their copies' gradients.
    gW = np.concatenate(grads_W).reshape(batch + (m, n))
    gb = np.concatenate(grads_b).reshape(batch + (n,))
    gW = _sum_to_shape(gW, W.shape)
    gb = _sum_to_shape(gb, b.shape)
    return loss, gW, gb


def _sum_to_shape(x: np.ndarray, shape: tuple) -> np.ndarray:
    lead = x.ndim - len(shape)
    x = x.sum(axis=tuple(range(lead))) if lead else x
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and x.shape[i] != 1)
    return x.sum(axis=axes, keepdims=True) if axes else x


def _check_exact(setup: Setup) -> None:
    if setup.n_features > MAX_EXACT_FEATURES:
        raise InputError(
            f"n_features = {setup.n_features} is too large for the exact loss (at most "
            f"{MAX_EXACT_FEATURES}); use expected_loss_bounds(setup, W, b, max_active=k)"
        )


def expected_loss(setup: Setup, W, b) -> np.ndarray:
    """Exact L (sum over features, importance-weighted) for W (..., m, n), b (..., n).

    Returns an array of the broadcast batch shape (a 0-d array for one model).

    >>> s = Setup(n_features=2, n_hidden=1, sparsity=0.5)
    >>> round(float(expected_loss(s, [[1.0, -1.0]], [0.0, 0.0])), 12)  # antipodal pair: 2 (1-S)^2 / 6
    0.083333333333
    """
    _check_exact(setup)
    return _evaluate(setup, W, b, setup.n_features, with_grad=False)[0]


def expected_loss_and_grad(setup: Setup, W, b) -> LossAndGrad:
    """Exact L and its gradients dL/dW, dL/db (same shapes as W and b).

    L is continuously differentiable except where y_i has an atom at 0: with
    every neuron dropped or no feature active, y_i = b_i, so L has a kink at
    b_i = 0 exactly. There the derivative returned is the one from b_i < 0, and so it is within 1e-100
    of the kink (theory.cube.ZERO_SCALE: where b_i and every coefficient of y_i are below 1e-100).
    """
    _check_exact(setup)
    loss, gW, gb = _evaluate(setup, W, b, setup.n_features, with_grad=True)
    return LossAndGrad(loss=loss, grad_W=gW, grad_b=gb)


def check_many(setups, W, b, exact: bool = True) -> tuple[tuple[Setup, ...], np.ndarray, np.ndarray]:
    """B setups of one shape, within the exact loss's reach (exact=False: within a truncated one's, at
    most MAX_TRUNCATED_FEATURES), and W (B, m, n), b (B, n) for them; or an InputError."""
    setups = tuple(setups)
    if not setups or not all(isinstance(s, Setup) for s in setups):
        raise InputError("the exact loss of many models needs at least one setup, a theory.Setup per model")
    W, b = setups[0].check_parameters(W, b)
    shapes = {(s.n_features, s.n_hidden) for s in setups}
    if len(shapes) > 1:
        raise InputError(
            f"the setups have different shapes {sorted(shapes)}; one (n_features, n_hidden) only"
        )
    if W.ndim != 3 or b.ndim != 2 or len(W) != len(setups) or len(b) != len(setups):
        raise InputError(
            f"W {W.shape} and b {b.shape} must be (B, m, n) and (B, n) with B = {len(setups)}, one per setup"
        )
    if exact:
        _check_exact(setups[0])
    elif setups[0].n_features > MAX_TRUNCATED_FEATURES:
        raise InputError(
            f"n_features = {setups[0].n_features} is too large for the truncated exact loss (at most "
            f"{MAX_TRUNCATED_FEATURES})"
        )
    return setups, W, b


def expected_loss_and_grad_many(setups, W, b) -> LossAndGrad:
    """Exact L and its gradients for B models, each with its own setup, in one batched evaluation.

    setups: a sequence of B Setups of one shape (n_features, n_hidden) that
    may differ in sparsity, importance and p; W (B, m, n), b (B, n). The
    phase diagrams fit many cells at once this way.
    """
    setups, W, b = check_many(setups, W, b)
    loss, gW, gb = _evaluate(setups, W, b, setups[0].n_features, with_grad=True)
    return LossAndGrad(loss=loss, grad_W=gW, grad_b=gb)


def check_max_active(setup: Setup, max_active) -> int:
    """max_active as an int, at most n_features; or an InputError."""
    if isinstance(max_active, bool) or not isinstance(max_active, (int, np.integer)) or max_active < 0:
        raise InputError(f"max_active = {max_active!r} is not allowed; it must be an integer >= 0")
    max_active = min(int(max_active), setup.n_features)
    if max_active > MAX_EXACT_FEATURES:
        raise InputError(
            f"max_active = {max_active} is too large: a form of more than {MAX_EXACT_FEATURES} active "
            "features is beyond the exact loss's reach"
        )
    return max_active


def _count_tails(density: np.ndarray, k: int) -> tuple[float, np.ndarray, np.ndarray]:
    """For independent features active with probability density (n,): P(more than k active),
    P(j active and more than k) (n,) and P(j and l active and more than k) (n, n; the diagonal is
    P(j active and more than k)). Counts above k + 1 are lumped into one absorbing state, so no tail is
    found by subtraction."""
    n, cap = len(density), k + 1

    def step(dist, q, skip=None):
        new = dist * (1 - q)
        new[..., 1:] += dist[..., :-1] * q
        new[..., cap] += dist[..., cap] * q  # absorbing: still more than k
        return new if skip is None else np.where(skip[..., None], dist, new)

    full = np.zeros(cap + 1)
    full[0] = 1.0
    leave_one = np.zeros((n, cap + 1))
    leave_one[:, 0] = 1.0
    leave_two = np.zeros((n, n, cap + 1))
    leave_two[..., 0] = 1.0
    index = np.arange(n)
    for q, d in enumerate(density):
        full = step(full, d)
        leave_one = step(leave_one, d, index == q)
        leave_two = step(leave_two, d, (index[:, None] == q) | (index[None, :] == q))
    one = density * leave_one[:, k:].sum(-1)  # the others: at least k more
    two = np.outer(density, density) * leave_two[..., max(k - 1, 0) :].sum(-1)  # at least k - 1 more
    np.fill_diagonal(two, one)
    return float(full[cap]), one, two


def bracket(setup: Setup, W, b, max_active: int, lower) -> LossBounds:
    """LossBounds from the loss truncated to at most max_active active features (lower, batch shape).

    upper adds a rigorous bound on what the active sets of more than k = max_active features contribute:
    per sample, (x_i - y_i+)^2 <= x_i^2 + y_i+^2 and y_i+ <= b_i+ + sum_j c_ij x_j with c_ij =
    max(M_ij, 0) under the sample's mask, so their contribution is at most, summed over masks and
    importance-weighted over i, P(i, >k)/3 + b_i+^2 P(>k) + b_i+ sum_j c_ij P(j, >k) + sum_j c_ij^2
    P(j, >k)/3 + sum_{j != l} c_ij c_il P(j, l, >k)/4 (E[x] = 1/2, E[x^2] = 1/3 for an active feature;
    P(j, l, >k): j and l active, more than k in all); or, where smaller, P(>k) times the per-sample bound
    with every feature active, max over masks of sum_i I_i max(1, b_i + sum_j c_ij)^2. W and b are
    arrays its callers checked (Setup.check_parameters)."""
    n = setup.n_features
    lower = np.asarray(lower, dtype=float)
    if max_active >= n:
        return LossBounds(lower=lower, upper=lower.copy(), omitted_mass=0.0, max_active=max_active)
    omitted, one, two = _count_tails(np.asarray(setup.density, dtype=float), max_active)
    patterns, prob = _masks(setup.n_hidden, np.array([setup.p]), setup.group_leaders[None])
    M = np.einsum("...ki,dk,...kj->...dij", W, patterns, W) / (1.0 - setup.p)
    c = np.clip(M, 0, None)  # (..., D, n, n)
    c0 = np.clip(b, 0, None)[..., None, :]  # (..., 1, n)
    cross = two - np.diag(np.diagonal(two))
    per_output = (
        one / 3
        + c0**2 * omitted
        + c0 * (c @ one)
        + (c**2 @ one) / 3
        + np.einsum("...ij,jl,...il->...i", c, cross, c) / 4
    )  # (..., D, n)
    tail = (per_output * setup.importance_array).sum(-1) @ prob[0]
    # the per-sample bound with every feature active: looser, except for small weights (y_i+ < 1)
    worst = (np.maximum(1.0, b[..., None, :] + c.sum(-1)) ** 2 * setup.importance_array).sum(-1).max(-1)
    tail = np.minimum(tail, omitted * worst)
    return LossBounds(lower=lower, upper=lower + tail, omitted_mass=omitted, max_active=max_active)


def expected_loss_bounds(setup: Setup, W, b, max_active: int) -> LossBounds:
    """L truncated to active sets of at most max_active features, with a rigorous bracket."""
    max_active = check_max_active(setup, max_active)
    W, b = setup.check_parameters(W, b)
    return bracket(setup, W, b, max_active, _evaluate(setup, W, b, max_active, with_grad=False)[0])
