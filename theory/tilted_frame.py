"""The head of theory.tail_offset's structure, named: m features at one angle about the tail's direction.

Where features are dense and p > 0, the least loss of 20 features in 5 dims
found by the search over all of W and b (importance 0.7**i, 0.9**i) is
theory.tail_offset's structure with a head of m = n_hidden features, and the
head is symmetric about the tail: each head column makes the same angle with
the tail direction v, on the far side (cosine -alpha), and their components
orthogonal to v point at the m vertices of a regular simplex in the
(m - 1)-dimensional complement of v:

    u_i = sqrt(1 - alpha^2) e_i - alpha v,   e_i . v = 0,   e_i . e_j = -1 / (m - 1)  (i != j),

so any two head columns have cosine alpha^2 - (1 - alpha^2) / (m - 1)
(`head_cosine`): 0 at alpha^2 = 1 / m, an orthonormal frame with v along
minus its diagonal; slightly negative at the tilts the fits find. Frame, axis
and tail are turned as one by a rotation R = expm(A), A skew-symmetric:

    W = R [U_0(alpha) diag(norms) | e_m t^T],   b free,

U_0 the u_i with v = e_m (the last unit), t >= 0 the tail's norms, every bias
free. Parameters: alpha, the m (m - 1) / 2 entries of A above the diagonal,
the m head norms, the n - m tail norms and the n biases: 51 at 20 in 5,
against 65 for a free head with a norm per tail feature and 120 for W and b.

It is fitted like theory.tail_offset's structure (theory.sampled's
minimize_structure: L-BFGS-B on the sampled loss, the best end point polished
on a sample of its own, re-scored by Monte Carlo); the gradient in A is one
Frechet derivative of the matrix exponential (the adjoint of expm's Frechet
derivative at A is its Frechet derivative at A^T).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import expm, expm_frechet, logm

from theory.errors import InputError
from theory.sampled import RESCORE_SAMPLES, minimize_structure
from theory.setup import Setup

#: The tilt's bounds in a fit (the cosine of a head column with the tail's direction is -alpha).
MAX_TILT = 0.99
#: Random starts' turns are drawn uniformly; their tilt is 1 / sqrt(m) (the orthonormal frame), head
#: norms HEAD_START, tail norms TAIL_START, biases the features' mean inputs.
HEAD_START, TAIL_START = 1.0, 0.1


def simplex_vertices(m: int) -> np.ndarray:
    """The m unit vertices of a regular simplex centred at 0 in m - 1 dimensions, as columns (m - 1, m)."""
    centred = np.eye(m) - 1.0 / m
    basis = np.linalg.svd(centred)[0][:, : m - 1]  # an orthonormal basis of the sum-zero plane
    vertices = basis.T @ centred
    return vertices / np.linalg.norm(vertices, axis=0)


def head_cosine(alpha, m: int):
    """The cosine between any two head columns at tilt alpha with m of them."""
    alpha = np.asarray(alpha, dtype=float)
    return alpha**2 - (1 - alpha**2) / (m - 1)


@dataclass(frozen=True)
class TiltedFrameMinimum:
    """The structure's best end point: its W (m, n) and b (n,), the head's features, its tilt alpha, L_N
    on the polishing sample (biased low), its Monte Carlo re-score and standard error, every start's L_N
    on the search sample at its end point, and the index of the start the best end point came from."""

    W: np.ndarray
    b: np.ndarray
    head: np.ndarray
    tilt: float
    sampled: float
    monte_carlo: float
    monte_carlo_stderr: float
    start_losses: np.ndarray

    @property
    def best_start(self) -> int:
        return int(np.argmin(self.start_losses))


class TiltedFrame:
    """The map theta -> (W, b) of the structure (module docstring) for n features in m dims with the head
    `head` (m distinct feature indices), with its vector-Jacobian product. theta = (alpha, A's entries
    above the diagonal row by row, the head's norms in the order of `head`, the tail's norms in ascending
    feature order, b)."""

    def __init__(self, n_features: int, n_hidden: int, head):
        features = np.asarray(head)
        if (
            n_hidden < 2
            or features.ndim != 1
            or features.dtype.kind not in "iu"
            or len(features) != n_hidden
            or len(np.unique(features)) != n_hidden
            or n_hidden >= n_features
            or not (0 <= features.min() and features.max() < n_features)
        ):
            raise InputError(
                f"head = {head!r} with {n_features} features in {n_hidden} dims is not allowed; the tilted "
                f"frame needs n_hidden >= 2 distinct feature indices in [0, {n_features - 1}], as many as "
                "n_hidden, and more features than that"
            )
        self.n, self.m = n_features, n_hidden
        self.head_features = features.astype(np.int64)
        self.tail_features = np.setdiff1d(np.arange(n_features), self.head_features)
        self.vertices = simplex_vertices(n_hidden)
        self.upper = np.triu_indices(n_hidden, 1)
        self.turns = len(self.upper[0])
        self.size = 1 + self.turns + n_hidden + (n_features - n_hidden) + n_features

    def unpack(self, theta: np.ndarray):
        """(alpha, A, head norms, tail norms, b)."""
        m, r = self.m, self.turns
        A = np.zeros((m, m))
        A[self.upper] = theta[1 : 1 + r]
        A -= A.T
        norms = theta[1 + r : 1 + r + m]
        tail = theta[1 + r + m : 1 + r + self.n]
        return float(theta[0]), A, norms, tail, theta[1 + r + self.n :]

    def _frame(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """U_0(alpha) (m, m), the head's unit columns before the turn, and its derivative in alpha."""
        side = np.sqrt(1.0 - alpha**2)
        U = np.vstack([side * self.vertices, np.full((1, self.m), -alpha)])
        dU = np.vstack([-alpha / side * self.vertices, np.full((1, self.m), -1.0)])
        return U, dU

    def _unturned(self, theta: np.ndarray) -> np.ndarray:
        alpha, _, norms, tail, _ = self.unpack(theta)
        X = np.zeros((self.m, self.n))
        X[:, self.head_features] = self._frame(alpha)[0] * norms
        X[-1, self.tail_features] = tail
        return X

    def matrices(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(W (m, n), b (n,)) at theta."""
        theta = np.asarray(theta, dtype=float)
        _, A, _, _, b = self.unpack(theta)
        return expm(A) @ self._unturned(theta), b.copy()

    def pull_back(self, theta: np.ndarray, grad_W: np.ndarray, grad_b: np.ndarray) -> np.ndarray:
        """The gradient in theta of a function whose gradient in (W, b) at matrices(theta) is given."""
        theta = np.asarray(theta, dtype=float)
        alpha, A, norms, _, _ = self.unpack(theta)
        X = self._unturned(theta)
        R = expm(A)
        inner = R.T @ grad_W  # the gradient in X
        head = inner[:, self.head_features]
        U, dU = self._frame(alpha)
        # d/dA <grad_W, expm(A) X> = L_expm(A^T, grad_W X^T); A's entry (i, j) above the diagonal enters at
        # (i, j) with + and at (j, i) with -
        turn = expm_frechet(A.T, grad_W @ X.T, compute_expm=False)
        return np.concatenate(
            [
                [float(np.sum(head * dU * norms))],
                turn[self.upper] - turn.T[self.upper],
                np.sum(head * U, axis=0),
                inner[-1, self.tail_features],
                grad_b,
            ]
        )

    def theta_of(self, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The structure nearest a model (W, b), or its mirror image in the first unit (equal loss: a unit's
        sign does not change W^T D W): v the tail columns' leading left singular vector (sign: along their
        sum), alpha minus the head columns' mean cosine with v, R the rotation (Procrustes) taking the
        unturned frame and e_m nearest to the head's unit columns and v, the norms the head columns' norms
        and the tail columns' projections on R e_m (clipped at 0)."""
        W, b = np.asarray(W, dtype=float), np.asarray(b, dtype=float)
        tail = W[:, self.tail_features]
        v = np.linalg.svd(tail, full_matrices=False)[0][:, 0]
        if v @ tail.sum(1) < 0:
            v = -v
        H = W[:, self.head_features]
        norms = np.linalg.norm(H, axis=0)
        U = H / np.where(norms > 0, norms, 1.0)
        alpha = float(np.clip(-np.mean(v @ U), -MAX_TILT, MAX_TILT))
        source = np.hstack([self._frame(alpha)[0], np.eye(self.m)[:, -1:]])
        target = np.hstack([U, v[:, None]])
        left, _, right = np.linalg.svd(target @ source.T)
        if np.linalg.det(left @ right) < 0:  # no rotation: fit the mirror image, whose rotation exists
            mirrored = W.copy()
            mirrored[0] *= -1
            return self.theta_of(mirrored, b)
        R = left @ right
        A = np.real(logm(R))
        return np.concatenate([[alpha], A[self.upper], norms, np.maximum(R[:, -1] @ tail, 0.0), b])

    def random_theta(self, setup: Setup, rng: np.random.Generator) -> np.ndarray:
        """A random start: turn entries uniform on [-pi, pi], tilt 1 / sqrt(m), norms HEAD_START and
        TAIL_START, every bias its feature's mean input."""
        return np.concatenate(
            [
                [1.0 / np.sqrt(self.m)],
                rng.uniform(-np.pi, np.pi, self.turns),
                np.full(self.m, HEAD_START),
                np.full(self.n - self.m, TAIL_START),
                setup.density / 2,
            ]
        )

    def bounds(self) -> list[tuple]:
        free = (None, None)
        return (
            [(-MAX_TILT, MAX_TILT)]
            + [free] * (self.turns + self.m)
            + [(0.0, None)] * (self.n - self.m)
            + [free] * self.n
        )


def minimize_tilted_frame(
    setup: Setup,
    head,
    starts: list[tuple[np.ndarray, np.ndarray]] = (),
    random_starts: int = 4,
    seed: int = 0,
    rescore: int = RESCORE_SAMPLES,
    options: dict | None = None,
) -> TiltedFrameMinimum:
    """The structure's least loss at setup with the head's feature indices `head` (n_hidden of them):
    from the nearest structure to each model in `starts` ((W, b) pairs) and from `random_starts` random
    ones (TiltedFrame.random_theta), by theory.sampled.minimize_structure. Samples: seed, seed + 1,
    seed + 2; random starts: seed + 3."""
    if not isinstance(setup, Setup):
        raise InputError(f"minimize_tilted_frame needs a theory.Setup, got {type(setup).__name__}")
    structure = TiltedFrame(setup.n_features, setup.n_hidden, head)
    thetas = [structure.theta_of(*setup.check_parameters(W, b)) for W, b in starts]
    rng = np.random.default_rng(seed + 3)
    thetas += [structure.random_theta(setup, rng) for _ in range(random_starts)]
    if not thetas:
        raise InputError("no start: give starts or random_starts >= 1")
    fit = minimize_structure(structure, setup, thetas, seed, rescore, options)
    return TiltedFrameMinimum(
        fit.W,
        fit.b,
        structure.head_features,
        float(fit.theta[0]),
        fit.sampled,
        fit.monte_carlo,
        fit.monte_carlo_stderr,
        fit.start_losses,
    )
