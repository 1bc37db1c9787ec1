"""The loss averaged over a fixed sample (a sample-average approximation), compiled, and its minimiser.

Where neither the exact loss (theory.loss: at most MAX_EXACT_FEATURES
features) nor its truncation to few active features (theory.direct: low
density only) reaches, the least loss over all of W and b is searched on

    L_N(W, b) = P0 sum_i I_i ReLU(b_i)^2 + L_1(W, b) + P2 (1/N) sum_s sum_i I_i (x_si - x'_si)^2,

stratified by the number of active features. P0 = prod_i S_i is the chance
that none is active (its term in closed form). L_1 is the exact loss over the
inputs with exactly one active feature, also in closed form (below). Only the
inputs with two or more active features, the ones that carry interference,
are sampled: N fixed samples drawn given that at least two are active (P2
the chance of that), each with one dropout mask drawn with it. L_N is a
smooth function of (W, b) almost everywhere, deterministic for a seed, so
L-BFGS-B minimises it like the exact loss; its minimiser's loss is then
re-scored by theory.montecarlo on fresh samples (independent code and
stream), because L_N at its own minimiser is biased low (it has fitted its
sample).

L_1: with feature a alone active, at value u ~ U(0, 1), and dropout scales D
(each mask of the units' groups, with its probability), output i's
pre-activation is b_i + c u with c = (W^T D W)_ia, and its expected loss is
F(b_i, c) = E ReLU(b_i + c u)^2 for i != a and 1/3 - 2 G(b_a, c) + F(b_a, c),
G(b, c) = E u ReLU(b + c u), for i = a. On the interval of u where b + c u > 0
the ReLU is linear, so F, G and their derivatives are short sums of
nonnegative terms (_single_active_terms). Summed with the probabilities of
{a} and of each mask, this is the exact loss truncated to one active feature
(theory.compiled_loss with max_active=1 computes the same by its general
recursion, at many times the cost; the tests hold the two together).

The sampled kernel runs in parallel over blocks of samples, and within a
block over chunks of samples at once (so that the compiler vectorises the
work across samples), with every sum kept in the order of a loop over one
sample: its result depends neither on the chunk nor on the number of threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numba as nb
import numpy as np
from scipy.optimize import minimize

from theory.cube import ZERO_SCALE
from theory.errors import InputError
from theory.montecarlo import monte_carlo_loss
from theory.optimize import one_blas_thread
from theory.setup import Setup

#: Samples of the average (given at least two active features) for the search from every start; the
#: polish of the best draws twice as many; the Monte Carlo re-score RESCORE_SAMPLES. L_N at its own
#: minimiser is below the loss there by O(parameters / N) times P2.
SEARCH_SAMPLES = 2**15
RESCORE_SAMPLES = 2**21
#: The re-score's samples are drawn with the search's seed plus this (search: seed, polish: seed + 1).
RESCORE_SEED = 2
#: The end points of the starts are ranked by L_N on SELECT_SAMPLES samples of their own (seed +
#: SELECT_SEED; unbiased there, a sample none of them has fitted), not on the search sample: L_N at each
#: end point is below its loss by an amount of its own, as large as the gaps between basins.
SELECT_SAMPLES = 2**19
SELECT_SEED = 3
#: L-BFGS-B's stopping rule: the end point is rescored by Monte Carlo to about 1e-3, so converging L_N
#: (itself a sample) past 1e-10 buys nothing; 500 iterations reach 1e-4 of the limit at 20 in 5.
OPTIONS = {"maxiter": 500, "ftol": 1e-10, "gtol": 1e-8}
_BLOCKS = 64
#: Samples the kernel takes at once within a block: its scratch arrays (2n + 2m + 1 rows of CHUNK numbers,
#: and two of CHUNK rows of n rounded up to 8: 51 KB at 20 in 5) stay in the core's cache (64 and 128 ran
#: 9% faster than 256 at 20 in 5 on one thread). The result does not depend on it: each sum keeps its
#: order.
CHUNK = 64


@nb.njit(cache=True, inline="always")
def _add_rows(acc, rows, coefficients, count):
    """acc[s] += coefficients[r] * rows[r, s] for r = 0, 1, ... in order, for s < count: four rows a pass
    over acc, each acc[s] adding its terms in the order of one row a pass."""
    R = len(coefficients)
    r = 0
    while r + 4 <= R:
        c0, c1, c2, c3 = coefficients[r], coefficients[r + 1], coefficients[r + 2], coefficients[r + 3]
        a0, a1, a2, a3 = rows[r], rows[r + 1], rows[r + 2], rows[r + 3]
        for s in range(count):
            acc[s] = (((acc[s] + c0 * a0[s]) + c1 * a1[s]) + c2 * a2[s]) + c3 * a3[s]
        r += 4
    while r < R:
        c, a = coefficients[r], rows[r]
        for s in range(count):
            acc[s] += c * a[s]
        r += 1


@nb.njit(cache=True, inline="always")
def _dropped_products(target, rows, W, mask, start, count):
    """target[j, s] = mask[start + s, j] * (0 + W[j, 0] rows[0, s] + W[j, 1] rows[1, s] + ...) for
    s < count: D W v for each of the chunk's vectors v (rows: one per feature)."""
    for j in range(W.shape[0]):
        tj = target[j]
        for s in range(count):
            tj[s] = 0.0
        _add_rows(tj, rows, W[j], count)
        for s in range(count):
            tj[s] *= mask[start + s, j]


