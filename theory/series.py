"""Components in series: a residual stream through blocks that may fail, each a small ReLU MLP.

    s_0 = E x                                   E: (d, n), the stream has d < n dims
    a_l = ReLU(R_l s_{l-1} + c_l)               block l = 1..L: R_l (k, d), c_l (k,)
    s_l = s_{l-1} + z_l / (1 - p_block) * U_l (u_l / (1 - p_unit) * a_l)     U_l (d, k)
    x'  = ReLU(O s_L + b)                        O: (n, d), b: (n,)
    L   = E sum_i I_i (x_i - x'_i)^2

With direct = False the readout sees only what the blocks wrote, x' = ReLU(O (s_L - s_0) + b): the
blocks read the embedding but the signal reaches the output through them alone, so they must do
the work (with the direct path, L = 0 already reconstructs as TMS does).

x as in theory.setup (x_i = 0 with probability S_i, else uniform on [0, 1]);
z_l ~ Bernoulli(1 - p_block) drops block l as a whole (the component fails),
u_l ~ Bernoulli(1 - p_unit)^k drops its units one by one, all independent,
with inverted scaling as in theory.setup. A later block can redo what an
earlier one failed to write; with L = 0 the model is TMS with untied weights,
x' = ReLU(O E x + b). Evaluation (the metrics) keeps every block and unit.

Three computations of the loss that share no code: `monte_carlo_series_loss`
samples the model literally (numpy); `leading_order_loss` is exact for the
samples with at most one active feature: x = v e_i, every pre-activation is
piecewise linear in v, so the expectation over v is a sum of integrals of
quadratics between the kinks, summed over every mask with its probability;
the trainers (sim.series: a numba kernel and a torch loop) run their own forward passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from itertools import product

import numpy as np

from theory.errors import InputError
from theory.metrics import represented, superposition
from theory.montecarlo import MonteCarloLoss
from theory.setup import FeatureLaw, finite, per_feature

#: leading_order_loss enumerates the masks: at most this many (block masks times unit masks of the kept
#: blocks, sum over block masks of 2^(k kept)) for one model.
MAX_MASKS = 1 << 14


@dataclass(frozen=True)
class SeriesSetup(FeatureLaw):
    """A series problem: n features through a d-dim stream and L blocks of k ReLU units each.

    sparsity and importance as in theory.Setup (one value or one per feature); p_block drops each block
    as a whole, p_unit each unit of a block, both in [0, 1).

    >>> SeriesSetup(n_features=6, stream=2, blocks=2, units=2, sparsity=0.9, p_block=0.2).density
    array([0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    """

    n_features: int
    stream: int
    blocks: int
    units: int
    sparsity: float | tuple[float, ...] = 0.0
    importance: tuple[float, ...] | None = None
    p_block: float = 0.0
    p_unit: float = 0.0
    direct: bool = True

    def __post_init__(self):
        for name, low in (("n_features", 1), ("stream", 1), ("blocks", 0), ("units", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise InputError(f"{name} = {value!r} is not allowed; it must be an integer >= {low}")
            object.__setattr__(self, name, int(value))
        n = self.n_features
        sparsity = per_feature("sparsity", self.sparsity, n)
        if not all(0.0 <= s <= 1.0 for s in sparsity):
            raise InputError(f"sparsity = {list(sparsity)} is outside the allowed range [0, 1]")
        importance = per_feature("importance", (1.0,) * n if self.importance is None else self.importance, n)
        if not all(v >= 0 for v in importance):
            raise InputError(f"importance = {list(importance)} is not allowed; importance must be >= 0")
        object.__setattr__(self, "sparsity", sparsity)
        object.__setattr__(self, "importance", importance)
        for name in ("p_block", "p_unit"):
            p = finite(name, getattr(self, name))
            if not 0.0 <= p < 1.0:
                raise InputError(f"{name} = {p} is outside the allowed range [0, 1)")
            object.__setattr__(self, name, p)
        if not isinstance(self.direct, bool | np.bool_):
            raise InputError(f"direct = {self.direct!r} must be true or false")
        object.__setattr__(self, "direct", bool(self.direct))

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each parameter's shape for one model."""
        n, d, L, k = self.n_features, self.stream, self.blocks, self.units
        return {"E": (d, n), "R": (L, k, d), "c": (L, k), "U": (L, d, k), "O": (n, d), "b": (n,)}

    @property
    def parameter_count(self) -> int:
        return sum(math.prod(shape) for shape in self.shapes.values())

    def with_(self, **changes) -> SeriesSetup:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return SeriesSetup(**(values | changes))

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return out | {"sparsity": list(self.sparsity), "importance": list(self.importance)}


@dataclass(frozen=True)
class SeriesModel:
    """One model's parameters (shapes: SeriesSetup.shapes)."""

    E: np.ndarray
    R: np.ndarray
    c: np.ndarray
    U: np.ndarray
    O: np.ndarray  # noqa: E741 (the output matrix's name in the model's equations)
    b: np.ndarray

    @classmethod
    def of(cls, setup: SeriesSetup, **params) -> SeriesModel:
        """The parameters as float64 arrays of the setup's shapes, or an InputError naming the first wrong."""
        arrays = {}
        for name, shape in setup.shapes.items():
            if name not in params:
                raise InputError(f"the series model needs {name} of shape {shape}")
            value = np.asarray(params[name], dtype=np.float64)
            if value.shape != shape:
                raise InputError(f"{name} has shape {value.shape}; it must be {shape}")
            if not np.all(np.isfinite(value)):
                raise InputError(f"{name} contains NaN or infinite entries")
            arrays[name] = value
        unknown = set(params) - set(arrays)
        if unknown:
            raise InputError(
                f"unknown parameters {sorted(unknown)}; the series model has {list(setup.shapes)}"
            )
        return cls(**arrays)

    def without_blocks(self, removed) -> SeriesModel:
        """The model with the blocks in `removed` taken out (their writes set to zero)."""
        U = self.U.copy()
        U[list(removed)] = 0.0
        return SeriesModel(self.E, self.R, self.c, U, self.O, self.b)


def forward(setup: SeriesSetup, model: SeriesModel, x, block_keep=None, unit_keep=None) -> np.ndarray:
    """x' for inputs x (N, n) with the given masks: block_keep (N, L), unit_keep (N, L, k) in {0, 1}
    (None: every block or unit kept, without dropout's scaling: evaluation)."""
    s = start = x @ model.E.T
    for layer in range(setup.blocks):
        a = np.maximum(s @ model.R[layer].T + model.c[layer], 0.0)
        if unit_keep is not None:
            a = a * unit_keep[:, layer] / (1.0 - setup.p_unit)
        write = a @ model.U[layer].T
        if block_keep is not None:
            write = write * (block_keep[:, layer, None] / (1.0 - setup.p_block))
        s = s + write
    if not setup.direct:  # the readout sees what the blocks wrote only
        s = s - start
    return np.maximum(s @ model.O.T + model.b, 0.0)


def monte_carlo_series_loss(
    setup: SeriesSetup,
    model: SeriesModel,
    n_samples: int = 1_000_000,
    seed: int = 0,
    at_most_one: bool = False,
    chunk: int = 100_000,
) -> MonteCarloLoss:
    """The loss by sampling inputs and masks; with at_most_one, of loss * [at most one feature active]
    (what leading_order_loss computes exactly)."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise InputError(f"n_samples = {n_samples!r} is not allowed; it must be an integer >= 2")
    rng = np.random.default_rng(seed)
    n, L, k = setup.n_features, setup.blocks, setup.units
    total = total_sq = 0.0
    done = 0
    while done < n_samples:
        size = min(chunk, n_samples - done)
        x = rng.random((size, n)) * (rng.random((size, n)) < setup.density)
        block_keep = (rng.random((size, L)) >= setup.p_block).astype(float)
        unit_keep = (rng.random((size, L, k)) >= setup.p_unit).astype(float)
        out = forward(setup, model, x, block_keep, unit_keep)
        per_sample = ((x - out) ** 2) @ setup.importance_array
        if at_most_one:
            per_sample = per_sample * ((x > 0).sum(1) <= 1)
        total += per_sample.sum()
        total_sq += (per_sample**2).sum()
        done += size
    mean = total / n_samples
    var = max(total_sq / n_samples - mean**2, 0.0)
    return MonteCarloLoss(mean=mean, stderr=float(np.sqrt(var / (n_samples - 1))), n_samples=n_samples)


def _masks(setup: SeriesSetup):
    """Every (block mask, unit mask, probability) of non-zero probability; a dropped block's units are
    not enumerated (they change nothing)."""
    L, k, pb, pu = setup.blocks, setup.units, setup.p_block, setup.p_unit
    count = sum(math.comb(L, kept) * (2 ** (k * kept) if pu > 0 else 1) for kept in range(L + 1))
    if count > MAX_MASKS:
        raise InputError(
            f"{count} dropout masks: leading_order_loss enumerates at most {MAX_MASKS} (blocks {L} of "
            f"{k} units with p_unit > 0); use monte_carlo_series_loss"
        )
    for blocks in product((0, 1), repeat=L) if pb > 0 else [(1,) * L]:
        p_blocks = math.prod((1 - pb) if kept else pb for kept in blocks)
        kept_blocks = [layer for layer in range(L) if blocks[layer]]
        choices = product((0, 1), repeat=k * len(kept_blocks)) if pu > 0 else [(1,) * (k * len(kept_blocks))]
        for bits in choices:
            units = np.zeros((L, k))
            if kept_blocks:
                units[kept_blocks] = np.reshape(bits, (len(kept_blocks), k))
            kept = int(units.sum())
            p_units = (1 - pu) ** kept * pu ** (k * len(kept_blocks) - kept)
            yield np.array(blocks, dtype=float), units, p_blocks * p_units


def _square_integral(lo: float, hi: float, slope: float, offset: float) -> float:
    """The integral of (slope v + offset)^2 over [lo, hi]."""
    return (slope**2 * (hi**3 - lo**3) / 3) + slope * offset * (hi**2 - lo**2) + offset**2 * (hi - lo)


def _split(pieces, slopes_offsets):
    """Cut each piece (lo, hi, ...) at the zeros of the affine functions slope v + offset given for it."""
    out = []
    for piece, (slope, offset) in zip(pieces, slopes_offsets, strict=True):
        lo, hi = piece[0], piece[1]
        with np.errstate(divide="ignore", invalid="ignore"):
            roots = -offset / slope
        cuts = np.unique(roots[(slope != 0) & (roots > lo) & (roots < hi)])
        edges = [lo, *cuts.tolist(), hi]
        out += [(a, b, *piece[2:]) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    return out


def _one_input_loss(setup, model, direction, target, block_keep, unit_keep) -> float:
    """E over v ~ U[0, 1] of sum_j I_j (target_j v - x'_j)^2 for the input x = v * direction, exact."""
    scale_b = 1.0 / (1.0 - setup.p_block)
    scale_u = 1.0 / (1.0 - setup.p_unit)
    pieces = [(0.0, 1.0, model.E @ direction, np.zeros(setup.stream))]  # s(v) = A v + B on [lo, hi]
    for layer in range(setup.blocks):
        if not block_keep[layer]:
            continue
        R, c, U = model.R[layer], model.c[layer], model.U[layer]
        pieces = _split(pieces, [(R @ A, R @ B + c) for _, _, A, B in pieces])
        updated = []
        for lo, hi, A, B in pieces:
            slope, offset = R @ A, R @ B + c
            middle = (lo + hi) / 2
            on = (slope * middle + offset > 0) * unit_keep[layer] * scale_u * scale_b
            updated.append((lo, hi, A + U @ (on * slope), B + U @ (on * offset)))
        pieces = updated
    if not setup.direct:  # the readout sees s_L - s_0: take the embedding's part v E direction out
        embedded = model.E @ direction
        pieces = [(lo, hi, A - embedded, B) for lo, hi, A, B in pieces]
    total = 0.0
    for j in range(setup.n_features):
        ends = _split(pieces, [(np.array([model.O[j] @ A]), np.array([model.O[j] @ B + model.b[j]]))
                               for _, _, A, B in pieces])  # fmt: skip
        for lo, hi, A, B in ends:
            slope, offset = model.O[j] @ A, model.O[j] @ B + model.b[j]
            if slope * (lo + hi) / 2 + offset > 0:  # x'_j = y_j here: the error is (t_j - slope) v - offset
                total += setup.importance[j] * _square_integral(lo, hi, target[j] - slope, -offset)
            else:  # x'_j = 0: the error is t_j v
                total += setup.importance[j] * _square_integral(lo, hi, target[j], 0.0)
    return total


def leading_order_loss(setup: SeriesSetup, model: SeriesModel) -> float:
    """E[loss * (at most one feature active)], exact: the loss to first order in the density (the rest
    is the loss of samples with two or more active features, of probability O(density^2))."""
    n = setup.n_features
    density = setup.density
    p_empty = float(np.prod(1 - density))
    p_only = [density[i] * np.prod(np.delete(1 - density, i)) for i in range(n)]
    total = 0.0
    zero, eye = np.zeros(n), np.eye(n)
    for block_keep, unit_keep, p_mask in _masks(setup):
        value = p_empty * _one_input_loss(setup, model, zero, zero, block_keep, unit_keep)
        for i in range(n):
            if p_only[i] > 0:
                value += p_only[i] * _one_input_loss(setup, model, eye[i], eye[i], block_keep, unit_keep)
        total += p_mask * value
    return total


@dataclass(frozen=True)
class Ablations:
    """Per feature, its loss (importance-weighted, evaluation mode, on one sample of inputs) with every
    block (`full`, (n,)), with block l removed (`without`, (L, n)), with block l alone (`only`, (L, n))
    and with none (`none`, (n,))."""

    full: np.ndarray
    without: np.ndarray
    only: np.ndarray
    none: np.ndarray

    def _share(self, loss: np.ndarray) -> np.ndarray:
        benefit = self.none - self.full  # what all the blocks together do for the feature
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(benefit > 0, loss / benefit, np.nan)

    @property
    def benefit(self) -> float:
        """What the blocks remove of the loss without them: sum_i (none - full) / sum_i none (0: nothing;
        1: all of it)."""
        total = float(self.none.sum())
        return float((self.none - self.full).sum()) / total if total > 0 else float("nan")

    def _total_share(self, loss: np.ndarray) -> np.ndarray:
        benefit = float((self.none - self.full).sum())
        return loss.sum(-1) / benefit if benefit > 0 else np.full(loss.shape[0], np.nan)

    @property
    def lost_alone_total(self) -> np.ndarray:
        """Per block, (L,): the share of the blocks' benefit, summed over features, lost when this block
        alone is removed; about 1/L when the blocks split the work and add up, near 0 when the others
        make up for it."""
        return self._total_share(self.without - self.full[None, :])

    @property
    def restored_alone_total(self) -> np.ndarray:
        """Per block, (L,): the share of the blocks' benefit, summed over features, that this block
        restores alone."""
        return self._total_share(self.none[None, :] - self.only)

    @property
    def lost_alone(self) -> np.ndarray:
        """(without_l - full) / (none - full), (L, n): the share of the blocks' benefit to the feature
        lost when block l alone fails (near 0: the others make up for it); NaN where the blocks do
        nothing for it."""
        return self._share(self.without - self.full[None, :])

    @property
    def restored_alone(self) -> np.ndarray:
        """(none - only_l) / (none - full), (L, n): the share block l restores when it is the only one
        kept (near 1: it does the whole job alone)."""
        return self._share(self.none[None, :] - self.only)


def ablations(setup: SeriesSetup, model: SeriesModel, n_samples: int = 1 << 17, seed: int = 0) -> Ablations:
    """Each feature's loss with every block, without each, with each alone and with none, evaluated
    without dropout on one sample of the input law (the same sample for every variant)."""
    rng = np.random.default_rng(seed)
    n = setup.n_features
    x = rng.random((n_samples, n)) * (rng.random((n_samples, n)) < setup.density)

    def per_feature_loss(variant: SeriesModel) -> np.ndarray:
        return ((x - forward(setup, variant, x)) ** 2).mean(0) * setup.importance_array

    L = setup.blocks
    every = set(range(L))

    def each(removed_with) -> np.ndarray:
        """per_feature_loss with the blocks removed_with(l) taken out, for each block l: (L, n)."""
        losses = [per_feature_loss(model.without_blocks(removed_with(i))) for i in range(L)]
        return np.array(losses).reshape(L, n)

    return Ablations(
        full=per_feature_loss(model),
        without=each(lambda i: [i]),
        only=each(lambda i: every - {i}),
        none=per_feature_loss(model.without_blocks(every)),
    )


def block_writes(setup: SeriesSetup, model: SeriesModel, points: int = 64) -> np.ndarray:
    """What block l writes into feature i's readout when i alone is active: the mean over v in [0, 1]
    (midpoint rule on `points` values) of O_i . w_l(v e_i), evaluation mode; (L, n)."""
    n, L = setup.n_features, setup.blocks
    v = (np.arange(points) + 0.5) / points
    out = np.zeros((L, n))
    for i in range(n):
        s = np.outer(v, model.E[:, i])
        for layer in range(L):
            write = np.maximum(s @ model.R[layer].T + model.c[layer], 0.0) @ model.U[layer].T
            out[layer, i] = (write @ model.O[i]).mean()
            s = s + write
    return out


def blocks_writing(writes: np.ndarray) -> np.ndarray:
    """How many blocks write each feature: the participation ratio over blocks of |block_writes|
    (..., L, n) -> (..., n): 1 when one block writes it, L when all write it equally; NaN when none does."""
    size = np.abs(writes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return size.sum(-2) ** 2 / (size**2).sum(-2)


def block_reads(model: SeriesModel) -> np.ndarray:
    """What each block's units read of each feature from the embedding, R_l E: (L, k, n). The first
    order of the block's input (later blocks also read earlier blocks' writes)."""
    return np.einsum("lkd,dn->lkn", model.R, model.E)


def block_superposition(model: SeriesModel, tolerance: float = 0.5) -> dict[str, np.ndarray]:
    """Superposition inside each block, from block_reads taken as TMS's W, scale-free (a block's reads
    can be scaled up and its writes down at no cost, so each block's reads are divided by their longest
    column): features read (columns longer than tolerance, (L,)), features per unit (the participation
    ratio of the squared column norms, the number of features the block reads effectively, over its k
    units, (L,): above 1, superposition inside the block) and each feature's superposition, (L, n)."""
    reads = block_reads(model)
    k = reads.shape[1]
    norms = np.linalg.norm(reads, axis=-2)  # (L, n)
    top = norms.max(-1, initial=0.0)
    scaled = reads / np.where(top > 0, top, 1.0)[:, None, None]
    squared = norms**2
    with np.errstate(invalid="ignore", divide="ignore"):
        effective = squared.sum(-1) ** 2 / (squared**2).sum(-1)
    return {
        "features_read": represented(scaled, tolerance),
        "features_per_unit": effective / k,
        "superposition": superposition(scaled),
    }
