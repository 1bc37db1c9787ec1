"""check_loss and check_geometry_loss: hold a claimed expected loss against theory.expected_loss.

Cases are drawn by hypothesis (theory.testing.strategies) inside the
claim's stated assumptions (`where`); the claim is compared with the exact
loss, and with a Monte Carlo estimate if asked. On a disagreement hypothesis
shrinks the case to a small one, which is reported as a line of Python that
rebuilds it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import FailedHealthCheck, Unsatisfiable

from theory.errors import InputError
from theory.geometries import Geometry
from theory.loss import MAX_EXACT_FEATURES, expected_loss
from theory.montecarlo import monte_carlo_loss
from theory.setup import Setup
from theory.symbolic import density_symbols, importance_symbols, p_symbol
from theory.testing import strategies
from theory.testing.cases import Case

#: How many standard errors of the Monte Carlo estimate a claim may be off before it fails (a false
#: alarm about once in 1.7 million cases).
MONTE_CARLO_Z = 5.0

IMPORTS = "import numpy as np; from theory import Setup, expected_loss"


@dataclass(frozen=True)
class LossCheck:
    """What check_loss tried: cases compared (inside `where`), drawn cases outside it, the worst error."""

    cases: int
    rejected: int
    worst_relative_error: float  # |f - L| / max(|L|, L0, abs / rel), L0 the zero model's loss (loss_scale)
    worst_case: Case | None
    monte_carlo_cases: int
    worst_z: float  # largest |claimed - Monte Carlo| in standard errors (0 without Monte Carlo)
    reference: str  # what the claim was compared with

    def __str__(self) -> str:
        lines = [f"{self.cases} cases agree with {self.reference}"]
        if self.worst_case is not None and not math.isnan(self.worst_relative_error):
            lines[0] += f" (worst relative error {self.worst_relative_error:.2g})"
        if self.monte_carlo_cases:
            lines.append(
                f"{self.monte_carlo_cases} with Monte Carlo (worst {self.worst_z:.2f} standard errors)"
            )
        if self.rejected:
            lines.append(f"{self.rejected} drawn cases were outside `where`")
        return "; ".join(lines)


class LossMismatch(AssertionError):
    """The claim disagrees with the reference (or raised) at `case`."""

    def __init__(self, message: str, case: Case):
        super().__init__(message)
        self.case = case


@dataclass
class _Tally:
    cases: int = 0
    rejected: int = 0
    worst: float = 0.0
    worst_case: Case | None = None
    monte_carlo: int = 0
    worst_z: float = 0.0


def _call(function, case: Case, role: str, args: tuple, kwargs: dict):
    try:
        return function(*args, **kwargs)
    except Exception as error:  # the claim's own failure is a finding, reported at its smallest case
        raise LossMismatch(
            f"{role} raised {type(error).__name__}: {error}, at the smallest case found:\n"
            f"    {IMPORTS}\n    {case.code()}",
            case,
        ) from error


def _as_float(value, case: Case) -> float:
    try:
        return float(np.asarray(value, dtype=float))
    except (TypeError, ValueError) as error:
        raise LossMismatch(f"the claimed loss {value!r} is not one number ({error})", case) from None


def loss_scale(setup: Setup) -> float:
    """sum_i I_i E[x_i^2], the loss of W = 0, b = 0: the scale the exact loss is accurate to (about 1e-15
    of it), so errors are relative to the larger of it and |L|."""
    return float(setup.importance_array @ setup.density) / 3


def _compare(claimed: float, case: Case, tally: _Tally, rel: float, abs_tol: float, monte_carlo) -> None:
    setup, W, b = case.setup, case.W, case.b
    lines = []
    if setup.n_features <= MAX_EXACT_FEATURES:
        exact = float(expected_loss(setup, W, b))
        error = abs(claimed - exact)
        scale = max(abs(exact), loss_scale(setup))
        # relative to the scale, or to abs / rel where that is larger (where abs is what allows it)
        relative = error / max(scale, abs_tol / rel) if rel > 0 else error / max(scale, 1e-300)
        if not error <= rel * scale + abs_tol:  # also catches NaN
            share = f"{error / abs(exact):.3g} of it" if exact else "it is 0"
            lines = [
                f"the claimed loss differs from theory.expected_loss by {error:.3g} ({share}; allowed: "
                f"{rel:g} of max(|L|, L0 = {scale:.3g}) + {abs_tol:g}) at the smallest case found:",
                f"    claimed {claimed!r}",
                f"    exact   {exact!r}",
            ]
        elif relative >= tally.worst:
            tally.worst, tally.worst_case = relative, case
    if not lines and monte_carlo:
        estimate = monte_carlo_loss(setup, W, b, n_samples=int(monte_carlo), seed=case.digest())
        tally.monte_carlo += 1
        error = abs(claimed - estimate.mean)
        allowed = MONTE_CARLO_Z * estimate.stderr + 1e-9 * abs(estimate.mean) + abs_tol
        z = error / estimate.stderr if estimate.stderr else (0.0 if error <= allowed else math.inf)
        if not error <= allowed:
            lines = [
                f"the claimed loss is {z:.3g} standard errors from a Monte Carlo estimate "
                f"({estimate.n_samples} samples; allowed {MONTE_CARLO_Z:g}) at the smallest case found:",
                f"    claimed     {claimed!r}",
                f"    Monte Carlo {estimate.mean!r} +- {estimate.stderr:.3g}",
            ]
        tally.worst_z = max(tally.worst_z, z)
    if lines:
        if case.params:
            lines.append(
                f"    ({case.geometry!r} at {', '.join(f'{k} = {v!r}' for k, v in case.params.items())})"
            )
        lines += [f"    {IMPORTS}", f"    {case.code()}"]
        raise LossMismatch("\n".join(lines), case)
    tally.cases += 1


def _run(cases, f, where, arguments, *, examples, rel, abs_tol, monte_carlo, seed, exact: bool) -> LossCheck:
    """Draw cases, keep those where `where` holds, compare f with the reference; arguments(case) gives
    (args, kwargs) for f and where."""
    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 1:
        raise InputError(f"examples = {examples!r} is not allowed; it must be an integer >= 1")
    if monte_carlo is not None and (
        isinstance(monte_carlo, bool) or not isinstance(monte_carlo, int) or monte_carlo < 2
    ):
        raise InputError(f"monte_carlo = {monte_carlo!r} is not allowed; give a number of samples >= 2")
    if not exact and not monte_carlo:
        raise InputError(
            f"the exact loss takes at most {MAX_EXACT_FEATURES} features; for more, give monte_carlo=N "
            "(samples per case) to compare with a Monte Carlo estimate"
        )
    tally = _Tally()

    def claim(case: Case) -> float:
        args, kwargs = arguments(case)
        return _as_float(_call(f, case, "the claimed loss", args, kwargs), case)

    def admit(case: Case) -> bool:
        return where is None or _call(where, case, "where", *arguments(case))

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        report_multiple_bugs=False,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(cases)
    def run(case: Case) -> None:
        inside = admit(case)
        if not inside:
            tally.rejected += 1
        assume(bool(inside))
        _compare(claim(case), case, tally, rel, abs_tol, monte_carlo)

    if seed is not None:
        run = hypothesis_seed(seed)(run)
    try:
        run()
    except LossMismatch as mismatch:
        raise LossMismatch(str(mismatch), mismatch.case) from None
    except (Unsatisfiable, FailedHealthCheck) as error:
        raise InputError(
            f"`where` rejected almost every drawn case ({tally.rejected} rejected, {tally.cases} accepted), "
            "so hypothesis gave up. Draw inside the assumptions instead: setups= a strategy of Setups, "
            "models= a function setup -> strategy of (W, b) (st.just((W, b)) for one model); for a family "
            "of W, b in a few parameters, check_geometry_loss with a Geometry "
            f"[{type(error).__name__}]"
        ) from None
    reference = "theory.expected_loss" if exact else "Monte Carlo"
    return LossCheck(
        cases=tally.cases,
        rejected=tally.rejected,
        worst_relative_error=tally.worst if exact else math.nan,
        worst_case=tally.worst_case,
        monte_carlo_cases=tally.monte_carlo,
        worst_z=tally.worst_z,
        reference=reference,
    )


def _range(value, name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    try:
        low, high = (int(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(
            f"{name} = {value!r} is not allowed; give an int >= 1 or a range (low, high)"
        ) from None
    if not 1 <= low <= high:
        raise InputError(f"{name} = {value!r} is not allowed; give an int >= 1 or a range (low, high)")
    return low, high


def check_loss(
    f: Callable[[Setup, np.ndarray, np.ndarray], float],
    n_features: int | tuple[int, int],
    n_hidden: int | tuple[int, int],
    *,
    where: Callable[[Setup, np.ndarray, np.ndarray], bool] | None = None,
    examples: int = 100,
    setups: st.SearchStrategy[Setup] | None = None,
    models: Callable[[Setup], st.SearchStrategy] | None = None,
    monte_carlo: int | None = None,
    rel: float = 1e-9,
    abs: float = 1e-13,
    seed: int | None = None,
) -> LossCheck:
    """Hold f(setup, W, b), a claimed expected loss, against theory.expected_loss on drawn cases.

    n_features, n_hidden: an int or a range (low, high). Cases (setup, W, b)
    come from setups (default strategies.setups(n_features, n_hidden)) and
    models(setup) (default strategies.models: hard cases included); only
    those with where(setup, W, b) true are compared. A claim passes a case
    if |f - L| <= rel max(|L|, L0) + abs, L0 = sum_i I_i E[x_i^2] the loss
    of the zero model (the exact loss is accurate to about 1e-15 of it, not
    of a far smaller L). With monte_carlo=N each case is also
    compared with an N-sample Monte Carlo estimate (within 5 standard
    errors); beyond 12 features that is the only reference.

    Returns a LossCheck (cases compared, worst error). On a disagreement, or
    if f raises, raises LossMismatch (an AssertionError) at the smallest case
    hypothesis finds, printed as a line of Python that rebuilds it. seed:
    None draws new cases each run (under pytest, replay one with
    --hypothesis-seed); an int draws the same cases every run.
    """
    n_range, m_range = _range(n_features, "n_features"), _range(n_hidden, "n_hidden")
    setups = strategies.setups(n_range, m_range) if setups is None else setups
    models = strategies.models if models is None else models

    @st.composite
    def cases(draw) -> Case:
        setup = draw(setups)
        if not (n_range[0] <= setup.n_features <= n_range[1] and m_range[0] <= setup.n_hidden <= m_range[1]):
            raise InputError(
                f"setups drew ({setup.n_features}, {setup.n_hidden}), outside n_features = {n_features}, "
                f"n_hidden = {n_hidden}"
            )
        W, b = draw(models(setup))
        return Case(setup, np.asarray(W, dtype=float), np.asarray(b, dtype=float))

    return _run(
        cases(),
        f,
        where,
        lambda case: ((case.setup, case.W.copy(), case.b.copy()), {}),
        examples=examples,
        rel=rel,
        abs_tol=abs,
        monte_carlo=monte_carlo,
        seed=seed,
        exact=n_range[1] <= MAX_EXACT_FEATURES,
    )


def symbols(geometry: Geometry) -> dict[str, sp.Symbol]:
    """The symbols a geometry's loss is written in, by name: its parameters (w_0, b_0, r_..., phi_...),
    density_i and importance_i per feature, and p."""
    n = geometry.n_features
    every = (*geometry.parameters(), *density_symbols(n), *importance_symbols(n), p_symbol)
    return {s.name: s for s in every}


def _sympy_function(expr, geometry: Geometry, role: str):
    """A sympy expression in symbols(geometry) (matched by name) as f(setup, **params)."""
    names = symbols(geometry)
    unknown = sorted(s.name for s in sp.sympify(expr).free_symbols if s.name not in names)
    if unknown:
        raise InputError(
            f"{role} uses {', '.join(unknown)}, not a symbol of geometry {geometry.name!r}; "
            f"allowed: {', '.join(names)}"
        )
    # the user's own symbols (any assumptions), matched by name, else the geometry's
    own = {s.name: s for s in sp.sympify(expr).free_symbols}
    args = [own.get(name, symbol) for name, symbol in names.items()]
    compiled = sp.lambdify(args, expr, "numpy")
    params = [t.name for t in geometry.parameters()]

    def function(setup: Setup, **values):
        return compiled(*(values[k] for k in params), *setup.density, *setup.importance, setup.p)

    return function


def check_geometry_loss(
    loss,
    geometry: Geometry,
    *,
    where=None,
    examples: int = 100,
    setups: st.SearchStrategy[Setup] | None = None,
    parameters: Callable[[Geometry], st.SearchStrategy] | None = None,
    monte_carlo: int | None = None,
    rel: float = 1e-9,
    abs: float = 1e-13,
    seed: int | None = None,
) -> LossCheck:
    """Hold a geometry's claimed loss, in its parameters, against theory.expected_loss of its (W, b).

    loss: f(setup, **params) -> float, params by name (geometry.parameters():
    w_0, b_0, ...), or a sympy expression in symbols(geometry) (the
    parameters, density_i, importance_i, p; matched by name). where: the
    same kind of callable returning bool, or a sympy condition. Parameters
    are drawn by parameters(geometry) (default strategies.geometry_models),
    setups as in check_loss (default: the geometry's shape). Otherwise as
    check_loss; the counterexample also names the parameters.
    """
    if not isinstance(geometry, Geometry):
        raise InputError(f"geometry must be a theory.geometries.Geometry, got {type(geometry).__name__}")
    n, m = geometry.n_features, geometry.n_hidden
    setups = strategies.setups(n, m) if setups is None else setups
    parameters = strategies.geometry_models if parameters is None else parameters
    f = _sympy_function(loss, geometry, "loss") if isinstance(loss, sp.Basic) else loss
    where = _sympy_function(where, geometry, "where") if isinstance(where, sp.Basic) else where

    @st.composite
    def cases(draw) -> Case:
        setup = draw(setups)
        if (setup.n_features, setup.n_hidden) != (n, m):
            raise InputError(f"setups drew ({setup.n_features}, {setup.n_hidden}); geometry is ({n}, {m})")
        model = draw(parameters(geometry))
        return Case(setup, model.W, model.b, dict(model.params), geometry.name)

    return _run(
        cases(),
        f,
        where,
        lambda case: ((case.setup,), dict(case.params)),
        examples=examples,
        rel=rel,
        abs_tol=abs,
        monte_carlo=monte_carlo,
        seed=seed,
        exact=n <= MAX_EXACT_FEATURES,
    )