@nb.njit(cache=True)
def _chunk(W, WT, b, x, mask, importance, start, count, scratch, block_W, block_b, loss):
    """Samples start, ..., start + count - 1 of the module docstring's average: adds their gradient to
    block_W (m, padded n) and block_b, and returns loss plus their losses, each added in sample order.

    The per-sample work runs along the samples (rows of scratch over the chunk: x transposed, h, the
    outputs, which become g, dh), so that the compiler vectorises it across samples; every sum over
    features or units adds its terms in the order a loop over one sample adds them (0 + the term of
    feature 0 + that of feature 1 ...), and the accumulation into the block's gradient takes the
    samples one at a time, in order."""
    m, n = W.shape
    xT, h, out, dh, total = scratch.xT, scratch.h, scratch.out, scratch.dh, scratch.total
    gS, xS = scratch.gS, scratch.xS
    for i in range(n):
        for s in range(count):
            xT[i, s] = x[start + s, i]
    _dropped_products(h, xT, W, mask, start, count)  # h = D W x
    for i in range(n):  # outputs: b + W^T h
        oi = out[i]
        for s in range(count):
            oi[s] = b[i]
        _add_rows(oi, h, WT[i], count)
    for s in range(count):
        total[s] = 0.0
    for i in range(n):  # a clipped output leaves x_i as its residual and passes no gradient; out -> g
        weight = importance[i]
        oi, xi = out[i], xT[i]
        for s in range(count):
            o = oi[s]
            r = o - xi[s] if o > 0.0 else xi[s]
            total[s] += weight * r * r
            oi[s] = 2.0 * weight * r if o > 0.0 else 0.0
    for s in range(count):
        loss += total[s]
    _dropped_products(dh, out, W, mask, start, count)  # dh = D W g
    for i in range(n):  # g and x sample by sample (rows padded with zeros), for the accumulation
        for s in range(count):
            gS[s, i] = out[i, s]
            xS[s, i] = xT[i, s]
    for s in range(count):  # dL/db = g, dL/dW = h g^T + dh x^T, one sample at a time
        gs, xs = gS[s], xS[s]
        for i in range(n):
            block_b[i] += gs[i]
        for j in range(m):
            hj, dj = h[j, s], dh[j, s]
            row = block_W[j]
            for i in range(len(row)):
                row[i] += gs[i] * hj
                row[i] += dj * xs[i]
    return loss


