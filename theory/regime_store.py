"""The closed forms' regimes on disk, so that a process does not derive and compile them again.

Deriving a regime (theory.symbolic.derive_loss) is quick; turning it into numpy code is not:
sympy's `lambdify` (common subexpressions, then printing) and, for Newton steps, `diff` of the
regime for its gradient and Hessian took most of a small phase diagram's time, in every process.
A `RegimeStore` keeps, per block form, each regime met so far and the numpy code lambdify wrote
for it (value, conditions, gradient, Hessian), in the cache folder `closed_forms`
(`$TMS_DROPOUT_CACHE`, or `~/.cache/tms-dropout`). A regime is named by its path (the choices
derive_loss takes, theory.symbolic.regime_path), which a point gives in milliseconds: a later
process finds the very regime derive_loss would give it at that point, and executes the stored
code instead of printing it again: the same source, so the same numbers bit for bit.

The store's folder is named by a digest of everything the code depends on: the block's W(theta),
b(theta) and parameters, the derivation's source (theory/symbolic.py), this file and
theory/code_cache.py (which writes and reads the code), and the sympy and numpy versions. Each
file carries the SHA-256 of its content; a damaged or half-written file is never executed, it is
derived and written again. Deleting the folder is always safe.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import sympy as sp

from theory import code_cache, storage, symbolic
from theory.symbolic import RegimeLoss


def _arguments(regime: RegimeLoss, part: str) -> tuple[sp.Symbol, ...]:
    """The arguments of a part's function: the conditions take (theta, p); the rest (theta, density,
    importance, p), as theory.geometries.setup_args orders a setup."""
    if part in ("conditions", "strict"):
        return (*regime.params, symbolic.p_symbol)
    n = regime.n_features
    return (*regime.params, *symbolic.density_symbols(n), *symbolic.importance_symbols(n), symbolic.p_symbol)


#: What each stored function computes, from the regime.
PARTS: dict[str, Callable[[RegimeLoss], object]] = {
    "value": lambda regime: regime.expr,
    "conditions": lambda regime: list(regime.conditions),
    "strict": lambda regime: list(regime.strict),
    "gradient": lambda regime: [sp.diff(regime.expr, t) for t in regime.params],
    "hessian": lambda regime: sp.hessian(regime.expr, regime.params).tolist(),
}


class RegimeStore:
    """The regimes of one block form (W(theta), b(theta) in params) and their numpy code, on disk."""

    def __init__(self, W: sp.Matrix, b: sp.Matrix, params, folder: Path | None = None):
        key = code_cache.digest(
            sp.srepr(W),
            sp.srepr(b),
            sp.srepr(tuple(params)),
            Path(symbolic.__file__).read_bytes(),
            Path(__file__).read_bytes(),
            Path(code_cache.__file__).read_bytes(),
            sp.__version__,
            np.__version__,
        )
        self.folder = (folder or storage.cache_folder("closed_forms")) / key
        self._regimes: dict[str, RegimeLoss] = {}

    @staticmethod
    def regime_id(path: bytes) -> str:
        """The name of the regime with this path (theory.symbolic.regime_path)."""
        return code_cache.digest(path)

    def has(self, regime_id: str) -> bool:
        """Whether the regime is stored, whole."""
        return regime_id in self._regimes or code_cache.read(self.folder / f"{regime_id}.regime") is not None

    def save(self, regime_id: str, regime: RegimeLoss) -> None:
        code_cache.write(
            self.folder / f"{regime_id}.regime", pickle.dumps(regime, protocol=pickle.HIGHEST_PROTOCOL)
        )
        self._regimes[regime_id] = regime

    def regime(self, regime_id: str) -> RegimeLoss:
        if regime_id not in self._regimes:
            payload = code_cache.read(self.folder / f"{regime_id}.regime")
            if payload is None:
                raise FileNotFoundError(f"regime {regime_id} is not in {self.folder} (or is damaged)")
            self._regimes[regime_id] = pickle.loads(payload)
        return self._regimes[regime_id]

    def function(self, regime_id: str, part: str) -> Callable:
        """A regime's numpy function (one of PARTS): executed from its stored code, or lambdified
        and stored. The regime must be in the store."""

        def write():
            regime = self.regime(regime_id)
            return code_cache.lambdify(_arguments(regime, part), PARTS[part](regime))

        return code_cache.stored_function(self.folder / f"{regime_id}.{part}.py", write)

    def operations(self, regime_id: str) -> int:
        """sympy's count of the operations in the regime's loss (stored: it takes a while)."""
        path = self.folder / f"{regime_id}.operations.json"
        payload = code_cache.read(path)
        if payload is None:
            payload = json.dumps(int(sp.count_ops(self.regime(regime_id).expr))).encode()
            code_cache.write(path, payload)
        return int(json.loads(payload))
