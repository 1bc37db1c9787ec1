"""Global minimisation of the exact loss over all of W and b, by multistart L-BFGS.

The loss and its gradient come from theory.compiled_loss (numba), held against theory.loss.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeResult, minimize
from threadpoolctl import threadpool_limits

from theory.compiled_loss import expected_loss_and_grad_many_compiled
from theory.errors import InputError
from theory.loss import check_many, check_max_active
from theory.setup import Setup


@dataclass(frozen=True)
class LossMinimum:
    """Best (W, b) found, its exact loss, and every start's final loss (sorted)."""

    loss: float
    W: np.ndarray
    b: np.ndarray
    start_losses: np.ndarray
    success: bool
    message: str


def minimize_loss(setup: Setup, n_starts: int = 24, seed: int = 0, scale: float = 1.0) -> LossMinimum:
    """Minimise theory.expected_loss over W and b from n_starts random starts.

    Each start is its own L-BFGS-B run (minimize_from), the runs' exact
    evaluations batched. W starts N(0, scale^2), b starts 0.
    """
    if isinstance(n_starts, bool) or not isinstance(n_starts, int) or n_starts < 1:
        raise InputError(f"n_starts = {n_starts!r} is not allowed; it must be an integer >= 1")
    m, n = setup.n_hidden, setup.n_features
    rng = np.random.default_rng(seed)
    return minimize_from(setup, rng.normal(0.0, scale, (n_starts, m, n)), np.zeros((n_starts, n)))


@dataclass(frozen=True)
class LocalMinima:
    """Every start's end point: W (S, m, n), b (S, n), loss (S,) and whether L-BFGS-B converged."""

    W: np.ndarray
    b: np.ndarray
    loss: np.ndarray
    success: np.ndarray
    message: tuple[str, ...]


#: L-BFGS-B's stopping rule for the exact loss: converged to rounding.
EXACT_OPTIONS = {"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-11}


def minimize_each(
    setup: Setup | Sequence[Setup], W, b, max_active: int | None = None, options: dict | None = None
) -> LocalMinima:
    """One L-BFGS-B run per start on the exact loss over all of W and b, the runs' evaluations batched
    (minimize_lockstep). W (S, m, n), b (S, n). setup: one Setup for every start, or one per start (of
    one shape; the starts of many cells minimised together). With max_active, the loss summed over the
    active sets of at most that many features instead (theory.compiled_loss; any number of features).
    options: L-BFGS-B's (default EXACT_OPTIONS)."""
    setups = [setup] * len(W) if isinstance(setup, Setup) else list(setup)
    setup = setups[0]
    W, b = setup.check_parameters(W, b)
    if W.ndim != 3 or b.shape != (len(W), setup.n_features):
        raise InputError(f"W {W.shape} and b {b.shape} must be starts (S, m, n) and (S, n)")
    check_many(setups, W, b, exact=max_active is None)  # before any thread starts
    if max_active is not None:
        max_active = check_max_active(setup, max_active)
    m, n = setup.n_hidden, setup.n_features
    x0 = np.concatenate([W.reshape(len(W), m * n), b], axis=1)

    def unpack(theta):
        theta = np.asarray(theta).reshape(-1, m * n + n)
        return theta[:, : m * n].reshape(-1, m, n), theta[:, m * n :]

    def evaluate(xs, rows):
        W, b = unpack(np.stack(xs))
        cells = [setups[r] for r in rows]
        result = expected_loss_and_grad_many_compiled(cells, W, b, max_active=max_active)
        return result.loss, np.concatenate([result.grad_W.reshape(len(xs), -1), result.grad_b], axis=1)

    runs = minimize_lockstep(evaluate, x0, options=EXACT_OPTIONS if options is None else options)
    W, b = unpack(np.stack([run.x for run in runs]))
    return LocalMinima(
        W=W,
        b=b,
        loss=np.array([run.fun for run in runs]),
        success=np.array([bool(run.success) for run in runs]),
        message=tuple(str(run.message) for run in runs),
    )


def minimize_from(setup: Setup, W, b) -> LossMinimum:
    """Local minimisations of theory.expected_loss over W and b, one L-BFGS-B run per start
    (minimize_each). W (S, m, n) and b (S, n): S starts. Returns the best end point and every start's
    final loss."""
    ends = minimize_each(setup, W, b)
    best = int(np.argmin(ends.loss))
    return LossMinimum(
        loss=float(ends.loss[best]),
        W=ends.W[best].copy(),
        b=ends.b[best].copy(),
        start_losses=np.sort(ends.loss),
        success=bool(ends.success[best]),
        message=ends.message[best],
    )


def best_of_starts(value_and_grad: Callable, starts) -> OptimizeResult:
    """L-BFGS-B on value_and_grad (theta -> (value, gradient)) from each start, tight tolerances; the end
    point of least value (the first of equals)."""
    best = None
    for start in starts:
        result = minimize(
            value_and_grad, start, jac=True, method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12}
        )
        if best is None or result.fun < best.fun:
            best = result
    return best