class _Scratch(NamedTuple):
    xT: np.ndarray
    h: np.ndarray
    out: np.ndarray
    dh: np.ndarray
    total: np.ndarray
    gS: np.ndarray
    xS: np.ndarray


@nb.njit(cache=True, parallel=True)
def _loss_and_grad(W, b, x, mask, importance, chunk=CHUNK):
    """(mean over samples of sum_i I_i (x_i - x'_i)^2, its gradient in W (m, n), in b (n,)).

    The samples are split into _BLOCKS blocks, in parallel, each accumulating in its own arrays (not in
    shared ones that every thread writes every sample), then summed in block order; within a block,
    _chunk takes `chunk` samples at a time. The result is bit for bit that of a loop over the block's
    samples that, per sample, computes h = D W x, the outputs and dh = D W g with each sum in feature
    (or unit) order and adds the sample's loss and gradient to the block's, the blocks then added in
    order: it depends neither on the number of threads nor on `chunk`."""
    m, n = W.shape
    N = x.shape[0]
    WT = np.ascontiguousarray(W.T)
    padded = (n + 7) // 8 * 8  # rows of whole vectors; the padding stays 0
    losses = np.zeros(_BLOCKS)
    grad_W = np.zeros((_BLOCKS, m, n))
    grad_b = np.zeros((_BLOCKS, n))
    for block in nb.prange(_BLOCKS):
        scratch = _Scratch(
            np.empty((n, chunk)),
            np.empty((m, chunk)),
            np.empty((n, chunk)),
            np.empty((m, chunk)),
            np.empty(chunk),
            np.zeros((chunk, padded)),
            np.zeros((chunk, padded)),
        )
        block_W = np.zeros((m, padded))
        block_b = np.zeros(n)
        loss = 0.0
        start, stop = block * N // _BLOCKS, (block + 1) * N // _BLOCKS
        while start < stop:
            count = min(chunk, stop - start)
            loss = _chunk(W, WT, b, x, mask, importance, start, count, scratch, block_W, block_b, loss)
            start += count
        losses[block] = loss
        grad_W[block] = block_W[:, :n]
        grad_b[block] = block_b
    # the blocks in order, in plain loops: parallel=True would make an array's .sum() a reduction split
    # over the threads, whose order (and last bits) changes with their number
    loss, total_W, total_b = 0.0, np.zeros((m, n)), np.zeros(n)
    for block in range(_BLOCKS):
        loss += losses[block]
        for j in range(m):
            for i in range(n):
                total_W[j, i] += grad_W[block, j, i]
        for i in range(n):
            total_b[i] += grad_b[block, i]
    return loss / N, total_W / N, total_b / N


@nb.njit(cache=True, inline="always")
def _single_active_terms(b, c):
    """For u ~ U(0, 1): (H, G, dG/db, dG/dc) of H = E ReLU(b + c u), G = E u ReLU(b + c u); then
    F = E ReLU(b + c u)^2 has dF/db = 2 H, dF/dc = 2 G, and F itself is returned last. Over the interval
    [lo, hi] where b + c u > 0 the ReLU is linear from y_lo to y_hi, both >= 0: every term below is a
    product of nonnegative numbers (no cancellation). A form of scale below ZERO_SCALE counts as 0, its
    derivatives those from b < 0, as in the exact loss (theory.cube): the loss has a kink at b = c = 0."""
    if max(abs(b), abs(c)) < ZERO_SCALE:
        return 0.0, 0.0, 0.0, 0.0, 0.0
    if c > 0.0:
        lo, hi = max(0.0, -b / c), 1.0
    elif c < 0.0:
        lo, hi = 0.0, min(1.0, -b / c)
    elif b > 0.0:
        lo, hi = 0.0, 1.0
    else:
        return 0.0, 0.0, 0.0, 0.0, 0.0
    if not lo < hi:
        return 0.0, 0.0, 0.0, 0.0, 0.0
    span = hi - lo
    y_lo, y_hi = max(b + c * lo, 0.0), max(b + c * hi, 0.0)
    H = span * (y_lo + y_hi) / 2.0
    G = span * (lo * (2.0 * y_lo + y_hi) + hi * (y_lo + 2.0 * y_hi)) / 6.0
    dG_db = span * (lo + hi) / 2.0
    dG_dc = span * (hi * hi + hi * lo + lo * lo) / 3.0
    F = span * (y_lo * y_lo + y_lo * y_hi + y_hi * y_hi) / 3.0
    return H, G, dG_db, dG_dc, F


