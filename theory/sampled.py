"""The loss averaged over a fixed sample (a sample-average approximation), compiled, and its minimiser.

Where neither the exact loss (theory.loss: at most MAX_EXACT_FEATURES
features) nor its truncation to few active features (theory.direct: low
density only) reaches, the least loss over all of W and b is searched on

    L_N(W, b) = P0 sum_i I_i ReLU(b_i)^2 + (1 - P0) (1/N) sum_s sum_i I_i (x_si - x'_si)^2,

with P0 = prod_i S_i the chance that no feature is active (its term in
closed form) and N fixed samples x_s drawn given that at least one feature is
active, each with one dropout mask drawn with it. L_N is a smooth function of
(W, b) almost everywhere, deterministic for a seed, so L-BFGS-B minimises it
like the exact loss; its minimiser's loss is then re-scored by
theory.montecarlo on fresh samples (independent code and stream), because
L_N at its own minimiser is biased low (it has fitted its sample).

The kernel is a loop per sample, over the active features only (for h = W x)
and the outputs the ReLU passes (for the gradient) where those are few, in
parallel over blocks of samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba as nb
import numpy as np
from scipy.optimize import minimize

from theory.errors import InputError
from theory.montecarlo import monte_carlo_loss
from theory.optimize import one_blas_thread
from theory.setup import Setup

#: Samples of the average (given at least one active feature) for the search from every start: at least
#: SEARCH_SAMPLES with two or more active features (the samples that carry interference), and at most
#: MAX_SEARCH_SAMPLES in all; the polish of the best draws twice as many; the Monte Carlo re-score
#: RESCORE_SAMPLES. L_N at its own minimiser is below the loss there by O(parameters / N): about 1% at
#: 20 in 5 with 2^15 samples, dense or at density 0.05, where with 2^15 in all (a third of them with two
#: active features) the search also ranks its end points wrongly and ends 1% above the trained optimum.
SEARCH_SAMPLES = 2**15
MAX_SEARCH_SAMPLES = 2**17
RESCORE_SAMPLES = 2**21
#: The re-score's samples are drawn with the search's seed plus this (search: seed, polish: seed + 1).
RESCORE_SEED = 2
#: The end points of the starts are ranked by L_N on SELECT_SAMPLES samples of their own (seed +
#: SELECT_SEED; unbiased there, a sample none of them has fitted), not on the search sample: L_N at each
#: end point is below its loss by an amount of its own, as large as the gaps between basins. At 20 in 5,
#: importance 1 - i/20, p = 0.05, density 0.0697, of 32 end points the one least on the search sample
#: (0.06507) is 0.7% above the one least by Monte Carlo (second there); ranked on the selection sample,
#: the phase diagram's optimum there is 0.9% lower than ranked on the search sample.
SELECT_SAMPLES = 2**19
SELECT_SEED = 3
#: L-BFGS-B's stopping rule: the end point is rescored by Monte Carlo to about 1e-3, so converging L_N
#: (itself a sample) past 1e-10 buys nothing; 500 iterations reach 1e-4 of the limit at 20 in 5.
OPTIONS = {"maxiter": 500, "ftol": 1e-10, "gtol": 1e-8}
_BLOCKS = 64


@nb.njit(cache=True, parallel=True)
def _loss_and_grad(W, b, x, mask, importance):
    """(mean over samples of sum_i I_i (x_i - x'_i)^2, its gradient in W (m, n), in b (n,)).

    Per sample, the products with W skip the inactive features and the outputs the ReLU stops where
    those are few (a quarter of n or less), and run over all n otherwise (no branch per feature to
    mispredict); either way each sum adds the same nonzero terms in the same order, so the result does
    not depend on the path taken. Each block of samples accumulates in its own arrays (not in shared
    ones that both threads write every sample)."""
    m, n = W.shape
    N = x.shape[0]
    losses = np.zeros(_BLOCKS)
    grad_W = np.zeros((_BLOCKS, m, n))
    grad_b = np.zeros((_BLOCKS, n))
    for block in nb.prange(_BLOCKS):
        h = np.empty(m)
        out = np.empty(n)
        g = np.empty(n)
        dh = np.empty(m)
        active = np.empty(n, np.int64)
        passing = np.empty(n, np.int64)
        block_W = np.zeros((m, n))
        block_b = np.zeros(n)
        block_loss = 0.0
        for s in range(block * N // _BLOCKS, (block + 1) * N // _BLOCKS):
            xs = x[s]
            k = 0
            for i in range(n):
                active[k] = i
                k += xs[i] != 0.0
            dense = 4 * k > n
            for j in range(m):  # h = D W x
                acc = 0.0
                if dense:
                    for i in range(n):
                        acc += W[j, i] * xs[i]
                else:
                    for a in range(k):
                        acc += W[j, active[a]] * xs[active[a]]
                h[j] = acc * mask[s, j]
            for i in range(n):
                out[i] = b[i]
            for j in range(m):
                hj = h[j]
                for i in range(n):
                    out[i] += W[j, i] * hj
            total = 0.0
            for i in range(n):  # a clipped output leaves x_i as its residual and passes no gradient
                on = out[i] > 0.0
                r = (out[i] - xs[i]) if on else xs[i]
                total += importance[i] * r * r
                g[i] = (2.0 * importance[i] * r) if on else 0.0
            block_loss += total
            c = 0
            for i in range(n):
                passing[c] = i
                c += g[i] != 0.0
            if c == 0:
                continue
            for i in range(n):
                block_b[i] += g[i]
            for j in range(m):  # dL/dW from the outputs, and dh = D W g
                hj = h[j]
                acc = 0.0
                if 4 * c > n:
                    for i in range(n):
                        block_W[j, i] += g[i] * hj
                        acc += W[j, i] * g[i]
                else:
                    for a in range(c):
                        i = passing[a]
                        block_W[j, i] += g[i] * hj
                        acc += W[j, i] * g[i]
                dh[j] = acc * mask[s, j]
            if dense:  # dL/dW through h
                for j in range(m):
                    dj = dh[j]
                    for i in range(n):
                        block_W[j, i] += dj * xs[i]
            else:
                for a in range(k):
                    i = active[a]
                    for j in range(m):
                        block_W[j, i] += dh[j] * xs[i]
        losses[block] = block_loss
        grad_W[block] = block_W
        grad_b[block] = block_b
    return losses.sum() / N, grad_W.sum(0) / N, grad_b.sum(0) / N


@dataclass(frozen=True)
class SampledLoss:
    """L_N of the module docstring for one setup: N samples given an active feature, their masks."""

    setup: Setup
    x: np.ndarray
    mask: np.ndarray
    empty: float

    @classmethod
    def draw(cls, setup: Setup, n_samples: int = SEARCH_SAMPLES, seed: int = 0) -> SampledLoss:
        if not isinstance(setup, Setup):
            raise InputError(f"SampledLoss needs a theory.Setup, got {type(setup).__name__}")
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise InputError(f"n_samples = {n_samples!r} is not allowed; it must be an integer >= 1")
        density = setup.density
        if not np.any(density > 0):
            raise InputError("every feature has sparsity 1: no sample has an active feature")
        rng = np.random.default_rng(seed)
        n, keep = setup.n_features, 1.0 - setup.p
        x = np.empty((0, n))
        while len(x) < n_samples:
            draw = rng.random((n_samples, n)) * (rng.random((n_samples, n)) < density)
            x = np.concatenate([x, draw[draw.any(1)]])
        mask = (rng.random((n_samples, setup.n_groups))[:, setup.unit_groups] < keep) / keep
        return cls(setup=setup, x=x[:n_samples], mask=mask, empty=float(np.prod(1.0 - density)))

    def loss_and_grad(self, W, b) -> tuple[float, np.ndarray, np.ndarray]:
        """L_N and its gradient in W (m, n) and b (n,)."""
        W, b = self.setup.check_parameters(W, b)
        importance = self.setup.importance_array
        value, grad_W, grad_b = _loss_and_grad(
            np.ascontiguousarray(W), b, self.x, self.mask, np.ascontiguousarray(importance)
        )
        positive = np.maximum(b, 0.0)
        full = 1.0 - self.empty
        return (
            self.empty * float(importance @ positive**2) + full * value,
            full * grad_W,
            self.empty * 2.0 * importance * positive + full * grad_b,
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


def search_samples_for(setup: Setup) -> int:
    """N for the search: SEARCH_SAMPLES samples with two or more active features expected among them
    (given one), MAX_SEARCH_SAMPLES at most."""
    density = setup.density
    none = float(np.prod(1.0 - density))
    one = float(sum(d * np.prod(np.delete(1.0 - density, i)) for i, d in enumerate(density)))
    several = 1.0 - one / max(1.0 - none, 1e-300)
    return int(min(MAX_SEARCH_SAMPLES, np.ceil(SEARCH_SAMPLES / max(several, 1e-300))))


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
    L-BFGS-B on L_N (N = search_samples_for(setup)) from every theta in thetas, the best end point
    minimised again on twice N samples of its own, then re-scored by theory.montecarlo with `rescore`
    samples. The three samples are drawn with seed, seed + 1, seed + 2."""
    if not len(thetas):
        raise InputError("no start: give at least one theta")
    options = OPTIONS if options is None else options
    n_samples = search_samples_for(setup)
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
    search_samples_for(setup)); the end points ranked by L_N on SELECT_SAMPLES samples of their own
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
    search_samples = search_samples_for(setup) if search_samples is None else search_samples
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
