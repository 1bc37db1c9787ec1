"""The sample-average loss (theory.sampled) and the phase diagram's search over all of W and b on it
(theory.diagram.search_optimum)."""

from dataclasses import replace

import numba
import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings

from tests.cli_helpers import run_cli
from theory import Grid, InputError, Setup, minimize_loss, phase_diagram, sampled
from theory.compiled_loss import expected_loss_and_grad_many_compiled, expected_loss_compiled
from theory.diagram import search_optimum
from theory.sampled import (
    OPTIONS,
    SELECT_SAMPLES,
    SELECT_SEED,
    SampledLoss,
    _minimize,
    minimize_sampled,
    rearranged,
)
from theory.testing import strategies
from theory.testing.strategies import problems


def _torch_reference(objective: SampledLoss, W: np.ndarray, b: np.ndarray):
    """L_N and its gradient from two other computations: the exact loss over no and one active feature
    by the general recursion (theory.compiled_loss truncated to one active feature), and the sampled
    stratum by torch autograd on the same samples, written from the module's formula."""
    setup = objective.setup
    exact = expected_loss_and_grad_many_compiled([setup], W[None], b[None], max_active=1)
    x, mask = torch.from_numpy(objective.x), torch.from_numpy(objective.mask)
    importance = torch.from_numpy(setup.importance_array)
    W_t, b_t = torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True)
    out = torch.relu(((x @ W_t.T) * mask) @ W_t + b_t)
    value = objective.several * (((x - out) ** 2) @ importance).mean()
    value.backward()
    return (
        value.item() + float(exact.loss[0]),
        W_t.grad.numpy() + exact.grad_W[0],
        b_t.grad.numpy() + exact.grad_b[0],
    )


@pytest.mark.parametrize(
    ("sparsity", "p"),
    [(0.0, 0.4), (0.9, 0.15), (0.6, 0.0)],
)
def test_compiled_sampled_loss_and_gradient_match_autograd(sparsity, p):
    setup = Setup(7, 3, sparsity=sparsity, importance=0.8 ** np.arange(7), p=p)
    objective = SampledLoss.draw(setup, 3000, seed=4)
    rng = np.random.default_rng(1)
    W, b = rng.normal(0, 0.7, (3, 7)), rng.normal(0, 0.3, 7)  # outputs on both sides of the ReLU
    value, grad_W, grad_b = objective.loss_and_grad(W, b)
    ref_value, ref_W, ref_b = _torch_reference(objective, W, b)
    assert value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad_W, ref_W, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(grad_b, ref_b, rtol=1e-10, atol=1e-14)


