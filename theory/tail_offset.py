"""A structure for the optimum of many features in few dimensions under dropout: a free head, and the
features it leaves out along one shared direction, working as a bias of the hidden layer.

    W = [H | v t^T],   b free,

H (m, head) the columns of the `head` most important features, free; the
other n - head features' columns t_j v, along one direction v (unit) with
norms t_j >= 0 (one norm for all with `equal_tail`). At their mean inputs
the tail adds the offset c = v sum_j t_j density_j / 2 to the hidden layer,
which the dropout mask multiplies with the signal (theory.metrics.hidden_offset
describes it; theory.lone_feature prices it for one feature). The loss no
longer splits into blocks (the tail touches every unit and every feature),
and the densities where the structure matters are far past the truncated
exact loss's reach, so it is scored like the search over all of W and b
(theory.sampled): L-BFGS-B on the loss averaged over a fixed sample, from
every start, the best end point minimised again on a sample of its own and
re-scored by theory.montecarlo on fresh samples. Its parameters,
m head + m + (n - head) + n (or m head + m + 1 + n), against the search's
m n + n: 65 against 120 at 20 in 5 with a head of 5, and 51 with one tail norm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from theory.errors import InputError
from theory.montecarlo import monte_carlo_loss
from theory.optimize import one_blas_thread
from theory.sampled import OPTIONS, RESCORE_SAMPLES, SampledLoss, search_samples_for
from theory.setup import Setup


@dataclass(frozen=True)
class TailOffsetMinimum:
    """The structure's best end point: its W (m, n) and b (n,), the head and whether the tail has one
    norm, L_N on the polishing sample (biased low), its Monte Carlo re-score and standard error, and
    every start's L_N on the search sample at its end point."""

    W: np.ndarray
    b: np.ndarray
    head: int
    equal_tail: bool
    sampled: float
    monte_carlo: float
    monte_carlo_stderr: float
    start_losses: np.ndarray