@nb.njit(cache=True)
def _single_active(W, b, importance, single, scales, weights):
    """L_1 of the module docstring and its gradient in W (m, n), in b (n,): single[a] the chance that
    feature a alone is active, scales (K, m) each dropout mask's unit scales (0 or 1 / (1 - p)), weights
    (K,) its probability."""
    m, n = W.shape
    loss = 0.0
    grad_W = np.zeros((m, n))
    grad_b = np.zeros(n)
    M = np.empty((n, n))
    dM = np.empty((n, n))
    for k in range(scales.shape[0]):  # the masks of nonzero probability (_mask_scales)
        s = scales[k]
        for i in range(n):  # M = W^T D W
            for a in range(n):
                acc = 0.0
                for j in range(m):
                    acc += W[j, i] * s[j] * W[j, a]
                M[i, a] = acc
        for a in range(n):
            for i in range(n):
                weight = weights[k] * single[a] * importance[i]
                if weight == 0.0:
                    dM[i, a] = 0.0
                    continue
                H, G, dG_db, dG_dc, F = _single_active_terms(b[i], M[i, a])
                if i == a:
                    loss += weight * (1.0 / 3.0 - 2.0 * G + F)
                    grad_b[i] += weight * (2.0 * H - 2.0 * dG_db)
                    dM[i, a] = weight * (2.0 * G - 2.0 * dG_dc)
                else:
                    loss += weight * F
                    grad_b[i] += weight * 2.0 * H
                    dM[i, a] = weight * 2.0 * G
        for j in range(m):  # dL/dW_jq = s_j sum_i W_ji (dM_iq + dM_qi)
            if s[j] == 0.0:
                continue
            for q in range(n):
                acc = 0.0
                for i in range(n):
                    acc += W[j, i] * (dM[i, q] + dM[q, i])
                grad_W[j, q] += s[j] * acc
    return loss, grad_W, grad_b


def _mask_scales(setup: Setup) -> tuple[np.ndarray, np.ndarray]:
    """Every dropout mask of the setup's groups with nonzero probability: its units' scales (K, m), 0 for
    a dropped unit and 1 / (1 - p) for a kept one, and its probability (K,)."""
    G, p = setup.n_groups, setup.p
    kept = (np.arange(2**G)[:, None] >> np.arange(G)) & 1
    weights = (1.0 - p) ** kept.sum(1) * p ** (G - kept.sum(1))
    kept, weights = kept[weights > 0], weights[weights > 0]
    return np.ascontiguousarray(kept[:, setup.unit_groups] / (1.0 - p)), weights


def _at_least(density: np.ndarray, count: int) -> np.ndarray:
    """T (n + 1, count + 1): T[i, r] the chance that at least r of features i, ..., n - 1 are active."""
    n = len(density)
    T = np.zeros((n + 1, count + 1))
    T[:, 0] = 1.0
    for i in range(n - 1, -1, -1):
        T[i, 1:] = density[i] * T[i + 1, :-1] + (1.0 - density[i]) * T[i + 1, 1:]
    return T


