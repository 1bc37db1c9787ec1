"""Hypothesis strategies for setups, models and geometries, drawn so that the hard cases come up.

Use them in your own ``@given`` tests, or let ``check_loss`` and
``check_geometry_loss`` draw from them. Every strategy shrinks towards a
simple case (few features, round numbers, zeros), so a failure is reported
at a small example.

What "hard" means here, and why each case is drawn on purpose:

- magnitudes over many decades in one W (1e-8 .. 10, and exact zeros): the
  exact loss divides by the smallest coefficient and cancels against it;
- ties and near-ties: two columns of W equal, opposite, or equal up to 1e-9
  (two features in one direction, an antipodal pair);
- ReLU kinks: biases exactly 0, or equal to -(W^T W)_ij / (1 - p), where a
  feature's output crosses 0 at a corner of the input cube;
- edges of the setup: density 1 (dense) and 0 (never active), importance 0,
  p = 0 and p up to 0.95.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from theory.blocks import antipodal, dedicated, free_polygon, ignore, irregular_polygon, parallel, polygon
from theory.candidates import NAMED
from theory.candidates import geometries as named_geometries
from theory.errors import InputError
from theory.geometries import Geometry
from theory.setup import Setup

#: The near-tie offset between two columns of W, relative to the column.
NEAR_TIE = 1e-9


def signed_magnitudes(low_exp: float, high_exp: float, zero: bool = True) -> st.SearchStrategy[float]:
    """Floats of either sign, log-uniform in magnitude over 10**low_exp .. 10**high_exp, or exactly 0."""
    spread = st.builds(
        lambda sign, exponent: sign * 10.0**exponent,
        st.sampled_from([1.0, -1.0]),
        st.floats(low_exp, high_exp, allow_nan=False),
    )
    return st.one_of(st.just(0.0), spread, spread, spread) if zero else spread


def densities(edges: bool = True) -> st.SearchStrategy[float]:
    """Feature densities 1 - S: uniform on [0.05, 1], log-uniform down to 1e-3, and (edges) exactly 1 or 0."""
    draws = [
        st.floats(0.05, 1.0),
        st.builds(lambda e: 10.0**e, st.floats(-3, 0)),
    ]
    if edges:
        draws.append(st.sampled_from([1.0, 0.0]))
    return st.one_of(*draws)


def importances(edges: bool = True) -> st.SearchStrategy[float]:
    """Importances in [0.1, 3], and (edges) exactly 1 or 0."""
    return st.one_of(st.floats(0.1, 3.0), st.sampled_from([1.0, 0.0])) if edges else st.floats(0.1, 3.0)


def dropout_rates(high: float = 0.95) -> st.SearchStrategy[float]:
    """p = 0 exactly, the published 0.15 and 0.4, and anything in [0.01, high]."""
    return st.one_of(st.just(0.0), st.sampled_from([0.15, 0.4]), st.floats(0.01, high))


def _sizes(value, name: str) -> st.SearchStrategy[int]:
    """An int, a (low, high) range, or a strategy, as a strategy of ints >= 1."""
    if isinstance(value, st.SearchStrategy):
        return value
    low, high = (value, value) if isinstance(value, int) else value
    if not 1 <= low <= high:
        raise InputError(f"{name} = {value!r} is not allowed; give an int >= 1 or a range (low, high)")
    return st.integers(low, high)


def dropout_groups(m: int) -> st.SearchStrategy[tuple[int, ...]]:
    """One group label per hidden unit (Setup.dropout_groups): every unit alone, all in one group, or any
    partition, labels in any order."""
    return st.one_of(
        st.just(tuple(range(m))), st.just((0,) * m), st.lists(st.integers(0, m - 1), min_size=m, max_size=m)
    ).map(tuple)


@st.composite
def setups(
    draw,
    n_features: int | tuple[int, int] | st.SearchStrategy[int] = (2, 3),
    n_hidden: int | tuple[int, int] | st.SearchStrategy[int] = (1, 2),
    density: st.SearchStrategy[float] | None = None,
    importance: st.SearchStrategy[float] | None = None,
    p: st.SearchStrategy[float] | None = None,
    shared_density: bool = False,
    groups: bool = False,
) -> Setup:
    """A theory.Setup: n_features and n_hidden (ints or (low, high)), a density and an importance per
    feature (one shared density if shared_density), and p; with groups, also dropout_groups
    (dropout_groups(n_hidden)).

    density, importance and p are strategies (defaults: densities(), importances(),
    dropout_rates()); pass st.just(...) to fix one.
    """
    n = draw(_sizes(n_features, "n_features"))
    m = draw(_sizes(n_hidden, "n_hidden"))
    density = densities() if density is None else density
    if shared_density:
        densities_ = [draw(density)] * n
    else:
        densities_ = draw(st.lists(density, min_size=n, max_size=n))
    importance_ = draw(st.lists(importances() if importance is None else importance, min_size=n, max_size=n))
    rate = draw(dropout_rates() if p is None else p)
    labels = draw(dropout_groups(m)) if groups else None
    return Setup(
        n, m, sparsity=[1.0 - d for d in densities_], importance=importance_, p=rate, dropout_groups=labels
    )


@st.composite
def models(
    draw, setup: Setup, min_magnitude: float = 1e-8, max_magnitude: float = 10.0, hard: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) for setup: W (n_hidden, n_features), b (n_features,).

    W's entries are 0, uniform on [-1.5, 1.5], or of either sign and log-uniform
    in magnitude over [min_magnitude, max_magnitude]; b's are 0, uniform on [-1, 1], or (hard) at
    a ReLU kink. With hard, two columns of W are also often tied: equal,
    opposite, or equal up to NEAR_TIE.
    """
    m, n = setup.n_hidden, setup.n_features
    low, high = math.log10(min_magnitude), math.log10(max_magnitude)
    entry = st.one_of(st.just(0.0), st.floats(-1.5, 1.5), signed_magnitudes(low, high, zero=False))
    W = np.array(draw(st.lists(entry, min_size=m * n, max_size=m * n))).reshape(m, n)
    if hard and n >= 2:
        tie = draw(st.sampled_from(["none", "equal", "opposite", "near"]))
        if tie != "none":
            j, k = draw(st.permutations(range(n)))[:2]
            W[:, k] = -W[:, j] if tie == "opposite" else W[:, j]
            if tie == "near":
                W[:, k] = W[:, j] * (1.0 + NEAR_TIE)
    kinds = ["zero", "uniform", "kink"] if hard else ["zero", "uniform"]
    b = np.zeros(n)
    corner = W.T @ W / (1.0 - setup.p)  # the output's slope in each feature with every neuron kept
    for i in range(n):
        kind = draw(st.sampled_from(kinds))
        if kind == "uniform":
            b[i] = draw(st.floats(-1.0, 1.0))
        elif kind == "kink":
            b[i] = -corner[i, draw(st.integers(0, n - 1))]
    return W, b