def test_the_kernel_matches_autograd_on_sparse_and_dense_cells_with_outputs_passing_or_clipped():
    """Few and many active features, outputs mostly passing or mostly clipped: the kernel agrees with
    autograd in each."""
    for sparsity, bias in [(0.2, 0.0), (0.9, -0.6), (0.6, -0.2)]:
        setup = Setup(20, 5, sparsity=sparsity, importance=0.9 ** np.arange(20), p=0.3)
        objective = SampledLoss.draw(setup, 4000, seed=7)
        rng = np.random.default_rng(2)
        W, b = rng.normal(0, 0.5, (5, 20)), bias + rng.normal(0, 0.3, 20)
        value, grad_W, grad_b = objective.loss_and_grad(W, b)
        ref_value, ref_W, ref_b = _torch_reference(objective, W, b)
        assert value == pytest.approx(ref_value, rel=1e-12)
        np.testing.assert_allclose(grad_W, ref_W, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(grad_b, ref_b, rtol=1e-10, atol=1e-14)


def _sample_by_sample(W, b, x, mask, importance):
    """The sampled stratum as the kernel's docstring defines its order: per block of samples (theory.sampled
    splits them into _BLOCKS), per sample, each sum over features or units from 0 in index order, the
    sample's loss and gradient added to the block's; then the blocks summed in order. Python floats."""
    m, n = W.shape
    N, blocks = len(x), sampled._BLOCKS
    total, grad_W, grad_b = 0.0, np.zeros((m, n)), np.zeros(n)
    for block in range(blocks):
        block_loss, block_W, block_b = 0.0, np.zeros((m, n)), np.zeros(n)
        for s in range(block * N // blocks, (block + 1) * N // blocks):
            h = [0.0] * m
            for j in range(m):
                for i in range(n):
                    h[j] += W[j, i] * x[s, i]
                h[j] *= mask[s, j]
            g, loss = [0.0] * n, 0.0
            for i in range(n):
                out = b[i]
                for j in range(m):
                    out += W[j, i] * h[j]
                r = out - x[s, i] if out > 0.0 else x[s, i]
                loss += importance[i] * r * r
                g[i] = 2.0 * importance[i] * r if out > 0.0 else 0.0
            block_loss += loss
            dh = [0.0] * m
            for j in range(m):
                for i in range(n):
                    dh[j] += W[j, i] * g[i]
                dh[j] *= mask[s, j]
            for i in range(n):
                block_b[i] += g[i]
            for j in range(m):
                for i in range(n):
                    block_W[j, i] += g[i] * h[j]
                    block_W[j, i] += dh[j] * x[s, i]
        total += block_loss
        grad_W += block_W
        grad_b += block_b
    return total / N, grad_W / N, grad_b / N


def test_the_kernel_sums_in_one_order_whatever_its_chunk_and_threads():
    """Vectorised across samples, the kernel still adds every sum's terms in one order: bit for bit the
    loop over samples above, with chunks of 1, 3 or 7 samples (and a last one shorter) or the default,
    on one thread or two."""
    setup = Setup(7, 3, sparsity=0.5, importance=0.8 ** np.arange(7), p=0.3)
    objective = SampledLoss.draw(setup, 2600, seed=5)  # blocks of 40 and 41 samples
    rng = np.random.default_rng(3)
    W, b = rng.normal(0, 0.7, (3, 7)), rng.normal(0, 0.3, 7)
    importance = np.ascontiguousarray(setup.importance_array)
    expected = _sample_by_sample(W, b, objective.x, objective.mask, importance)
    threads = numba.get_num_threads()
    try:
        for count in {1, min(2, numba.config.NUMBA_NUM_THREADS)}:
            numba.set_num_threads(count)
            for chunk in (1, 3, 7, sampled.CHUNK):
                got = sampled._loss_and_grad(W, b, objective.x, objective.mask, importance, chunk)
                assert got[0] == expected[0]
                assert np.array_equal(got[1], expected[1]) and np.array_equal(got[2], expected[2])
    finally:
        numba.set_num_threads(threads)


def test_samples_have_two_active_features_and_the_average_estimates_the_exact_loss():
    """Drawn given two or more active features, weighted by the chance of that, beside the exact terms of
    none and one: over many samples L_N is the exact loss within its sampling error, at a fixed model."""
    setup = Setup(4, 2, sparsity=[0.9, 0.8, 0.7, 0.95], importance=[1.0, 0.9, 0.7, 0.5], p=0.3)
    objective = SampledLoss.draw(setup, 400_000, seed=2)
    assert ((objective.x != 0).sum(1) >= 2).all()
    density = 1 - np.array([0.9, 0.8, 0.7, 0.95])
    assert objective.empty == pytest.approx(np.prod(1 - density), rel=1e-12)
    alone = [d * np.prod(np.delete(1 - density, i)) for i, d in enumerate(density)]
    np.testing.assert_allclose(objective.single, alone, rtol=1e-12)
    assert objective.empty + objective.single.sum() + objective.several == pytest.approx(1, rel=1e-12)
    assert set(np.unique(objective.mask)) == {0.0, 1 / 0.7}
    rng = np.random.default_rng(3)
    W, b = rng.normal(0, 0.4, (2, 4)), np.array([0.3, -0.2, 0.25, 0.1])  # the empty input's term counts
    exact = float(expected_loss_compiled(setup, W, b))
    x, mask = objective.x, objective.mask
    per_sample = ((x - np.maximum(((x @ W.T) * mask) @ W + b, 0)) ** 2) @ setup.importance_array
    stderr = objective.several * per_sample.std() / np.sqrt(len(per_sample))
    assert abs(objective.loss_and_grad(W, b)[0] - exact) < 4 * stderr


def test_the_draw_given_two_active_features_has_the_conditional_law():
    """Unequal densities: each feature is active in the share of samples that the law given two or more
    active says (d_i times the chance that another is, over the chance of two or more), exactly two are
    active as often as it says, and an active feature's value is uniform on (0, 1)."""
    density = np.array([0.5, 0.02, 0.3, 0.1, 0.0, 0.6])
    setup = Setup(6, 2, sparsity=1 - density, p=0.2)
    objective = SampledLoss.draw(setup, 200_000, seed=5)
    on = objective.x != 0
    several = objective.several
    others = np.array([1 - np.prod(np.delete(1 - density, i)) for i in range(6)])
    expected = density * others / several
    observed = on.mean(0)
    se = np.sqrt(expected * (1 - expected) / len(on))
    assert (np.abs(observed - expected) <= 4 * se + 1e-12).all(), (observed, expected)
    two = sum(
        density[i] * density[j] * np.prod(np.delete(1 - density, [i, j])) for i in range(6) for j in range(i)
    )
    share_two = (on.sum(1) == 2).mean()
    assert abs(share_two - two / several) < 4 * np.sqrt(two / several / len(on))
    values = objective.x[on]
    assert (
        abs(values.mean() - 0.5) < 4 * np.sqrt(1 / 12 / len(values)) and values.min() > 0 and values.max() < 1
    )


def test_the_terms_of_one_active_feature_are_the_exact_loss_truncated_to_one():
    """L_1 in closed form against the general recursion (theory.compiled_loss, max_active=1) on models
    that put its terms on every case: columns orthogonal (coefficient exactly 0), biases at the ReLU's
    kink, coefficients tiny and large, dropout groups, a feature that is never active, no dropout. Where
    at most one feature can be active there is nothing to sample and L_N is the exact loss."""
    rng = np.random.default_rng(11)
    setups = [
        Setup(20, 5, sparsity=0.95, importance=0.9 ** np.arange(20), p=0.4),
        Setup(5, 3, sparsity=0.7, importance=0.8 ** np.arange(5), p=0.0),
        Setup(
            6,
            4,
            sparsity=[0.9, 0.8, 1.0, 0.5, 0.7, 0.95],
            importance=[1, 0.9, 0.8, 0.7, 0.6, 0.5],
            p=0.3,
            dropout_groups=[0, 0, 1, 1],
        ),
    ]
    for setup in setups:
        m, n = setup.n_hidden, setup.n_features
        W = rng.normal(0, 0.6, (m, n))
        W[:, 1] = 0.0
        W[:, 2] = 1e-9 * rng.normal(size=m)
        W[:, 3] = np.eye(m)[0] * 0.8  # orthogonal to column 4 where that lies on another neuron
        W[:, 4] = np.eye(m)[1] * -1.3
        b = rng.normal(0, 0.3, n)
        b[:3] = 0.0
        objective = SampledLoss.draw(setup, 1, seed=0)
        alone = replace(objective, x=objective.x[:0], mask=objective.mask[:0])
        value, grad_W, grad_b = alone.loss_and_grad(W, b)
        exact = expected_loss_and_grad_many_compiled([setup], W[None], b[None], max_active=1)
        assert value == pytest.approx(float(exact.loss[0]), rel=1e-12)
        np.testing.assert_allclose(grad_W, exact.grad_W[0], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(grad_b, exact.grad_b[0], rtol=1e-10, atol=1e-13)
    lone = Setup(3, 2, sparsity=[0.6, 1.0, 1.0], p=0.25)
    objective = SampledLoss.draw(lone, 1000, seed=0)
    W, b = rng.normal(0, 0.7, (2, 3)), np.array([0.1, -0.2, 0.3])
    assert objective.several == 0 and objective.x.shape == (0, 3)
    assert objective.loss_and_grad(W, b)[0] == pytest.approx(
        float(expected_loss_compiled(lone, W, b)), rel=1e-12
    )


@settings(max_examples=60, deadline=None)
@given(problems((2, 6), (1, 3), setup_strategy=strategies.setups((2, 6), (1, 3), groups=True)))
def test_the_terms_of_one_active_feature_hold_on_hard_cases(problem):
    """The same on hypothesis's hard cases: coefficients from 1e-8 to 10 and zero, tied columns, biases
    at the ReLU's kinks, p up to 0.95, dropout groups, densities down to 0 and up to 1."""
    setup, W, b = problem
    if not np.any(setup.density > 0):
        return
    objective = SampledLoss.draw(setup, 1, seed=0)
    alone = replace(objective, x=objective.x[:0], mask=objective.mask[:0])
    value, grad_W, grad_b = alone.loss_and_grad(W, b)
    exact = expected_loss_and_grad_many_compiled([setup], W[None], b[None], max_active=1)
    scale = max(1.0, float(np.abs(W).max()) ** 2)
    assert value == pytest.approx(float(exact.loss[0]), rel=1e-10, abs=1e-14 * scale**2)
    np.testing.assert_allclose(grad_W, exact.grad_W[0], rtol=1e-9, atol=1e-12 * scale**2)
    np.testing.assert_allclose(grad_b, exact.grad_b[0], rtol=1e-9, atol=1e-12 * scale)


def test_sampled_minimum_is_the_exact_minimum_within_a_percent():
    """3 in 2 under dropout: the end point minimised on samples has an exact loss within 1% of the least
    exact loss multistart finds, and its Monte Carlo re-score estimates that exact loss."""
    setup = Setup(3, 2, sparsity=0.7, importance=[1.0, 0.8, 0.6], p=0.3)
    rng = np.random.default_rng(0)
    starts = (rng.normal(0, 0.6, (3, 2, 3)), np.zeros((3, 3)))
    found = minimize_sampled(setup, starts, search_samples=4000, polish_samples=40_000, rescore=400_000)
    exact = float(expected_loss_compiled(setup, found.W, found.b))
    least = minimize_loss(setup, n_starts=6).loss
    assert least <= exact < 1.01 * least
    assert abs(found.monte_carlo - exact) < 4 * found.monte_carlo_stderr
    assert found.start_losses.shape == (3,) and found.sampled <= found.start_losses.max()
    assert (found.search_samples, found.polish_samples) == (4000, 40_000)


def test_rearranged_gives_the_longest_columns_to_the_most_important_features():
    """Within each density, the r-th longest column goes to the r-th most important feature (equal
    importances keep their columns' order); at uniform importance nothing moves. The rearranged model's
    exact loss is lower: a pair that represents the two least important features becomes a pair of the
    two most important."""
    setup = Setup(6, 2, sparsity=[0.9] * 4 + [0.8] * 2, importance=[1.0, 0.9, 0.9, 0.5, 0.7, 0.6], p=0.2)
    W = np.array([[0.1, 0.0, 0.0, 1.0, 0.0, 2.0], [0.0, 0.5, 0.4, 0.0, 0.3, 0.0]])
    b = np.arange(6.0)
    moved_W, moved_b = rearranged(setup, W, b)
    # density 0.1: columns by length 3 (1.0), 1 (0.5), 2 (0.4), 0 (0.1) to features 0, {1, 2}, 3;
    # density 0.2: column 5 (2.0) to feature 4 (importance 0.7), column 4 to feature 5
    np.testing.assert_array_equal(moved_b, [3.0, 1.0, 2.0, 0.0, 5.0, 4.0])
    np.testing.assert_array_equal(moved_W, W[:, [3, 1, 2, 0, 5, 4]])
    assert rearranged(Setup(6, 2, sparsity=0.9), W, b) is None
    assert rearranged(setup, moved_W, moved_b) is None
    sparse = Setup(4, 1, sparsity=0.95, importance=[1.0, 0.8, 0.6, 0.4], p=0.1)
    pair_W, pair_b = np.array([[0.0, 0.0, 1.0, -1.0]]), np.array([0.0, 0.0, -0.05, -0.05])
    better_W, better_b = rearranged(sparse, pair_W, pair_b)
    np.testing.assert_array_equal(better_W, [[1.0, -1.0, 0.0, 0.0]])
    assert expected_loss_compiled(sparse, better_W, better_b) < expected_loss_compiled(sparse, pair_W, pair_b)


def test_the_search_keeps_a_rearranged_end_point_that_ends_lower():
    """6 in 2, sparse, decaying importance: a start whose features 4 and 5 are an antipodal pair and whose
    other features are off (zero columns, negative biases: no gradient reaches them) stays there; its
    rearrangement (the pair on features 0 and 1) ends lower, and is kept."""
    setup = Setup(6, 2, sparsity=0.95, importance=0.6 ** np.arange(6), p=0.1)
    W = np.zeros((1, 2, 6))
    W[0, 0, 4], W[0, 0, 5] = 1.0, -1.0
    b = np.full((1, 6), -0.1)
    b[0, 4:] = -0.05
    found = minimize_sampled(setup, (W, b), search_samples=4000, polish_samples=8000, rescore=100_000)
    assert found.rearranged
    norms = np.linalg.norm(found.W, axis=0)
    assert norms[:2].min() > 0.9 and norms[2:].max() < 0.1, norms
    plain = minimize_sampled(setup, (W, b), search_samples=4000, polish_samples=8000, rescore=100_000)
    assert plain.monte_carlo == found.monte_carlo  # deterministic for a seed


def test_the_end_points_are_ranked_on_a_sample_none_of_them_has_fitted():
    """6 in 2, sparse, on 300 samples: L_N at each end point is below its loss by an amount of its own
    (5% at start 0's, 0.6-7% at the others'), so the end point least on L_N (start 0) is not the least in
    exact loss (start 3's, 0.3% lower). Ranked on a sample of their own (seed + SELECT_SEED), which none
    has fitted, the end points fall in exact loss's order at its least: start 3's is the one polished
    (on the polishing sample, seed + 1) and re-scored."""
    setup = Setup(6, 2, sparsity=0.9, importance=0.8 ** np.arange(6), p=0.2)
    rng = np.random.default_rng(0)
    starts = (rng.normal(0, 0.6, (6, 2, 6)), np.zeros((6, 6)))
    found = minimize_sampled(setup, starts, search_samples=300, polish_samples=20_000, rescore=20_000)
    search = SampledLoss.draw(setup, 300, seed=0)
    ends = [_minimize(search, W, b, OPTIONS) for W, b in zip(*starts, strict=True)]
    exact = np.array([float(expected_loss_compiled(setup, W, b)) for W, b, _ in ends])
    np.testing.assert_array_equal(found.start_losses, [value for _, _, value in ends])
    select = SampledLoss.draw(setup, SELECT_SAMPLES, seed=SELECT_SEED)
    scored = [select.loss_and_grad(W, b)[0] for W, b, _ in ends]
    np.testing.assert_array_equal(found.selection_losses, scored)
    assert np.argmin(found.start_losses) == 0 and np.argmin(exact) == 3 and exact[0] > 1.002 * exact[3]
    assert np.argmin(found.selection_losses) == 3
    W, b, _ = _minimize(SampledLoss.draw(setup, 20_000, seed=1), *ends[3][:2], OPTIONS)
    np.testing.assert_array_equal(found.W, W)
    np.testing.assert_array_equal(found.b, b)


def test_sampled_search_rejects_bad_input():
    setup = Setup(3, 2, sparsity=0.7)
    with pytest.raises(InputError, match=r"\(S, m, n\)"):
        minimize_sampled(setup, (np.zeros((2, 3)), np.zeros(3)))
    with pytest.raises(InputError, match="n_samples"):
        SampledLoss.draw(setup, 0)
    with pytest.raises(InputError, match="sparsity 1"):
        SampledLoss.draw(Setup(3, 2, sparsity=1.0))


@pytest.mark.slow  # 10-12 s: the default suite stays under five minutes from empty caches
def test_search_takes_the_optimum_only_where_it_beats_the_candidates():
    """A diagram whose only candidates are poor (ignore every feature, or dedicate one): the search beats
    them wherever it runs, and W, b, optimal_loss and the metrics become its end point's; with the
    catalogue's candidates at 3 in 2 it finds nothing better, and the diagram is unchanged."""
    from theory.candidates import catalogue

    grid = Grid(n_features=3, n_hidden=2, sparsity=[0.3, 0.9], p=[0.0, 0.3], importance=[1.0, 0.9, 0.8])
    poor = [c for c in catalogue(3, 2) if c.name in ("ignore all", "dedicated 0")]
    assert len(poor) == 2
    ds = phase_diagram(grid, poor, progress=False)
    searched = search_optimum(ds, progress=False)
    assert searched.search_wins.all()
    assert (searched.optimal_loss < searched.family_loss).all()
    assert (searched.optimal_loss == searched.search_loss).all()
    assert (searched.W == searched.search_W).all() and (searched.b == searched.search_b).all()
    assert (searched.represented >= 2).all()
    for k, p in enumerate(grid.p):
        for i, sparsity in enumerate(grid.sparsity):
            setup = grid.setup(p, None, sparsity)
            W = searched.W.isel(p=k, sparsity=i).values
            exact = float(expected_loss_compiled(setup, W, searched.b.isel(p=k, sparsity=i).values))
            error = float(searched.search_loss_stderr[k, i])
            assert abs(exact - float(searched.search_loss[k, i])) < 4 * error
    silent = Grid(n_features=3, n_hidden=2, sparsity=[1.0, 0.3], p=[0.2], importance=[1.0, 0.9, 0.8])
    never = phase_diagram(silent, poor, progress=False, search=True).isel(p=0)
    assert not bool(never.search_wins[0]) and bool(never.search_wins[1])  # no input at sparsity 1
    full = phase_diagram(grid, progress=False, search=True)
    assert not full.search_wins.any()
    assert (full.optimal_loss == full.family_loss).all()
    plain = phase_diagram(grid, progress=False)
    assert "search_loss" not in plain and (full.W == plain.W).all()


def test_a_monte_carlo_score_low_by_chance_does_not_make_the_search_the_optimum(monkeypatch):
    """The search's end point is taken only where it beats the candidates' optimum on the same samples.
    Here the search is replaced by one that ends at its first start (the candidates' optimum, exact) and
    reports a Monte Carlo score 3 standard errors low: scored alone, that is below the family by more
    than 2 standard errors; on shared samples the gap is 0 and the diagram keeps the family (an end point
    truly lower still wins: test_search_takes_the_optimum_only_where_it_beats_the_candidates)."""
    from theory import diagram, sampled

    grid = Grid(n_features=3, n_hidden=2, sparsity=[0.5, 0.8], p=[0.0, 0.3], importance=[1.0, 0.9, 0.8])
    ds = phase_diagram(grid, progress=False)

    def ends_where_it_starts(setup, starts, seed=0, incumbent=False, **_):
        if incumbent:
            return None
        W, b = starts[0][0], starts[1][0]
        score = diagram.monte_carlo_losses(
            setup, W[None], b[None], diagram.RESCORE_SAMPLES, seed + diagram.RESCORE_SEED
        )
        low = score.mean[0] - 3 * score.stderr[0]
        return sampled.SampledMinimum(W, b, np.nan, low, score.stderr[0], np.zeros(1), 1, 1)

    monkeypatch.setattr(diagram, "minimize_sampled", ends_where_it_starts)
    monkeypatch.setattr(diagram, "RESCORE_SAMPLES", 2**15)  # the search's and the paired scores' samples
    searched = search_optimum(ds, progress=False)
    assert (searched.search_loss + 2 * searched.search_loss_stderr < searched.family_loss).all()  # alone
    assert (searched.search_gap == 0).all() and (searched.search_gap_stderr == 0).all()
    assert not searched.search_wins.any() and (searched.optimal_loss == searched.family_loss).all()


def test_cli_searches_past_the_exact_loss_by_default(tmp_path, capsys):
    """13 features in 2 dims, uniform importance, density 0.2, with no polygon blocks: the family's best
    (antipodal pairs) is not the optimum, the search beats it, and the command says so and writes the
    search's model as the optimum."""
    config = tmp_path / "thirteen.toml"
    grid = "sparsity = [0.8]\np = [0.0]\nimportance_decay = [1.0]\n"
    config.write_text("[model]\nn_features = 13\nn_hidden = 2\n\n[grid]\n" + grid)
    out = tmp_path / "d.nc"
    result = run_cli(capsys, "theory", "phase-diagram", str(config), "--max-polygon", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "search over all of W, b beats the candidates in 1 of 1" in result.stdout
    ds = xr.load_dataset(out)
    assert bool(ds.search_wins.all()) and (ds.W == ds.search_W).all()
    assert float(ds.optimal_loss.max()) == float(ds.search_loss.max()) < float(ds.family_loss.min())
    plain = run_cli(
        capsys, "theory", "phase-diagram", str(config), "--max-polygon", "2", "--no-search", "--out", str(out)
    )
    assert plain.returncode == 0 and "search_wins" not in xr.load_dataset(out)