def minimize_lockstep(
    evaluate: Callable[[list[np.ndarray], np.ndarray], tuple[np.ndarray, list[np.ndarray]]],
    x0,
    bounds=None,
    options: dict | None = None,
) -> list[OptimizeResult]:
    """Independent L-BFGS-B minimisations, one per start, whose evaluations are batched.

    Each start is its own scipy minimisation (its own stopping test, unlike
    one L-BFGS on the summed objective), run in its own thread; a thread that
    needs f(x) waits until every running start has asked, and the last to ask
    evaluates them all in one call: evaluate(xs, rows) -> (values (B,),
    gradients, one per x), rows (B,) being the starts' indices. The exact
    loss costs far less per model in a batch than alone.
    x0: starts (a 2-d array, or a list of 1-d arrays of any lengths);
    bounds: None, or one scipy bounds list per start.
    """
    x0 = [np.asarray(x, dtype=float).ravel() for x in x0]
    bounds = [None] * len(x0) if bounds is None else list(bounds)
    if len(bounds) != len(x0):
        raise InputError(f"{len(bounds)} bounds lists for {len(x0)} starts; give one per start")
    options = {"maxiter": 1000, "ftol": 1e-14, "gtol": 1e-9, "maxcor": 20} | (options or {})
    lock = threading.Condition()  # the calling thread waits on it for a full batch
    state = {"active": len(x0)}
    pending: dict[int, np.ndarray] = {}
    answers: dict[int, object] = {}
    ready = [threading.Event() for _ in x0]  # one per start: only its own answer wakes it

    def objective(row):
        def f(x):
            with lock:
                pending[row] = np.array(x, dtype=float)
                if len(pending) >= state["active"]:
                    lock.notify()
            ready[row].wait()
            ready[row].clear()
            answer = answers.pop(row)
            if isinstance(answer, BaseException):
                raise answer
            return answer

        return f

    results: list = [None] * len(x0)

    def worker(row):
        try:
            results[row] = minimize(
                objective(row), x0[row], jac=True, method="L-BFGS-B", bounds=bounds[row], options=options
            )
        except BaseException as error:
            results[row] = error
        finally:
            with lock:
                state["active"] -= 1
                lock.notify()

    with one_blas_thread():
        threads = [threading.Thread(target=worker, args=(row,), daemon=True) for row in range(len(x0))]
        for thread in threads:
            thread.start()
        # The evaluations run here, in the calling thread: torch computes about
        # half as fast in a thread of its own (no intra-op parallelism there).
        while True:
            with lock:
                while state["active"] and len(pending) < state["active"]:
                    lock.wait()
                if not state["active"]:
                    break
                batch = dict(sorted(pending.items()))
                pending.clear()
            rows = np.array(list(batch))
            try:
                values, grads = evaluate(list(batch.values()), rows)
                replies = {
                    r: (float(values[k]), np.asarray(grads[k], dtype=float)) for k, r in enumerate(rows)
                }
            except BaseException as error:  # every waiting start re-raises it
                replies = dict.fromkeys(rows.tolist(), error)
            answers.update(replies)
            for row in replies:
                ready[row].set()
        for thread in threads:
            thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def one_blas_thread():
    """A context in which BLAS (OpenBLAS, MKL) runs on one thread. The compiled losses run numba threads
    on every core; BLAS threads woken by scipy's L-BFGS-B between evaluations spin-wait on the same cores
    and made each evaluation several times slower (38 ms against 6 ms for theory.sampled's kernel)."""
    return threadpool_limits(limits=1, user_api="blas")


