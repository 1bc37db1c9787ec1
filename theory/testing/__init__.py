"""Check your own derivation: property-based tests of claimed losses and optima, against the exact loss.

    from theory.testing import check_loss, check_geometry_loss, check_optimum, strategies

- check_loss(f, n_features, n_hidden, where=...): f(setup, W, b), a claimed
  expected loss, against theory.expected_loss (and Monte Carlo if asked) on
  cases hypothesis draws inside `where`; a disagreement is shrunk to a small
  case and printed as a line of Python.
- check_geometry_loss(loss, geometry, where=...): the same for a loss written
  in a geometry's parameters, as a function or a sympy expression
  (symbols(geometry) gives the names).
- check_optimum(setup, W, b): stationary, no descent, not beaten by the
  catalogue or a global search.
- loss_scale(setup): the loss of W = 0, b = 0, the scale the exact loss is
  accurate to (about 1e-15 of it): tolerances for your own comparisons.
- strategies: hypothesis strategies for setups, models (W, b) with the hard
  cases, and geometries with their parameters, for your own @given tests.

Needs hypothesis: pip install "tms-dropout[testing]". docs/testing.md has worked examples.
"""

try:
    import hypothesis  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        'theory.testing needs hypothesis; install it with: pip install "tms-dropout[testing]"'
    ) from error

from theory.testing import strategies
from theory.testing.cases import Case
from theory.testing.loss_check import (
    LossCheck,
    LossMismatch,
    check_geometry_loss,
    check_loss,
    loss_scale,
    symbols,
)
from theory.testing.optimum_check import Better, OptimumCheck, OptimumRejected, check_optimum

__all__ = [
    "Better",
    "Case",
    "LossCheck",
    "LossMismatch",
    "OptimumCheck",
    "OptimumRejected",
    "check_geometry_loss",
    "check_loss",
    "loss_scale",
    "check_optimum",
    "strategies",
    "symbols",
]
