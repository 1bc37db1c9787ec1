"""One drawn case (a setup, W and b, and a geometry's parameters when there is one), printable as code."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from theory.setup import Setup


def _array(x: np.ndarray) -> str:
    """np.array([...]) with every float written so that it reads back exactly."""
    return f"np.array({_nested(np.asarray(x, dtype=float).tolist())})"


def _nested(x) -> str:
    return f"[{', '.join(_nested(v) for v in x)}]" if isinstance(x, list) else repr(float(x))


def setup_code(setup: Setup) -> str:
    """Setup(...) as code that rebuilds it exactly."""
    sparsity, importance = (repr(tuple(float(v) for v in x)) for x in (setup.sparsity, setup.importance))
    return (
        f"Setup(n_features={setup.n_features}, n_hidden={setup.n_hidden}, sparsity={sparsity}, "
        f"importance={importance}, p={setup.p!r})"
    )


@dataclass(frozen=True)
class Case:
    """A setup and a model (W, b); params and geometry name the geometry it was drawn from, if any."""

    setup: Setup
    W: np.ndarray
    b: np.ndarray
    params: dict[str, float] = field(default_factory=dict)
    geometry: str | None = None

    def digest(self) -> int:
        """A number fixed by the case (a seed for its Monte Carlo estimate, the same when it is replayed)."""
        return zlib.crc32(self.code().encode())

    def code(self) -> str:
        """One line of Python that rebuilds the case (after importing numpy as np and theory.Setup)."""
        line = f"setup, W, b = {setup_code(self.setup)}, {_array(self.W)}, {_array(self.b)}"
        if self.params:
            line += f"; params = {{{', '.join(f'{k!r}: {float(v)!r}' for k, v in self.params.items())}}}"
        return line
