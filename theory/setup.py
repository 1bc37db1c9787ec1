"""The problem definition every layer shares (docs/model.md section 2).

    x_i  = 0 with probability S_i, else Uniform[0, 1], independent
    h    = (mask * (W x)) / (1 - p),   mask_j ~ Bernoulli(1 - p)
    x'   = ReLU(W^T h + b)
    L    = E sum_i I_i (x_i - x'_i)^2

With dropout_groups, the hidden units are split into groups (components) and
each group is kept or dropped as a whole: mask_j = keep_g for j in group g,
keep_g ~ Bernoulli(1 - p) independent over groups. Default: every unit its
own group, the independent dropout above.

W has shape (n_hidden, n_features), b has shape (n_features,).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from theory.errors import InputError


def finite(name: str, value: float) -> float:
    # numbers.Real: int, float and numpy's real scalars; not str ("0.5"), complex or bool
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} = {value!r} is not a real number")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{name} = {value} is not allowed; it must be a finite number")
    return value


def real_array(name: str, value) -> np.ndarray:
    """`value` as a float64 array, or an InputError naming what is wrong (ragged, text, complex, NaN)."""
    try:
        array = np.asarray(value)
    except ValueError:
        raise InputError(
            f"{name} is ragged (rows of different lengths); it must be a rectangular array"
        ) from None
    if array.dtype == object:
        raise InputError(f"{name} is ragged or holds non-numbers; it must be a rectangular array of numbers")
    if array.dtype.kind not in "iuf":
        kind = {"b": "booleans", "c": "complex numbers", "U": "text", "S": "text"}.get(
            array.dtype.kind, "non-numbers"
        )
        raise InputError(f"{name} holds {kind}; it must hold real numbers")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} contains NaN or infinite entries; it must be finite")
    return array


def per_feature(name: str, value, n: int) -> tuple[float, ...]:
    if isinstance(value, np.ndarray) and value.ndim == 0 or not isinstance(value, Sequence | np.ndarray):
        return (finite(name, value),) * n
    if isinstance(value, str):
        raise InputError(f"{name} = {value!r} is not a real number")
    values = real_array(name, value)
    if values.shape != (n,):
        raise InputError(f"{name} has shape {values.shape}; it must be one number or one per feature ({n},)")
    return tuple(float(v) for v in values)


class FeatureLaw:
    """The input law's derived arrays, for any problem with `sparsity` and `importance` tuples."""

    @property
    def density(self) -> np.ndarray:
        """Probability that each feature is non-zero, 1 - S_i, shape (n,)."""
        return 1.0 - np.asarray(self.sparsity)

    @property
    def importance_array(self) -> np.ndarray:
        return np.asarray(self.importance)


