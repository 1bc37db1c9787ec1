"""Hypothesis strategies for the cases that matter, shared by the property tests.

Drawn so that most examples are not trivial: at least two features, importances
that differ and none zero, densities that make several features active at once,
dropout rates up to 0.95, and weights whose magnitudes span many decades
(tiny, zero and order-one entries in one W: the pivots of theory.cube).
"""

import numpy as np
from hypothesis import strategies as st

from theory import Setup


def signed_magnitudes(low_exp: float, high_exp: float, zero: bool = True):
    """Floats of either sign, log-uniform in magnitude over 10**low_exp .. 10**high_exp, or exactly 0."""
    spread = st.builds(
        lambda sign, exponent: sign * 10.0**exponent,
        st.sampled_from([-1.0, 1.0]),
        st.floats(low_exp, high_exp, allow_nan=False),
    )
    return st.one_of(st.just(0.0), spread, spread, spread) if zero else spread


@st.composite
def setups(draw, min_n: int = 2, max_n: int = 3, max_m: int = 2) -> Setup:
    """A Setup with min_n..max_n features in 1..max_m dims; per-feature densities, importances, p."""
    n = draw(st.integers(min_n, max_n))
    m = draw(st.integers(1, max_m))
    density = st.one_of(st.floats(0.05, 1.0), st.builds(lambda e: 10.0**e, st.floats(-3, 0)), st.just(1.0))
    densities = draw(st.lists(density, min_size=n, max_size=n))
    importance = draw(st.lists(st.floats(0.1, 3.0), min_size=n, max_size=n))
    p = draw(st.one_of(st.just(0.0), st.floats(0.01, 0.95)))
    return Setup(n, m, sparsity=[1.0 - d for d in densities], importance=importance, p=p)


@st.composite
def models(draw, setup: Setup, low_exp: float = -6, high_exp: float = 0.3):
    """(W, b) for `setup`: W's entries span 10**low_exp .. 10**high_exp in magnitude, some exactly 0."""
    m, n = setup.n_hidden, setup.n_features
    W = np.array(draw(st.lists(signed_magnitudes(low_exp, high_exp), min_size=m * n, max_size=m * n)))
    b = np.array(draw(st.lists(st.one_of(st.just(0.0), st.floats(-1, 1)), min_size=n, max_size=n)))
    return W.reshape(m, n), b


@st.composite
def problems(draw, min_n: int = 2, max_n: int = 3, max_m: int = 2):
    """(Setup, W, b) from setups() and models()."""
    setup = draw(setups(min_n, max_n, max_m))
    W, b = draw(models(setup))
    return setup, W, b
