"""Which geometry is optimal: one setup (optimal), or a whole grid (phase_diagram).

Every catalogue geometry's closed-form loss is minimised over its free
parameters at every cell at once (theory.optimize.fit_geometry: damped
Newton with the symbolic Hessian, a few fixed starts per geometry, and the
previous p's optimum as a warm start). Phase = the geometry of least loss;
the runner-up and the margin are kept. The winner's (W, b) is then scored by
the exact loss (theory.expected_loss) as a check on the closed forms, and
completeness() minimises the exact loss over all of W and b at sample cells
to find phases the catalogue is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import xarray as xr

from theory.errors import InputError
from theory.geometries import ClosedForm, Geometry, catalogue, geometry, setup_args
from theory.loss import expected_loss
from theory.optimize import fit_geometry, minimize_loss
from theory.progress import Progress
from theory.setup import Setup

_CLOSED: dict[Geometry, ClosedForm] = {}


def closed_form(geometry: Geometry) -> ClosedForm:
    """One ClosedForm per geometry per process, so derived regimes are reused."""
    if geometry not in _CLOSED:
        _CLOSED[geometry] = ClosedForm(geometry)
    return _CLOSED[geometry]


def starts(geometry: Geometry) -> np.ndarray:
    """Fixed starting points (S, P): default, shorter and longer norms, a positive bias, uneven, rotated."""
    base = geometry.start()
    names = [t.name.split("_")[0] for t in geometry.parameters()]
    norm = np.array([n in ("w", "r") for n in names])
    bias = np.array([n == "b" for n in names])
    angle = np.array([n == "phi" for n in names])
    variants = [base, np.where(norm, 0.5, base), np.where(norm, 1.3, base), np.where(bias, 0.1, base)]
    # Dense optima put the biases near the features' means (0.5 when always active).
    variants.append(np.where(norm, 0.7, np.where(bias, 0.4, base)))
    if norm.sum() > 1:  # unequal norms, biases of both signs: asymmetric optima
        uneven = base.copy()
        uneven[norm] = np.linspace(1.0, 0.4, norm.sum())
        uneven[bias] = 0.2 * (-1.0) ** np.arange(bias.sum())
        variants.append(uneven)
        uneven = uneven.copy()
        uneven[bias] = np.linspace(0.2, 0.5, bias.sum())
        variants.append(uneven)
    if angle.any():
        variants.append(np.where(angle, np.pi / 4, base))
    return np.unique(np.array(variants), axis=0)


@dataclass(frozen=True)
class OptimalGeometry:
    """The catalogue's best geometry for one setup, with the runner-up."""

    name: str
    params: dict[str, float]
    W: np.ndarray
    b: np.ndarray
    loss: float  # exact loss of (W, b), theory.expected_loss
    closed_form_loss: float
    runner_up: str
    runner_up_loss: float

    @property
    def margin(self) -> float:
        return self.runner_up_loss - self.closed_form_loss


#: Geometries within this relative loss of the least are tied: the families
#: are nested (an antipodal pair with one norm at 0 is a dedicated feature),
#: so the phase is the tied geometry with the fewest parameters.
TIE = 1e-9


