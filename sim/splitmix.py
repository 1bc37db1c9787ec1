"""SplitMix64 (Steele, Lea and Flood 2014): the random stream of the numba kernels, one per instance.

The state advances by GOLDEN; `mix` is the output function. sim.fused draws one
53-bit double per call (`uniform`); sim.tiled draws two 24-bit floats per
output of `mix` at counter-based positions.
"""

from __future__ import annotations

import numba as nb
import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_UNIT = 2.0**-53


@nb.njit(inline="always")
def mix(z):
    """SplitMix64's output function."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@nb.njit(inline="always")
def uniform(state):
    """(next state, a uniform double on [0, 1) from the top 53 bits of its output)."""
    state = state + GOLDEN
    return state, float(mix(state) >> _S11) * _UNIT


def seed_states(seed: int, instances: int) -> np.ndarray:
    """Each instance's SplitMix64 state, from (seed, instance index)."""
    return np.array(
        [np.random.SeedSequence([int(seed), i]).generate_state(1, np.uint64)[0] for i in range(instances)],
        dtype=np.uint64,
    )