@dataclass(frozen=True)
class GeometryFit:
    """Per cell: the best parameters found for one geometry and their closed-form loss."""

    theta: np.ndarray  # (cells, P)
    loss: np.ndarray  # (cells,)
    gradient_norm: np.ndarray  # (cells,)


def fit_geometry(closed, setup_args: np.ndarray, starts: np.ndarray, iterations: int = 60) -> GeometryFit:
    """Minimise a geometry's closed-form loss at many cells at once, from several starts.

    Damped Newton with the symbolic Hessian (eigenvalues floored so that each
    step descends), an Armijo backtracking line search per cell, and
    projection of norms (parameters named w_*, r_*) onto >= 0. A cell stops
    when its projected gradient vanishes (1e-10 relative), its line search finds
    no descent, or a step gains less than 1e-14 relative.
    closed: theory.geometries.ClosedForm; setup_args: (cells, 2n + 1) as in
    ClosedForm.evaluate; starts: (S, P) or (cells, S, P). Returns the best
    start per cell.
    """
    cells = setup_args.shape[0]
    starts = np.broadcast_to(starts, (cells,) + starts.shape[-2:]) if starts.ndim == 2 else starts
    n_starts, count = starts.shape[1:]
    theta = starts.reshape(cells * n_starts, count).astype(float).copy()
    args = np.repeat(setup_args, n_starts, axis=0)
    nonnegative = closed.geometry.roles() == "norm"
    theta[:, nonnegative] = np.abs(theta[:, nonnegative])
    result = closed.evaluate(theta, args, order=2)
    value, grad, hess, regime = result.value, result.grad, result.hess, result.regime

    def projected(rows):
        g = np.nan_to_num(grad[rows])
        at_bound = (theta[rows][:, nonnegative] <= 0) & (g[:, nonnegative] > 0)
        g[:, nonnegative] = np.where(at_bound, 0.0, g[:, nonnegative])
        return g

    done = np.zeros(len(theta), dtype=bool)
    for _ in range(iterations):
        rows = np.flatnonzero(~done)
        g = projected(rows)
        small = np.linalg.norm(g, axis=1) <= 1e-10 * (1 + np.abs(value[rows]))
        done[rows[small]] = True
        rows, g = rows[~small], g[~small]
        if rows.size == 0:
            break
        eigenvalues, vectors = np.linalg.eigh(np.nan_to_num(hess[rows], nan=0.0, posinf=0.0, neginf=0.0))
        floor = np.maximum(np.abs(eigenvalues), 1e-8 * (1 + np.abs(eigenvalues).max(-1, keepdims=True)))
        step = -np.einsum("cij,cj,ckj,ck->ci", vectors, 1.0 / floor, vectors, g)
        slope = np.einsum("ci,ci->c", g, step)
        scale = np.ones(rows.size)
        accepted = np.zeros(rows.size, dtype=bool)
        candidate = theta[rows].copy()
        for _ in range(30):
            trying = np.flatnonzero(~accepted)
            if trying.size == 0:
                break
            trial = theta[rows[trying]] + scale[trying, None] * step[trying]
            trial[:, nonnegative] = np.maximum(trial[:, nonnegative], 0.0)
            trial_value = closed.evaluate(trial, args[rows[trying]], hint=regime[rows[trying]]).value
            good = np.isfinite(trial_value) & (
                trial_value <= value[rows[trying]] + 1e-4 * scale[trying] * np.minimum(slope[trying], 0.0)
            )
            candidate[trying[good]] = trial[good]
            accepted[trying[good]] = True
            scale[trying[~good]] *= 0.5
        done[rows[~accepted]] = True
        moved = rows[accepted]
        if moved.size == 0:
            continue
        theta[moved] = candidate[accepted]
        before = value[moved].copy()
        result = closed.evaluate(theta[moved], args[moved], order=2, hint=regime[moved])
        value[moved], grad[moved], hess[moved], regime[moved] = (
            result.value,
            result.grad,
            result.hess,
            result.regime,
        )
        done[moved[before - value[moved] <= 1e-14 * np.abs(before)]] = True
    loss = np.where(np.isfinite(value), value, np.inf).reshape(cells, n_starts)
    best = np.argmin(loss, axis=1)
    pick = np.arange(cells) * n_starts + best
    return GeometryFit(
        theta=theta[pick], loss=value[pick], gradient_norm=np.linalg.norm(projected(pick), axis=1)
    )