def _rank(losses: np.ndarray, param_counts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phase, runner-up (indices) and margin from losses (..., G); a failed (NaN) fit never wins."""
    losses = np.where(np.isfinite(losses), losses, np.inf)
    best = losses.min(-1, keepdims=True)
    tied = losses <= best * (1 + TIE) + 1e-15
    complexity = np.where(tied, np.asarray(param_counts, dtype=float), np.inf)
    phase = np.argmin(complexity, axis=-1)
    others = np.where(tied, np.inf, losses)
    runner_up = np.argmin(others, axis=-1)
    margin = np.take_along_axis(others, runner_up[..., None], -1)[..., 0] - best[..., 0]
    return phase, runner_up, margin


def _fit_all(geometries, args: np.ndarray, previous: dict | None = None) -> dict[str, object]:
    fits = {}
    for g in geometries:
        fixed = starts(g)
        cells = args.shape[0]
        all_starts = np.broadcast_to(fixed, (cells,) + fixed.shape)
        if previous is not None and g.name in previous:
            all_starts = np.concatenate([all_starts, previous[g.name].theta[:, None, :]], axis=1)
        fits[g.name] = fit_geometry(closed_form(g), args, all_starts)
    return fits


def optimal(setup: Setup, geometries: tuple[Geometry, ...] | None = None) -> OptimalGeometry:
    """The catalogue geometry of least loss for one setup, its parameters, and the runner-up."""
    geometries = catalogue(setup.n_features, setup.n_hidden) if geometries is None else geometries
    if len(geometries) < 2:
        raise InputError("optimal needs at least two geometries to compare")
    fits = _fit_all(geometries, setup_args(setup)[None, :])
    losses = np.array([fits[g.name].loss[0] for g in geometries])
    phase, runner_up, _ = _rank(losses, [len(g.parameters()) for g in geometries])
    best, second = geometries[int(phase)], geometries[int(runner_up)]
    theta = fits[best.name].theta[0]
    W, b = closed_form(best).numeric_W_b(theta)
    return OptimalGeometry(
        name=best.name,
        params={t.name: float(v) for t, v in zip(best.parameters(), theta, strict=True)},
        W=W,
        b=b,
        loss=float(expected_loss(setup, W, b)),
        closed_form_loss=float(fits[best.name].loss[0]),
        runner_up=second.name,
        runner_up_loss=float(fits[second.name].loss[0]),
    )


def check_grid(
    name: str, values: np.ndarray, low: float, high: float, low_open: bool = False, high_open: bool = False
) -> None:
    """One clear error for an empty grid or one with values outside [low, high] (ends open as asked)."""
    if values.ndim != 1 or values.size == 0:
        raise InputError(f"{name} grid is empty; give at least one value")
    below = values.min() <= low if low_open else values.min() < low
    above = values.max() >= high if high_open else values.max() > high
    if not np.all(np.isfinite(values)) or below or above:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise InputError(f"{name} grid has values outside the allowed range {interval}")


def with_exact_minimum(ds: xr.Dataset, minimum: np.ndarray, tolerance: float) -> xr.Dataset:
    """ds with `exact_minimum` (the exact loss minimised over all W, b; NaN where not sampled) and
    `missing_phase` (that minimum below the catalogue's best by more than tolerance, relative)."""
    out = ds.copy()
    out["exact_minimum"] = (
        ds.optimal_loss.dims,
        minimum,
        {"description": "least exact loss over all W, b (multistart L-BFGS-B); NaN where not sampled"},
    )
    gap = (out.optimal_loss - out.exact_minimum) / np.maximum(out.exact_minimum, 1e-300)
    out["missing_phase"] = gap > tolerance
    out["missing_phase"].attrs["description"] = (
        f"exact minimum below the catalogue's best by > {tolerance} relative"
    )
    return out


def _grid_args(n, density, importance, p) -> np.ndarray:
    """Setup columns for cells: density (C,), importance (C, n), p scalar."""
    cells = len(density)
    return np.concatenate([np.repeat(density[:, None], n, 1), importance, np.full((cells, 1), p)], axis=1)


def phase_diagram(
    n_features: int,
    n_hidden: int,
    density,
    ratio,
    p,
    geometries: tuple[Geometry, ...] | None = None,
    check_cells: int = 100,
    seed: int = 0,
    progress=None,
) -> xr.Dataset:
    """Optimal geometry over (p, density, r): importance (1, ..., 1, r), the last feature's relative.

    Returns a Dataset with dims p, density, r (and geometry, hidden, feature,
    param): per-geometry optimised loss, phase (index into geometry), runner-up,
    margin, the optimum's W and b, and at check_cells random cells per p the
    exact loss of the optimum (a check on the closed forms; NaN elsewhere).
    progress: None (a bar on a terminal, else a line every ~10 s), False, or
    a theory.progress.Progress that counts cells.
    """
    density = np.asarray(density, dtype=float)
    ratio = np.asarray(ratio, dtype=float)
    ps = np.asarray(p, dtype=float)
    check_grid("density", density, 0.0, 1.0)
    check_grid("r", ratio, 0.0, np.inf)
    check_grid("p", ps, 0.0, 1.0, high_open=True)
    geometries = catalogue(n_features, n_hidden) if geometries is None else tuple(geometries)
    names = [g.name for g in geometries]
    D, R = np.meshgrid(density, ratio, indexing="ij")
    importance = np.ones((D.size, n_features))
    importance[:, -1] = R.ravel()
    param_counts = [len(g.parameters()) for g in geometries]
    max_params = max(param_counts)
    shape = (len(ps), len(density), len(ratio))
    losses = np.empty(shape + (len(geometries),))
    theta = np.full(shape + (len(geometries), max_params), np.nan)
    W_opt = np.empty(shape + (n_hidden, n_features))
    b_opt = np.empty(shape + (n_features,))
    exact = np.full(shape, np.nan)
    rng = np.random.default_rng(seed)
    previous = None
    with Progress.of(progress, len(ps) * D.size, "phase diagram", "cell") as bar:
        for k, p_value in enumerate(ps):
            args = _grid_args(n_features, D.ravel(), importance, p_value)
            fits = _fit_all(geometries, args, previous)
            previous = fits
            for j, g in enumerate(geometries):
                losses[k, ..., j] = fits[g.name].loss.reshape(shape[1:])
                theta[k, ..., j, : len(g.parameters())] = fits[g.name].theta.reshape(shape[1:] + (-1,))
            phase = _rank(losses[k], param_counts)[0].ravel()
            for j, g in enumerate(geometries):
                cells = np.flatnonzero(phase == j)
                if cells.size == 0:
                    continue
                W_cells, b_cells = _numeric_many(closed_form(g), fits[g.name].theta[cells])
                W_opt[k].reshape(-1, n_hidden, n_features)[cells] = W_cells
                b_opt[k].reshape(-1, n_features)[cells] = b_cells
            for c in rng.choice(D.size, size=min(check_cells, D.size), replace=False):
                setup = Setup(
                    n_features, n_hidden, sparsity=1 - D.ravel()[c], importance=importance[c], p=p_value
                )
                exact.reshape(len(ps), -1)[k, c] = expected_loss(
                    setup, W_opt[k].reshape(-1, n_hidden, n_features)[c], b_opt[k].reshape(-1, n_features)[c]
                )
            bar.update(D.size)
    phase, runner_up, margin = _rank(losses, param_counts)
    ds = xr.Dataset(
        {
            "loss": (
                ("p", "density", "r", "geometry"),
                losses,
                {
                    "description": "each geometry's closed-form loss at its optimised parameters",
                    "convention": "sum over features, importance-weighted",
                },
            ),
            "phase": (
                ("p", "density", "r"),
                phase,
                {
                    "description": "index into geometry: the least-loss geometry (ties within "
                    f"{TIE} relative go to the one with fewest parameters)"
                },
            ),
            "runner_up": (
                ("p", "density", "r"),
                runner_up,
                {"description": "least-loss geometry not tied with the phase"},
            ),
            "margin": (
                ("p", "density", "r"),
                margin,
                {"description": "runner-up's loss minus the optimum's"},
            ),
            "optimal_loss": (("p", "density", "r"), losses.min(-1)),
            "exact_loss": (
                ("p", "density", "r"),
                exact,
                {
                    "description": "theory.expected_loss of the optimal (W, b) at sampled cells (NaN "
                    "elsewhere): a check on the closed forms"
                },
            ),
            "theta": (
                ("p", "density", "r", "geometry", "param"),
                theta,
                {"description": "optimised parameters; names per geometry in attrs['parameters']"},
            ),
            "W": (("p", "density", "r", "hidden", "feature"), W_opt),
            "b": (("p", "density", "r", "feature"), b_opt),
        },
        coords={
            "p": ps,
            "density": density,
            "r": ratio,
            "geometry": names,
            "param": np.arange(max_params),
            "hidden": np.arange(n_hidden),
            "feature": np.arange(n_features),
        },
        attrs={
            "kind": "tms-dropout phase diagram",
            "n_features": n_features,
            "n_hidden": n_hidden,
            "importance": "1 for every feature but the last, whose importance is r",
            "parameters": json.dumps({g.name: [t.name for t in g.parameters()] for g in geometries}),
        },
    )
    ds["density"].attrs["description"] = "probability that a feature is non-zero, 1 - S"
    ds["r"].attrs["description"] = "relative importance of the last feature"
    return ds


def _numeric_many(closed: ClosedForm, thetas: np.ndarray):
    pairs = [closed.numeric_W_b(t) for t in thetas]
    return np.array([W for W, _ in pairs]), np.array([b for _, b in pairs])


def completeness(
    ds: xr.Dataset,
    cells_per_p: int = 10,
    n_starts: int = 16,
    seed: int = 0,
    tolerance: float = 1e-6,
    progress: bool | None = None,
) -> xr.Dataset:
    """Minimise the exact loss over all of W and b at sample cells; flag where it beats the catalogue.

    Adds `exact_minimum` (NaN where not sampled) and `missing_phase`
    (exact minimum below the catalogue's best by more than tolerance, relative).
    """
    rng = np.random.default_rng(seed)
    n, m = int(ds.attrs["n_features"]), int(ds.attrs["n_hidden"])
    minimum = np.full(ds.optimal_loss.shape, np.nan)
    per_p = min(cells_per_p, ds.density.size * ds.r.size)
    with Progress(ds.p.size * per_p, "completeness", "cell", show=progress) as bar:
        for k, p_value in enumerate(ds.p.values):
            for c in rng.choice(ds.density.size * ds.r.size, size=per_p, replace=False):
                i, j = np.unravel_index(c, (ds.density.size, ds.r.size))
                importance = np.ones(n)
                importance[-1] = ds.r.values[j]
                setup = Setup(
                    n, m, sparsity=1 - ds.density.values[i], importance=importance, p=float(p_value)
                )
                minimum[k, i, j] = minimize_loss(setup, n_starts=n_starts, seed=seed).loss
                bar.update()
    return with_exact_minimum(ds, minimum, tolerance)


def published_p0_losses(density, ratio) -> dict[str, np.ndarray]:
    """docs/model.md section 4's fixed candidates for 2 features in 1 dim at p = 0, from the closed forms.

    W = [1, 0] (bias of the dropped feature s/2), [0, 1] (likewise), [1, -1]
    (biases 0), evaluated by the catalogue's closed forms: (density, r) grids.
    """
    D, R = np.meshgrid(np.asarray(density, float), np.asarray(ratio, float), indexing="ij")
    cells = D.size
    args = np.c_[D.ravel(), D.ravel(), np.ones(cells), R.ravel(), np.zeros(cells)]
    one, zero, half = np.ones(cells), np.zeros(cells), D.ravel() / 2
    fixed = {  # the parameters of each candidate by name; an ignored feature's bias is s/2
        "dedicated 0": {"w_0": one, "b_0": zero, "b_1": half},
        "dedicated 1": {"w_1": one, "b_1": zero, "b_0": half},
        "antipodal": {"w_0": one, "b_0": zero, "w_1": one, "b_1": zero},
    }
    out = {}
    for name, values in fixed.items():
        closed = closed_form(geometry(name, 2, 1))
        theta = np.stack([values[t.name] for t in closed.parameters()], axis=1)
        out[name] = closed.evaluate(theta, args).value.reshape(D.shape)
    return out