def _draw_several(density: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """n_samples inputs drawn given that at least two features are active (exactly, feature by feature:
    with r more needed, feature i is active with chance d_i T[i+1, r-1] / T[i, r]). Per feature, the
    n_samples uniforms that decide which samples have it active, then its n_samples values."""
    T = _at_least(density, 2)
    need = np.full(n_samples, 2)
    x = np.zeros((n_samples, len(density)))
    for i in range(len(density)):
        decide = rng.random(n_samples)
        _feature_of_several(x, i, need, decide, rng.random(n_samples), density[i], T)
    return x


@nb.njit(cache=True)
def _feature_of_several(x, i, need, decide, values, density, T):
    """Feature i of _draw_several: active where decide < its chance given what each sample still needs,
    then x[:, i] its value there (0 elsewhere) and need one less."""
    for s in range(len(need)):
        r = need[s]
        chance = density * T[i + 1, r - 1] / T[i, r] if r > 0 else density
        if decide[s] < chance:
            x[s, i] = values[s]
            need[s] = max(r - 1, 0)


@dataclass(frozen=True)
class SampledLoss:
    """L_N of the module docstring for one setup: the chances of no active feature (empty), of each
    feature alone (single, (n,)) and of two or more (several); the masks of L_1 (scales, weights); N
    samples given two or more active features (x, (N, n)) and their masks (mask, (N, m))."""

    setup: Setup
    x: np.ndarray
    mask: np.ndarray
    empty: float
    single: np.ndarray
    several: float
    scales: np.ndarray
    weights: np.ndarray

    @classmethod
    def draw(cls, setup: Setup, n_samples: int = SEARCH_SAMPLES, seed: int = 0) -> SampledLoss:
        """n_samples inputs with two or more active features (none where fewer than two features can be
        active: L_N is then exact)."""
        if not isinstance(setup, Setup):
            raise InputError(f"SampledLoss needs a theory.Setup, got {type(setup).__name__}")
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise InputError(f"n_samples = {n_samples!r} is not allowed; it must be an integer >= 1")
        density = setup.density
        if not np.any(density > 0):
            raise InputError("every feature has sparsity 1: no sample has an active feature")
        empty = float(np.prod(1.0 - density))
        single = np.array([d * np.prod(np.delete(1.0 - density, i)) for i, d in enumerate(density)])
        several = float(_at_least(density, 2)[0, 2])
        rng = np.random.default_rng(seed)
        if several <= 0.0:
            n_samples = 0
        x = _draw_several(density, n_samples, rng)
        keep = 1.0 - setup.p
        mask = (rng.random((n_samples, setup.n_groups))[:, setup.unit_groups] < keep) / keep
        scales, weights = _mask_scales(setup)
        return cls(setup, x, mask, empty, single, several, scales, weights)

    def loss_and_grad(self, W, b) -> tuple[float, np.ndarray, np.ndarray]:
        """L_N and its gradient in W (m, n) and b (n,)."""
        W, b = self.setup.check_parameters(W, b)
        W = np.ascontiguousarray(W)
        importance = np.ascontiguousarray(self.setup.importance_array)
        value, grad_W, grad_b = _single_active(W, b, importance, self.single, self.scales, self.weights)
        if len(self.x):
            sampled, sampled_W, sampled_b = _loss_and_grad(W, b, self.x, self.mask, importance)
            value += self.several * sampled
            grad_W += self.several * sampled_W
            grad_b += self.several * sampled_b
        positive = np.maximum(b, 0.0)
        return (
            self.empty * float(importance @ positive**2) + value,
            grad_W,
            self.empty * 2.0 * importance * positive + grad_b,
        )


@dataclass(frozen=True)
class SampledMinimum:
    """The end point of minimize_sampled: its (W, b), L_N there on the polishing sample (biased low), its
    Monte Carlo re-score on fresh samples and that estimate's standard error; every start's L_N on the
    search sample at its end point (in the order of the starts), the two sample sizes, whether the
    best end point was an end point rearranged (rearranged()) and minimised again, and L_N on the
    selection sample (SELECT_SAMPLES, drawn apart) by which the end points were ranked (the starts' in
    their order, then the rearranged one's where there is one; empty where there was one end point)."""

    W: np.ndarray
    b: np.ndarray
    sampled: float
    monte_carlo: float
    monte_carlo_stderr: float
    start_losses: np.ndarray
    search_samples: int
    polish_samples: int
    rearranged: bool = False
    selection_losses: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _minimize(objective: SampledLoss, W: np.ndarray, b: np.ndarray, options: dict):
    m, n = W.shape

    def f(theta):
        value, grad_W, grad_b = objective.loss_and_grad(theta[: m * n].reshape(m, n), theta[m * n :])
        return value, np.concatenate([grad_W.ravel(), grad_b])

    with one_blas_thread():
        end = minimize(f, np.concatenate([W.ravel(), b]), jac=True, method="L-BFGS-B", options=options)
    return end.x[: m * n].reshape(m, n), end.x[m * n :], float(end.fun)


def rearranged(setup: Setup, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """W (m, n), b (n,) with the features permuted so that, among features of one density, the longer a
    column the more important its feature (features of equal importance keep their columns' order);
    None where that is the identity.

    Features of one density are exchangeable but for their importance: the expected loss of a permuted
    model is sum_i I_i l_sigma(i), its per-feature losses taken in the new order, least (the
    rearrangement inequality) when the features reconstructed best are the most important. The length
    of a column stands in for a low per-feature loss: what it corrects is a represented feature against
    an ignored one, the choice a search from random starts makes at random."""
    density, importance = setup.density, setup.importance_array
    norms = np.linalg.norm(W, axis=0)
    perm = np.arange(setup.n_features)
    for value in np.unique(density):
        slots = np.flatnonzero(density == value)
        by_importance = slots[np.argsort(-importance[slots], kind="stable")]
        by_norm = slots[np.argsort(-norms[slots], kind="stable")]
        ties = np.flatnonzero(np.diff(importance[by_importance]) != 0) + 1
        for rank in np.split(np.arange(len(slots)), ties):  # runs of equal importance
            perm[by_importance[rank]] = np.sort(by_norm[rank])
    if np.array_equal(perm, np.arange(setup.n_features)):
        return None
    return W[:, perm], b[perm]


@dataclass(frozen=True)
class StructureMinimum:
    """The end point of minimize_structure: its theta, (W, b), L_N there on the polishing sample (biased
    low), its Monte Carlo re-score and standard error, and every start's L_N on the search sample at its
    end point (in the order of the starts)."""

    theta: np.ndarray
    W: np.ndarray
    b: np.ndarray
    sampled: float
    monte_carlo: float
    monte_carlo_stderr: float
    start_losses: np.ndarray


def _minimize_structure(structure, objective: SampledLoss, theta: np.ndarray, options: dict):
    def f(x):
        value, grad_W, grad_b = objective.loss_and_grad(*structure.matrices(x))
        return value, structure.pull_back(x, grad_W, grad_b)

    with one_blas_thread():
        end = minimize(f, theta, jac=True, method="L-BFGS-B", bounds=structure.bounds(), options=options)
    return end.x, float(end.fun)


def minimize_structure(
    structure,
    setup: Setup,
    thetas,
    seed: int = 0,
    rescore: int = RESCORE_SAMPLES,
    options: dict | None = None,
) -> StructureMinimum:
    """A structure of few parameters theta (its `matrices(theta)` -> (W, b), `pull_back(theta, grad_W,
    grad_b)` -> the gradient in theta, `bounds()`) minimised like minimize_sampled minimises W and b:
    L-BFGS-B on L_N (N = SEARCH_SAMPLES) from every theta in thetas, the best end point
    minimised again on twice N samples of its own, then re-scored by theory.montecarlo with `rescore`
    samples. The three samples are drawn with seed, seed + 1, seed + 2."""
    if not len(thetas):
        raise InputError("no start: give at least one theta")
    options = OPTIONS if options is None else options
    n_samples = SEARCH_SAMPLES
    search = SampledLoss.draw(setup, n_samples, seed)
    ends = [_minimize_structure(structure, search, np.asarray(theta, float), options) for theta in thetas]
    losses = np.array([loss for _, loss in ends])
    theta, _ = ends[int(np.argmin(losses))]
    polish = SampledLoss.draw(setup, 2 * n_samples, seed + 1)
    theta, polished = _minimize_structure(structure, polish, theta, options)
    W, b = structure.matrices(theta)
    score = monte_carlo_loss(setup, W, b, n_samples=rescore, seed=seed + RESCORE_SEED)
    return StructureMinimum(theta, W, b, polished, score.mean, score.stderr, losses)


def minimize_sampled(
    setup: Setup,
    starts: tuple[np.ndarray, np.ndarray],
    search_samples: int | None = None,
    polish_samples: int | None = None,
    seed: int = 0,
    rescore: int = RESCORE_SAMPLES,
    options: dict | None = None,
    incumbent: bool = False,
) -> SampledMinimum | None:
    """L-BFGS-B on L_N from every start (W (S, m, n), b (S, n)) with N = search_samples (default:
    SEARCH_SAMPLES); the end points ranked by L_N on SELECT_SAMPLES samples of their own
    (none has fitted them); the best minimised again with N = polish_samples (default: twice
    search_samples; a sample of its own), then re-scored by theory.montecarlo with `rescore` samples.
    The four samples are drawn with seed, seed + 1, seed + RESCORE_SEED (2) and seed + SELECT_SEED (3).

    Every end point is also rearranged (rearranged(): the longest columns to the most important
    features) and scored on the search sample; where the best of those is below the best end point, it
    is minimised again and ranked with the end points.

    incumbent: the first start is an end point found before; when its end point ranks first, None (no
    polish, no re-score)."""
    W0, b0 = setup.check_parameters(*starts)
    if W0.ndim != 3 or b0.shape != (len(W0), setup.n_features) or not len(W0):
        raise InputError(f"starts W {W0.shape} and b {b0.shape} must be (S, m, n) and (S, n) with S >= 1")
    options = OPTIONS if options is None else options
    search_samples = SEARCH_SAMPLES if search_samples is None else search_samples
    polish_samples = 2 * search_samples if polish_samples is None else polish_samples
    search = SampledLoss.draw(setup, search_samples, seed)
    ends = [_minimize(search, W, b, options) for W, b in zip(W0, b0, strict=True)]
    losses = np.array([end[2] for end in ends])
    value = losses.min()
    moved = [r for r in (rearranged(setup, W_end, b_end) for W_end, b_end, _ in ends) if r is not None]
    if moved:
        scores = [search.loss_and_grad(*r)[0] for r in moved]
        if min(scores) < value:
            ends.append(_minimize(search, *moved[int(np.argmin(scores))], options))
    selection = np.zeros(0)
    best = 0
    if len(ends) > 1:
        select = SampledLoss.draw(setup, SELECT_SAMPLES, seed + SELECT_SEED)
        selection = np.array([select.loss_and_grad(W, b)[0] for W, b, _ in ends])
        best = int(np.argmin(selection))
    if incumbent and best == 0:
        return None
    W, b, _ = ends[best]
    W, b, polished = _minimize(SampledLoss.draw(setup, polish_samples, seed + 1), W, b, options)
    score = monte_carlo_loss(setup, W, b, n_samples=rescore, seed=seed + RESCORE_SEED)
    return SampledMinimum(
        W=W,
        b=b,
        sampled=polished,
        monte_carlo=score.mean,
        monte_carlo_stderr=score.stderr,
        start_losses=losses,
        search_samples=search_samples,
        polish_samples=polish_samples,
        rearranged=best == len(W0),
        selection_losses=selection,
    )
