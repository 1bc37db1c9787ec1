"""A structure for the optimum of many features in few dimensions under dropout: a free head, and the
features it leaves out along one shared direction, working as a bias of the hidden layer.

    W = [H | v t^T],   b free,

H (m, head) the columns of the head, free: the `head` most important
features, or any features named by their indices; the other n - head
features' columns t_j v, along one direction v (unit) with
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

search_structures fits it, from the search's end point, at every cell where
a phase diagram's search over all of W and b is the optimum, and where the
head has one feature per unit also its symmetric form, theory.tilted_frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from theory import metrics
from theory.diagram import SEARCH_REPRESENTED, flat_cell, grid_of
from theory.errors import InputError
from theory.progress import Progress
from theory.sampled import RESCORE_SAMPLES, minimize_structure
from theory.setup import Setup
from theory.tilted_frame import head_cosine, minimize_tilted_frame

#: The structure's two tails, each name with its equal_tail: a norm each, or one norm for all.
TAILS = {"a norm each": False, "one norm": True}
#: A search's hidden offset below this norm is a tail doing nothing (a label of search_structures' cells,
#: not a rule of the fit).
QUIET_OFFSET = 0.05
#: Random starts of the tilted frame (theory.tilted_frame) beside the search's end point, at each cell
#: where search_structures fits it.
FRAME_RANDOM_STARTS = 3


@dataclass(frozen=True)
class TailOffsetMinimum:
    """The structure's best end point: its W (m, n) and b (n,), the head's features (indices, ascending)
    and whether the tail has one norm, L_N on the polishing sample (biased low), its Monte Carlo
    re-score and standard error, and every start's L_N on the search sample at its end point."""

    W: np.ndarray
    b: np.ndarray
    head: np.ndarray
    equal_tail: bool
    sampled: float
    monte_carlo: float
    monte_carlo_stderr: float
    start_losses: np.ndarray