def _groups(value, m: int) -> tuple[int, ...] | None:
    """dropout_groups relabelled 0, 1, ... in order of first appearance; None when every unit is alone."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray):
        raise InputError(f"dropout_groups = {value!r} must be one integer label per hidden unit ({m},)")
    labels = list(value)
    if len(labels) != m:
        raise InputError(
            f"dropout_groups has {len(labels)} labels; it needs one per hidden unit (n_hidden = {m})"
        )
    for label in labels:
        if isinstance(label, bool | np.bool_) or not isinstance(label, numbers.Integral):
            raise InputError(f"dropout_groups has {label!r}; the labels must be integers")
    first: dict[int, int] = {}
    canonical = tuple(first.setdefault(int(label), len(first)) for label in labels)
    return None if len(first) == m else canonical


@dataclass(frozen=True)
class Setup(FeatureLaw):
    """A validated toy-model problem: n features into m hidden units under dropout p.

    sparsity: one value for all features or one per feature, each in [0, 1]
    (probability that a feature is zero). importance: one non-negative value
    per feature (default all ones). p: dropout rate on the hidden layer, in
    [0, 1). Scalars are broadcast, so the stored fields are always tuples of
    length n_features. dropout_groups: one group label per hidden unit (any
    integers); the units of one group are dropped together. Stored relabelled
    0, 1, ... in order of first appearance, or None when every unit is its own
    group (the default), so equal problems compare equal.

    >>> Setup(n_features=2, n_hidden=1, sparsity=0.9, importance=(1.0, 0.5), p=0.4).density
    array([0.1, 0.1])
    >>> Setup(n_features=5, n_hidden=4, dropout_groups=[7, 7, 3, 3]).dropout_groups
    (0, 0, 1, 1)
    """

    n_features: int
    n_hidden: int
    sparsity: float | Sequence[float] = 0.0
    importance: Sequence[float] | None = None
    p: float = 0.0
    dropout_groups: Sequence[int] | None = None

    def __post_init__(self):
        for name in ("n_features", "n_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{name} = {value!r} is not allowed; it must be an integer >= 1")
            object.__setattr__(self, name, int(value))
        n = self.n_features
        sparsity = per_feature("sparsity", self.sparsity, n)
        for i, s in enumerate(sparsity):
            if not 0.0 <= s <= 1.0:
                label = "sparsity" if len(set(sparsity)) == 1 else f"sparsity[{i}]"
                raise InputError(f"{label} = {s} is outside the allowed range [0, 1]")
        importance = (1.0,) * n if self.importance is None else self.importance
        if np.ndim(importance) == 0:
            raise InputError(f"importance = {importance!r} is not allowed; give one value per feature ({n},)")
        importance = per_feature("importance", importance, n)
        for i, value in enumerate(importance):
            if value < 0:
                raise InputError(f"importance[{i}] = {value} is not allowed; importance must be >= 0")
        p = finite("p", self.p)
        if not 0.0 <= p < 1.0:
            raise InputError(f"p = {p} is outside the allowed range [0, 1)")
        object.__setattr__(self, "sparsity", sparsity)
        object.__setattr__(self, "importance", importance)
        object.__setattr__(self, "p", p)
        object.__setattr__(self, "dropout_groups", _groups(self.dropout_groups, self.n_hidden))

    @property
    def unit_groups(self) -> np.ndarray:
        """Each hidden unit's dropout group, (m,) int64 in 0..n_groups-1 (arange(m) without groups)."""
        if self.dropout_groups is None:
            return np.arange(self.n_hidden, dtype=np.int64)
        return np.array(self.dropout_groups, dtype=np.int64)

    @property
    def group_leaders(self) -> np.ndarray:
        """For each hidden unit, the first unit of its dropout group, (m,) int64: unit j is kept
        exactly when unit group_leaders[j] is (arange(m) without groups)."""
        m = self.n_hidden
        if self.dropout_groups is None:
            return np.arange(m, dtype=np.int64)
        groups = self.dropout_groups
        return np.array([groups.index(g) for g in groups], dtype=np.int64)

    @property
    def n_groups(self) -> int:
        """How many groups are dropped independently (n_hidden without groups)."""
        return self.n_hidden if self.dropout_groups is None else max(self.dropout_groups) + 1

    def with_(self, **changes) -> Setup:
        """A copy with some fields changed (validated again)."""
        fields = dict(
            n_features=self.n_features,
            n_hidden=self.n_hidden,
            sparsity=self.sparsity,
            importance=self.importance,
            p=self.p,
            dropout_groups=self.dropout_groups,
        )
        fields.update(changes)
        return Setup(**fields)

    def to_dict(self) -> dict:
        out = dict(
            n_features=self.n_features,
            n_hidden=self.n_hidden,
            sparsity=list(self.sparsity),
            importance=list(self.importance),
            p=self.p,
        )
        if self.dropout_groups is not None:
            out["dropout_groups"] = list(self.dropout_groups)
        return out

    def check_parameters(self, W, b) -> tuple[np.ndarray, np.ndarray]:
        """W (..., m, n) and b (..., n) as float64 arrays, or an InputError.

        Leading (batch) dims of W and b must broadcast against each other.
        """
        m, n = self.n_hidden, self.n_features
        W, b = real_array("W", W), real_array("b", b)
        if W.ndim < 2 or W.shape[-2:] != (m, n):
            raise InputError(f"W has shape {W.shape}; it must be (..., n_hidden={m}, n_features={n})")
        if b.ndim < 1 or b.shape[-1] != n:
            raise InputError(f"b has shape {b.shape}; it must be (..., n_features={n})")
        try:
            np.broadcast_shapes(W.shape[:-2], b.shape[:-1])
        except ValueError:
            raise InputError(
                f"W batch shape {W.shape[:-2]} and b batch shape {b.shape[:-1]} do not broadcast"
            ) from None
        if W.size == 0 or b.size == 0:
            raise InputError(f"W {W.shape} and b {b.shape} hold no model; the batch dims must not be empty")
        return W, b