@st.composite
def problems(
    draw,
    n_features: int | tuple[int, int] = (2, 3),
    n_hidden: int | tuple[int, int] = (1, 2),
    setup_strategy: st.SearchStrategy[Setup] | None = None,
    **model_options,
) -> tuple[Setup, np.ndarray, np.ndarray]:
    """(Setup, W, b): a setup (setups(n_features, n_hidden), or setup_strategy), then
    models(setup, **model_options)."""
    setup = draw(setups(n_features, n_hidden) if setup_strategy is None else setup_strategy)
    W, b = draw(models(setup, **model_options))
    return setup, W, b


@st.composite
def block_geometries(draw, n_features: int, n_hidden: int) -> Geometry:
    """A Geometry of blocks on disjoint features and neurons: every kind (ignore, dedicated, antipodal,
    same-sign pair, regular / free / irregular polygon of 2 to 6 vertices) where it fits."""
    features = list(draw(st.permutations(range(n_features))))
    free = list(range(n_hidden))
    blocks = []
    while features:
        options = ["ignore"]
        if free:
            options += ["dedicated"] + (["antipodal", "parallel"] if len(features) >= 2 else [])
        if len(free) >= 2 and len(features) >= 2:
            options += ["polygon", "free polygon", "irregular polygon"]
        kind = draw(st.sampled_from(options))
        if kind == "ignore":
            blocks.append(ignore(features.pop(0)))
        elif kind == "dedicated":
            blocks.append(dedicated(features.pop(0), free.pop(0)))
        elif kind in ("antipodal", "parallel"):
            f, g = features.pop(0), features.pop(0)
            blocks.append((antipodal if kind == "antipodal" else parallel)(f, g, free.pop(0)))
        else:
            count = draw(st.integers(2, min(6, len(features))))
            taken, features = features[:count], features[count:]
            build = {"polygon": polygon, "free polygon": free_polygon, "irregular polygon": irregular_polygon}
            blocks.append(build[kind](taken, (free.pop(0), free.pop(0))))
    name = " + ".join(f"{block.kind} {list(block.features)}" for block in blocks)
    return Geometry(name, n_features, n_hidden, tuple(blocks))


def geometries(n_features: int, n_hidden: int) -> st.SearchStrategy[Geometry]:
    """The catalogue's named geometries for 2 in 1, 3 in 2 and 5 in 2; block geometries otherwise."""
    if (n_features, n_hidden) in NAMED:
        return st.sampled_from(named_geometries(n_features, n_hidden))
    return block_geometries(n_features, n_hidden)


@dataclass(frozen=True)
class GeometryModel:
    """A geometry at parameters theta: the parameters by name, and its (W, b)."""

    geometry: Geometry
    params: dict[str, float]
    W: np.ndarray
    b: np.ndarray


def _parameter(role: str, vertices: int) -> st.SearchStrategy[float]:
    if role == "norm":  # >= 0: 0 exactly, tiny, or order one
        return st.one_of(
            st.just(1.0), st.floats(0.05, 2.0), st.builds(lambda e: 10.0**e, st.floats(-8, 0)), st.just(0.0)
        )
    if role == "bias":
        return st.one_of(st.just(0.0), st.floats(-1.0, 1.0))
    # angle: 0 (a vertex on a neuron), a multiple of pi / (2 * vertices) (ties with the neurons), or any
    return st.one_of(
        st.just(0.0),
        st.builds(lambda t: t * math.pi / (2 * vertices), st.integers(0, 4 * vertices)),
        st.floats(-math.pi, math.pi),
    )


@st.composite
def geometry_models(draw, geometry: Geometry) -> GeometryModel:
    """The geometry at drawn parameters: norms 0, tiny or order one; biases 0 or in [-1, 1]; angles on
    a neuron, at ties with it, or anywhere."""
    params = geometry.parameters()
    vertices = max((len(block.features) for block in geometry.blocks), default=1)
    theta = [draw(_parameter(role, vertices)) for role in geometry.roles()]
    W, b = geometry.numeric_W_b(theta)
    return GeometryModel(geometry, {t.name: v for t, v in zip(params, theta, strict=True)}, W, b)