class TailOffset:
    """The map theta -> (W, b) of the structure for one (n, m, head, equal_tail), with its vector-Jacobian
    product. theta = (H.ravel(), v, t, b); t has n - head entries, or one with equal_tail.

    head: a count (the first `head` features: the most important where importances decrease) or the
    head's feature indices (distinct, fewer than n; H's columns in ascending order of index)."""

    def __init__(self, n_features: int, n_hidden: int, head, equal_tail: bool = False):
        if isinstance(head, (int, np.integer)) and not isinstance(head, bool):
            if not 0 <= head < n_features:
                raise InputError(f"head = {head!r} is not allowed; give an integer in [0, {n_features - 1}]")
            features = np.arange(int(head))
        else:
            features = np.asarray(head)
            if (
                features.ndim != 1
                or features.dtype.kind not in "iu"
                or len(np.unique(features)) != len(features)
                or len(features) >= n_features
                or (len(features) and not (0 <= features.min() and features.max() < n_features))
            ):
                raise InputError(
                    f"head = {head!r} is not allowed; give an integer in [0, {n_features - 1}] or distinct "
                    f"feature indices in [0, {n_features - 1}], fewer than {n_features}"
                )
        self.n, self.m, self.equal_tail = n_features, n_hidden, equal_tail
        self.head_features = np.sort(features).astype(np.int64)
        self.tail_features = np.setdiff1d(np.arange(n_features), self.head_features)
        self.head = len(self.head_features)
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
        W = np.empty((self.m, self.n))
        W[:, self.head_features] = H
        W[:, self.tail_features] = np.outer(v, np.broadcast_to(t, (self.n - self.head,)))
        return W, b.copy()

    def pull_back(self, theta: np.ndarray, grad_W: np.ndarray, grad_b: np.ndarray) -> np.ndarray:
        """The gradient in theta of a function whose gradient in (W, b) at matrices(theta) is given."""
        _, v, t, _ = self.unpack(theta)
        tail = grad_W[:, self.tail_features]
        norms = np.broadcast_to(t, (self.n - self.head,))
        grad_t = tail.T @ v
        if self.equal_tail:
            grad_t = np.array([grad_t.sum()])
        return np.concatenate([grad_W[:, self.head_features].ravel(), tail @ norms, grad_t, grad_b])

    def theta_of(self, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The structure nearest a model (W, b) in its tail: H its head columns, v the tail columns'
        leading left singular vector (sign: along their sum), t their projections on v (their mean with
        equal_tail, clipped at 0)."""
        W, b = np.asarray(W, dtype=float), np.asarray(b, dtype=float)
        tail = W[:, self.tail_features]
        v = np.linalg.svd(tail, full_matrices=False)[0][:, 0]
        if v @ tail.sum(1) < 0:
            v = -v
        t = np.maximum(v @ tail, 0.0)
        if self.equal_tail:
            t = np.array([t.mean()])
        return np.concatenate([W[:, self.head_features].ravel(), v, t, b])

    def bounds(self) -> list[tuple]:
        m, k = self.m, self.head
        return [(None, None)] * (m * k + m) + [(0.0, None)] * self.tail + [(None, None)] * self.n


def minimize_tail_offset(
    setup: Setup,
    head,
    starts: list[tuple[np.ndarray, np.ndarray]] = (),
    random_starts: int = 4,
    equal_tail: bool = False,
    seed: int = 0,
    rescore: int = RESCORE_SAMPLES,
    options: dict | None = None,
) -> TailOffsetMinimum:
    """The structure's least loss at setup: head a count (the setup's features then in decreasing
    importance, so that the head is the most important `head`) or the head's feature indices (any
    order of importance); L-BFGS-B on L_N (N = theory.sampled.SEARCH_SAMPLES) from the
    nearest structure to each model in `starts` ((W, b) pairs: theory.sampled's or anyone's) and from
    `random_starts` random ones (H and v normal with scale 0.3, t = 0.1, b = 0), the best end point
    minimised again on twice N samples of its own and re-scored by Monte Carlo. Samples: seed, seed + 1,
    seed + 2; random starts: seed + 3."""
    if not isinstance(setup, Setup):
        raise InputError(f"minimize_tail_offset needs a theory.Setup, got {type(setup).__name__}")
    counted = isinstance(head, (int, np.integer)) and not isinstance(head, bool)
    if counted and np.any(np.diff(setup.importance_array) > 0):
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
    fit = minimize_structure(structure, setup, thetas, seed, rescore, options)
    return TailOffsetMinimum(
        fit.W, fit.b, structure.head_features, equal_tail, fit.sampled, fit.monte_carlo,
        fit.monte_carlo_stderr, fit.start_losses,
    )  # fmt: skip


def search_structures(diagram: xr.Dataset, progress=None, options: dict | None = None) -> xr.Dataset:
    """The structure fitted at every cell where a phase diagram's search over all of W and b is the
    optimum (`search_wins`; none in a diagram without a search): the head the features the search's
    end point represents (columns longer than theory.diagram.SEARCH_REPRESENTED), free; every other
    feature along one direction, with a norm each and with one norm for all (TAILS); every bias free.
    Each fit starts from the structure nearest the end point and runs on the search's own samples at
    the cell (its seed, theory.diagram.flat_cell), so its Monte Carlo score is on the same stream as
    the search's and the ratio of the two compares two models on the same samples.

    Where the ratio is 1 the search's optimum has that shape. Where the tail is near zero (offset
    norm ~0: sparse cells, or p = 0, where b absorbs any constant offset) the structure is the
    search's model with its tail dropped, and the ratio says only that the tail does nothing there
    (attrs["quiet_offset"]: QUIET_OFFSET, the offset norm below which a tail is taken as quiet).

    Where the head has one feature per unit (head_size = n_hidden) the head's symmetric form is fitted
    too: theory.tilted_frame's structure, from the same start and FRAME_RANDOM_STARTS random ones, on
    the same samples (frame_*: its score, tilt, the cosine between head columns, which start won).

    Returns a Dataset over the diagram's dims: search_loss, structure_loss and structure_stderr (dim
    tail), ratio, head_size (-1: no fit), the end point's offset_norm (theory.metrics.hidden_offset),
    structure_W, structure_b, frame_loss, frame_stderr, frame_ratio, frame_tilt, frame_head_cosine,
    frame_best_start, frame_W, frame_b; every variable but search_loss NaN (head_size and
    frame_best_start -1) where the search does not win, the frame's also where the head is not one
    feature per unit. options: L-BFGS-B's (default theory.sampled.OPTIONS)."""
    grid = grid_of(diagram)
    dims = diagram.optimal_loss.dims
    P, A, D = len(grid.p), len(grid.labels), len(grid.sparsity)
    m, n, T = grid.n_hidden, grid.n_features, len(TAILS)
    searched = "search_wins" in diagram
    wins = diagram.search_wins.values.reshape(P, A, D) if searched else np.zeros((P, A, D), bool)
    search = diagram.search_loss.values.reshape(P, A, D) if searched else np.full((P, A, D), np.nan)
    if searched:
        search_W = diagram.search_W.transpose(*dims, "hidden", "feature").values.reshape(P, A, D, m, n)
        search_b = diagram.search_b.transpose(*dims, "feature").values.reshape(P, A, D, n)
    loss, stderr = np.full((P, A, D, T), np.nan), np.full((P, A, D, T), np.nan)
    W, b = np.full((P, A, D, T, m, n), np.nan), np.full((P, A, D, T, n), np.nan)
    head, offset = np.full((P, A, D), -1), np.full((P, A, D), np.nan)
    frame = {key: np.full((P, A, D), np.nan) for key in ("loss", "stderr", "tilt")}
    frame_start = np.full((P, A, D), -1)
    frame_W, frame_b = np.full((P, A, D, m, n), np.nan), np.full((P, A, D, n), np.nan)
    cells = list(zip(*np.nonzero(wins), strict=True))
    with Progress.of(progress, len(cells) * (T + 1), "structure fits", "fit") as bar:
        for k, a, i in cells:
            setup = grid.setup(grid.p[k], grid.labels[a], grid.sparsity[i])
            start = (search_W[k, a, i], search_b[k, a, i])
            look = metrics.hidden_offset(start[0], setup.density, SEARCH_REPRESENTED)
            features = np.flatnonzero(~look.unrepresented)
            head[k, a, i], offset[k, a, i] = len(features), look.offset_norm
            if len(features) == n:  # no tail: the structure is the search's model
                bar.update(T + 1)
                continue
            seed = flat_cell(grid, k, a, i)  # the search's samples and Monte Carlo stream at the cell
            for t, equal in enumerate(TAILS.values()):
                fit = minimize_tail_offset(
                    setup, features, [start], random_starts=0, equal_tail=equal, seed=seed, options=options
                )
                loss[k, a, i, t], stderr[k, a, i, t] = fit.monte_carlo, fit.monte_carlo_stderr
                W[k, a, i, t], b[k, a, i, t] = fit.W, fit.b
                bar.update()
            if len(features) == m:  # a head of one feature per unit: also the tilted frame
                tilted = minimize_tilted_frame(
                    setup, features, [start], FRAME_RANDOM_STARTS, seed=seed, options=options
                )
                frame["loss"][k, a, i], frame["tilt"][k, a, i] = tilted.monte_carlo, tilted.tilt
                frame["stderr"][k, a, i], frame_start[k, a, i] = tilted.monte_carlo_stderr, tilted.best_start
                frame_W[k, a, i], frame_b[k, a, i] = tilted.W, tilted.b
            bar.update()
    shape = diagram.optimal_loss.shape
    coords = {d: diagram[d] for d in dims} | {"tail": list(TAILS), "density": diagram.density}
    return xr.Dataset(
        {
            "search_loss": (dims, search.reshape(shape), {"description": "the search's Monte Carlo loss"}),
            "structure_loss": (
                dims + ("tail",),
                loss.reshape(shape + (T,)),
                {
                    "description": "theory.tail_offset's structure fitted from the search's end point, "
                    "head = its represented features; Monte Carlo on the search's stream (NaN: the "
                    "search does not win)"
                },
            ),
            "structure_stderr": (dims + ("tail",), stderr.reshape(shape + (T,))),
            "ratio": (
                dims + ("tail",),
                (loss / search[..., None]).reshape(shape + (T,)),
                {"description": "structure_loss / search_loss (same samples)"},
            ),
            "head_size": (
                dims,
                head.reshape(shape),
                {"description": "features in the head (represented by the search's end point); -1: no fit"},
            ),
            "offset_norm": (
                dims,
                offset.reshape(shape),
                {"description": "the search's end point's hidden offset (theory.metrics.hidden_offset)"},
            ),
            "frame_loss": (
                dims,
                frame["loss"].reshape(shape),
                {
                    "description": "theory.tilted_frame's structure (the head's m columns at one angle "
                    "about the tail's direction) fitted from the search's end point and "
                    f"{FRAME_RANDOM_STARTS} random starts where the head has one feature per unit, a norm "
                    "per tail feature; Monte Carlo on the search's stream (NaN: not fitted)"
                },
            ),
            "frame_stderr": (dims, frame["stderr"].reshape(shape)),
            "frame_ratio": (
                dims,
                (frame["loss"] / search).reshape(shape),
                {"description": "frame_loss / search_loss (same samples)"},
            ),
            "frame_tilt": (
                dims,
                frame["tilt"].reshape(shape),
                {"description": "alpha: minus the cosine of each head column with the tail's direction"},
            ),
            "frame_head_cosine": (
                dims,
                head_cosine(frame["tilt"], m).reshape(shape),
                {"description": "the cosine between any two head columns of the tilted frame"},
            ),
            "frame_best_start": (
                dims,
                frame_start.reshape(shape),
                {
                    "description": "the start of the tilted frame's best end point: 0 the search's end "
                    "point, k >= 1 the k-th random start; -1: not fitted"
                },
            ),
            "frame_W": (dims + ("hidden", "feature"), frame_W.reshape(shape + (m, n))),
            "frame_b": (dims + ("feature",), frame_b.reshape(shape + (n,))),
            "structure_W": (dims + ("tail", "hidden", "feature"), W.reshape(shape + (T, m, n))),
            "structure_b": (dims + ("tail", "feature"), b.reshape(shape + (T, n))),
        },
        coords=coords,
        attrs={key: diagram.attrs[key] for key in ("grid", "n_features", "n_hidden") if key in diagram.attrs}
        | {
            "kind": "theory.tail_offset.search_structures",
            "quiet_offset": QUIET_OFFSET,
            "frame_random_starts": FRAME_RANDOM_STARTS,
        },
    )
