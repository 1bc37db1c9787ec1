"""check_optimum: is a claimed optimum (W, b) of a setup really optimal?

Three tests, each reported:

1. stationary: the exact gradient is zero within tolerance. The loss has a
   kink at b_i = 0 (theory.loss.expected_loss_and_grad), so there both
   one-sided derivatives are used: neither side may slope down.
2. no descent: L-BFGS on the exact loss, started at the claim and at small
   random perturbations of it (which leave a saddle), does not get lower.
3. not beaten: neither the catalogue's optimum (theory.optimal) nor a
   multistart global search (theory.minimize_loss) is lower.

"Lower" means by more than rel |L| + abs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.diagram import optimal
from theory.errors import InputError
from theory.loss import MAX_EXACT_FEATURES, expected_loss_and_grad
from theory.optimize import minimize_from, minimize_loss
from theory.setup import Setup
from theory.testing.cases import Case

#: Where b_i counts as sitting on the kink at 0, and the offset to either side that gives its slopes.
KINK = 1e-9
_SIDE = 1e-8


@dataclass(frozen=True)
class Better:
    """A model lower than the claimed optimum: where it came from, its exact loss, its (W, b)."""

    source: str
    loss: float
    W: np.ndarray
    b: np.ndarray


@dataclass(frozen=True)
class OptimumCheck:
    """What check_optimum found. ok: stationary and beaten by nothing."""

    claim: Case
    loss: float
    slope: float  # largest downhill slope along a coordinate (|gradient| where smooth)
    gradient_tol: float
    beaten_by: tuple[Better, ...]
    checks: tuple[str, ...]  # what was tried
    skipped: tuple[str, ...]  # what could not be tried, and why

    @property
    def stationary(self) -> bool:
        return self.slope <= self.gradient_tol

    @property
    def ok(self) -> bool:
        return self.stationary and not self.beaten_by

    def __str__(self) -> str:
        verdict = "accepted" if self.ok else "rejected"
        lines = [
            f"claimed optimum {verdict}: exact loss {self.loss!r}; largest downhill slope {self.slope:.3g} "
            f"(allowed {self.gradient_tol:g}); tried: {', '.join(self.checks)}"
        ]
        for better in self.beaten_by:
            lines.append(
                f"  beaten by {better.source}: loss {better.loss!r} ({better.loss - self.loss:+.3g}) at "
                f"W = {np.array2string(better.W, precision=6)}, b = {np.array2string(better.b, precision=6)}"
            )
        lines += [f"  not tried: {reason}" for reason in self.skipped]
        lines.append(f"  the claim: {self.claim.code()}")
        return "\n".join(lines)


class OptimumRejected(AssertionError):
    """The claimed optimum is not stationary or is beaten; `report` says by what."""

    def __init__(self, report: OptimumCheck):
        super().__init__(str(report))
        self.report = report


def _slope(setup: Setup, W: np.ndarray, b: np.ndarray, grads) -> float:
    """Largest downhill slope along any coordinate of (W, b), whose exact gradient is grads; one-sided on
    b's kink at 0."""
    slopes_b = np.abs(grads.grad_b)
    for i in np.flatnonzero(np.abs(b) <= KINK):
        # the loss is continuous, its derivative in b_i jumps at 0: down-slope to the left is
        # the left derivative, down-slope to the right is minus the right derivative
        left, right = b.copy(), b.copy()
        left[i], right[i] = -_SIDE, _SIDE
        down_left = expected_loss_and_grad(setup, W, left).grad_b[i]
        down_right = -expected_loss_and_grad(setup, W, right).grad_b[i]
        slopes_b[i] = max(down_left, down_right, 0.0)
    slope = max(np.abs(grads.grad_W).max(), slopes_b.max())
    return float(slope)


def check_optimum(
    setup: Setup,
    W,
    b,
    *,
    gradient_tol: float = 1e-6,
    rel: float = 1e-7,
    abs: float = 1e-12,
    perturbations: int = 8,
    catalogue: bool = True,
    starts: int = 24,
    seed: int = 0,
) -> OptimumCheck:
    """Check that (W, b) is an optimum of setup's exact loss: stationary, no descent, not beaten.

    perturbations: local searches from the claim moved by 1e-3 (relative) in
    random directions; catalogue: compare with theory.optimal(setup) where
    the catalogue applies; starts: random starts of the global search
    (0: none). Returns an OptimumCheck if the claim passes; raises
    OptimumRejected (an AssertionError, its report attached) if not.
    """
    if not isinstance(setup, Setup):
        raise InputError(f"check_optimum needs a theory.Setup, got {type(setup).__name__}")
    if setup.n_features > MAX_EXACT_FEATURES:
        raise InputError(
            f"check_optimum uses the exact loss, which takes at most {MAX_EXACT_FEATURES} features"
        )
    W, b = setup.check_parameters(W, b)
    if W.ndim != 2 or b.ndim != 1:
        raise InputError(f"check_optimum takes one model: W (m, n) and b (n,); got {W.shape} and {b.shape}")
    for name, value in (("perturbations", perturbations), ("starts", starts)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{name} = {value!r} is not allowed; it must be an integer >= 0")
    grads = expected_loss_and_grad(setup, W, b)
    loss = float(grads.loss)
    margin = rel * np.abs(loss) + abs
    beaten, checks, skipped = [], ["gradient"], []

    def record(source: str, other_loss: float, other_W, other_b) -> None:
        if other_loss < loss - margin:
            beaten.append(Better(source, float(other_loss), np.asarray(other_W), np.asarray(other_b)))

    rng = np.random.default_rng(seed)
    W0 = W[None] + 1e-3 * (1 + np.abs(W)) * rng.normal(size=(perturbations,) + W.shape)
    b0 = b[None] + 1e-3 * (1 + np.abs(b)) * rng.normal(size=(perturbations,) + b.shape)
    local = minimize_from(setup, np.concatenate([W[None], W0]), np.concatenate([b[None], b0]))
    checks.append(f"local descent from the claim and {perturbations} perturbations")
    record("local descent from the claim", local.loss, local.W, local.b)
    if catalogue:
        try:
            best = optimal(setup)
        except InputError as error:
            skipped.append(f"the catalogue ({error})")
        else:
            checks.append("the catalogue")
            record(f"the catalogue's {best.name!r}", best.loss, best.W, best.b)
    if starts:
        found = minimize_loss(setup, n_starts=starts, seed=seed)
        checks.append(f"a global search from {starts} random starts")
        record(f"a global search ({starts} random starts)", found.loss, found.W, found.b)
    report = OptimumCheck(
        claim=Case(setup, W, b),
        loss=loss,
        slope=_slope(setup, W, b, grads),
        gradient_tol=gradient_tol,
        beaten_by=tuple(beaten),
        checks=tuple(checks),
        skipped=tuple(skipped),
    )
    if not report.ok:
        raise OptimumRejected(report)
    return report