class TailOffset:
    """The map theta -> (W, b) of the structure for one (n, m, head, equal_tail), with its vector-Jacobian
    product. theta = (H.ravel(), v, t, b); t has n - head entries, or one with equal_tail."""

    def __init__(self, n_features: int, n_hidden: int, head: int, equal_tail: bool = False):
        if isinstance(head, bool) or not isinstance(head, (int, np.integer)) or not 0 <= head < n_features:
            raise InputError(f"head = {head!r} is not allowed; give an integer in [0, {n_features - 1}]")
        self.n, self.m, self.head, self.equal_tail = n_features, n_hidden, int(head), equal_tail
        self.tail = 1 if equal_tail else n_features - self.head
        self.size = n_hidden * self.head + n_hidden + self.tail + n_features

    def unpack(self, theta: np.ndarray):
        m, k = self.m, self.head
        H = theta[: m * k].reshape(m, k)
        v = theta[m * k : m * k + m]
        t = theta[m * k + m : m * k + m + self.tail]
        return H, v, t, theta[m * k + m + self.tail :]

    def matrices(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(W (m, n), b (n,)) at theta, v taken as given (its norm multiplies the tail)."""
        H, v, t, b = self.unpack(theta)
        norms = np.broadcast_to(t, (self.n - self.head,))
        return np.concatenate([H, np.outer(v, norms)], axis=1), b.copy()

    def pull_back(self, theta: np.ndarray, grad_W: np.ndarray, grad_b: np.ndarray) -> np.ndarray:
        """The gradient in theta of a function whose gradient in (W, b) at matrices(theta) is given."""
        _, v, t, _ = self.unpack(theta)
        tail = grad_W[:, self.head :]
        norms = np.broadcast_to(t, (self.n - self.head,))
        grad_t = tail.T @ v
        if self.equal_tail:
            grad_t = np.array([grad_t.sum()])
        return np.concatenate([grad_W[:, : self.head].ravel(), tail @ norms, grad_t, grad_b])

    def theta_of(self, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The structure nearest a model (W, b) in its tail: H its head columns, v the tail columns'
        leading left singular vector (sign: along their sum), t their projections on v (their mean with
        equal_tail, clipped at 0)."""
        W, b = np.asarray(W, dtype=float), np.asarray(b, dtype=float)
        tail = W[:, self.head :]
        v = np.linalg.svd(tail, full_matrices=False)[0][:, 0]
        if v @ tail.sum(1) < 0:
            v = -v
        t = np.maximum(v @ tail, 0.0)
        if self.equal_tail:
            t = np.array([t.mean()])
        return np.concatenate([W[:, : self.head].ravel(), v, t, b])

    def bounds(self) -> list[tuple]:
        m, k = self.m, self.head
        return [(None, None)] * (m * k + m) + [(0.0, None)] * self.tail + [(None, None)] * self.n


def _minimize(structure: TailOffset, objective: SampledLoss, theta: np.ndarray, options: dict):
    def f(x):
        value, grad_W, grad_b = objective.loss_and_grad(*structure.matrices(x))
        return value, structure.pull_back(x, grad_W, grad_b)

    with one_blas_thread():
        end = minimize(f, theta, jac=True, method="L-BFGS-B", bounds=structure.bounds(), options=options)
    return end.x, float(end.fun)


def minimize_tail_offset(
    setup: Setup,
    head: int,
    starts: list[tuple[np.ndarray, np.ndarray]] = (),
    random_starts: int = 4,
    equal_tail: bool = False,
    seed: int = 0,
    rescore: int = RESCORE_SAMPLES,
    options: dict | None = None,
) -> TailOffsetMinimum:
    """The structure's least loss at setup (its features in decreasing importance, so that the head is
    the most important `head`): L-BFGS-B on L_N (N = theory.sampled.search_samples_for(setup)) from the
    nearest structure to each model in `starts` ((W, b) pairs: theory.sampled's or anyone's) and from
    `random_starts` random ones (H and v normal with scale 0.3, t = 0.1, b = 0), the best end point
    minimised again on twice N samples of its own and re-scored by Monte Carlo. Samples: seed, seed + 1,
    seed + 2; random starts: seed + 3."""
    if not isinstance(setup, Setup):
        raise InputError(f"minimize_tail_offset needs a theory.Setup, got {type(setup).__name__}")
    importance = setup.importance_array
    if np.any(np.diff(importance) > 0):
        raise InputError(
            "the head is the most important features first: give importances in decreasing order"
        )
    structure = TailOffset(setup.n_features, setup.n_hidden, head, equal_tail)
    thetas = [structure.theta_of(*setup.check_parameters(W, b)) for W, b in starts]
    rng = np.random.default_rng(seed + 3)
    for _ in range(random_starts):
        H = rng.normal(0.0, 0.3, (setup.n_hidden, structure.head))
        v = rng.normal(0.0, 0.3, setup.n_hidden)
        thetas.append(
            np.concatenate([H.ravel(), v, np.full(structure.tail, 0.1), np.zeros(setup.n_features)])
        )
    if not thetas:
        raise InputError("no start: give starts or random_starts >= 1")
    options = OPTIONS if options is None else options
    n_samples = search_samples_for(setup)
    search = SampledLoss.draw(setup, n_samples, seed)
    ends = [_minimize(structure, search, theta, options) for theta in thetas]
    losses = np.array([loss for _, loss in ends])
    theta, _ = ends[int(np.argmin(losses))]
    theta, polished = _minimize(structure, SampledLoss.draw(setup, 2 * n_samples, seed + 1), theta, options)
    W, b = structure.matrices(theta)
    score = monte_carlo_loss(setup, W, b, n_samples=rescore, seed=seed + 2)
    return TailOffsetMinimum(W, b, structure.head, equal_tail, polished, score.mean, score.stderr, losses)
