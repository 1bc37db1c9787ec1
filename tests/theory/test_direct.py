"""The search over all of W and b on the truncated exact loss (theory.direct), and the phase diagrams'
completeness check past the exact loss's reach that runs on it."""

import numpy as np
import pytest
import xarray as xr

from tests.cli_helpers import run_cli
from theory import (
    Grid,
    InputError,
    Setup,
    catalogue,
    completeness,
    diagram_runs,
    minimize_loss,
    phase_diagram,
)
from theory.compiled_loss import expected_loss_compiled
from theory.composite import ignore_loss
from theory.direct import minimize_truncated
from theory.montecarlo import monte_carlo_loss


def test_nothing_truncated_the_search_is_the_exact_minimisation():
    """Polished and checked on every active set, the truncated search is a search on the exact loss: its
    bracket closes on the exact loss of its model, which is the least exact loss multistart finds."""
    setup = Setup(3, 2, sparsity=0.7, importance=[1.0, 0.8, 0.6], p=0.3)
    found = minimize_truncated(
        setup, n_starts=6, search_active=1, polish_active=3, check_active=3, samples=400_000
    )
    exact = float(expected_loss_compiled(setup, found.W, found.b))
    assert found.lower == pytest.approx(exact, rel=1e-12) and found.upper == pytest.approx(exact, rel=1e-12)
    assert found.truncated == pytest.approx(exact, rel=1e-12)
    assert found.truncated == pytest.approx(minimize_loss(setup, n_starts=6).loss, rel=1e-6)
    assert abs(found.monte_carlo - exact) < 4 * found.monte_carlo_stderr
    assert len(found.search_losses) == 6 and (np.diff(found.search_losses) >= 0).all()


def test_truncated_search_past_the_exact_loss_brackets_a_model_that_represents_features():
    """14 in 3 under dropout at density 0.05: the search's model is bracketed rigorously (its Monte Carlo
    re-score inside), the bracket sits above the polish objective, and it beats ignoring every feature."""
    setup = Setup(14, 3, sparsity=0.95, importance=0.9 ** np.arange(14), p=0.2)
    found = minimize_truncated(
        setup, n_starts=2, search_active=2, polish_active=3, check_active=4, polish=1, samples=400_000
    )
    assert found.truncated <= found.lower <= found.upper
    # the re-score is the returned model's (seed + 1), not an earlier stage's
    assert found.monte_carlo == monte_carlo_loss(setup, found.W, found.b, n_samples=400_000, seed=1).mean
    margin = 4 * found.monte_carlo_stderr
    assert found.lower - margin <= found.monte_carlo <= found.upper + margin
    assert (found.upper - found.lower) / found.lower < 0.05
    ignore_all = float((setup.importance_array * ignore_loss(setup.density)).sum())
    assert found.upper < 0.9 * ignore_all
    assert (np.linalg.norm(found.W, axis=0) > 0.5).sum() >= 3


def test_truncated_search_rejects_bad_stages():
    setup = Setup(14, 3, sparsity=0.95)
    with pytest.raises(InputError, match="must not decrease"):
        minimize_truncated(setup, search_active=3, polish_active=2, check_active=4)
    with pytest.raises(InputError, match="no start"):
        minimize_truncated(setup, n_starts=0)
    with pytest.raises(InputError, match="starts W"):
        minimize_truncated(setup, n_starts=1, starts=(np.zeros((3, 14)), np.zeros(14)))


def test_completeness_past_the_exact_loss_runs_on_sparse_cells_only():
    grid = Grid(13, 2, sparsity=(0.5, 0.95), p=(0.0, 0.3), importance_decay=(0.8,))
    ds = phase_diagram(grid, catalogue(13, 2, 3), search=False)
    checked = completeness(ds, cells=2, n_starts=2, active=(2, 3, 4))
    sparse = checked.density.values <= 0.1
    upper = checked.direct_upper.transpose("p", ..., "sparsity").values
    assert np.isfinite(upper[..., sparse]).all() and np.isnan(upper[..., ~sparse]).all()
    cells = checked.sel(sparsity=0.95)
    assert (cells.direct_lower <= cells.direct_upper).all()
    margin = 4 * cells.direct_monte_carlo_stderr
    assert ((cells.direct_monte_carlo >= cells.direct_lower - margin)
            & (cells.direct_monte_carlo <= cells.direct_upper + margin)).all()  # fmt: skip
    # started from the diagram's optimum too, the search ends no higher than it, up to the bracket
    assert (cells.direct_lower <= cells.optimal_loss).all()
    assert (cells.missing_phase == (cells.direct_upper < cells.optimal_loss * (1 - 1e-6))).all()
    lines = "\n".join(diagram_runs.summary(checked))
    assert lines.count("least found over all W, b") == 2
    dense = xr.zeros_like(ds.optimal_loss, dtype=bool).copy()
    dense.loc[{"sparsity": 0.5}] = True
    with pytest.raises(InputError, match="density <= 0.1 only"):
        completeness(ds, where=dense)
    with pytest.raises(InputError, match="one per p"):
        completeness(ds, n_starts=(1, 2, 3))
    with pytest.raises(InputError, match="search, polish, check"):
        completeness(ds, active=(3, 4))


def test_cli_completeness_is_refused_where_the_exact_search_is_too_slow(tmp_path, capsys):
    config = tmp_path / "ten.toml"
    config.write_text("[model]\nn_features = 10\nn_hidden = 2\n\n[grid]\nsparsity = [0.9]\n")
    args = ("theory", "phase-diagram", str(config), "--completeness", "1", "--out", str(tmp_path / "x.nc"))
    bad = run_cli(capsys, *args)
    assert bad.returncode != 0 and "9 to 12: too slow" in bad.stderr
