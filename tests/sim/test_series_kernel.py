"""sim.series_kernel: the series model's numba trainer, held against its own loss and the torch trainer."""

import numba
import numpy as np
import pytest

from sim import series_kernel as kernel
from sim.series import series_init, train_series
from theory.series import SeriesModel, SeriesSetup, monte_carlo_series_loss

#: (n, blocks, units, p_block, p_unit, direct): the dropped blocks' and units' paths, no blocks, no direct
#: path, one wider block; few shapes (each compiles its own kernel), shared with tests/sim/test_series.py.
CASES = [
    (4, 2, 2, 0.3, 0.0, True),
    (4, 2, 2, 0.2, 0.25, False),
    (3, 0, 1, 0.0, 0.0, True),
    (4, 1, 4, 0.4, 0.0, False),
    (4, 2, 2, 0.0, 0.5, True),
]


def _setup(n, blocks, units, p_block, p_unit, direct, sparsity=0.6):
    importance = 0.9 ** np.arange(n)
    return SeriesSetup(n, 2, blocks, units, sparsity=sparsity, importance=importance, p_block=p_block,
                       p_unit=p_unit, direct=direct)  # fmt: skip


def _params(setup, seed=1):
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(0, 0.7, (1, *shape)) for k, shape in setup.shapes.items()}
    params["c"] = np.abs(params["c"]) + 0.2  # units on: the masks matter
    return params


@pytest.mark.parametrize("case", CASES)
def test_the_gradient_is_the_batch_losss_derivative(case):
    """On the kernel's own samples (same seed, same samples) the batch gradient is d(batch loss / n), by
    central differences in every parameter."""
    setup = _setup(*case)
    params = _params(setup)
    found = kernel.batch_gradients([setup], params, batch=64, batches=1, seed=3)
    theta = kernel.flatten(params, setup.shapes)
    grad = kernel.flatten({k: v[:, 0] for k, v in found.grad.items()}, setup.shapes)[0]
    h = 1e-6
    for q in range(theta.shape[1]):
        ends = []
        for step in (h, -h):
            moved = theta.copy()
            moved[0, q] += step
            ends.append(kernel.batch_gradients([setup], kernel.unflatten(moved, setup.shapes), batch=64,
                                               batches=1, seed=3).loss[0, 0])  # fmt: skip
        numeric = (ends[0] - ends[1]) / (2 * h) / setup.n_features
        assert grad[q] == pytest.approx(numeric, rel=1e-5, abs=1e-8), (q, grad[q], numeric)


@pytest.mark.parametrize("case", CASES)
def test_the_batches_sample_the_models_loss(case):
    """The kernel's batch losses against theory's numpy Monte Carlo (shared code: none)."""
    setup = _setup(*case)
    params = _params(setup)
    losses = kernel.batch_gradients([setup], params, batch=1024, batches=300, seed=5).loss[0]
    model = SeriesModel.of(setup, **{k: v[0] for k, v in params.items()})
    mc = monte_carlo_series_loss(setup, model, n_samples=600_000, seed=2)
    stderr = np.hypot(losses.std(ddof=1) / np.sqrt(losses.size), mc.stderr)
    assert abs(losses.mean() - mc.mean) <= 5 * stderr, (losses.mean(), mc.mean, stderr)


def test_same_seed_same_numbers_whatever_the_thread_count():
    setups = [_setup(4, 2, 2, p, 0.1, True, sparsity=s) for s in (0.0, 0.9) for p in (0.0, 0.4)]
    runs = []
    threads = numba.get_num_threads()
    try:
        for count in (1, numba.config.NUMBA_NUM_THREADS):  # every thread numba may run
            numba.set_num_threads(count)
            runs.append(train_series(setups, steps=200, batch=128, seed=3, progress=False))
    finally:
        numba.set_num_threads(threads)
    for name in runs[0].params:
        np.testing.assert_array_equal(runs[0].params[name], runs[1].params[name])
    np.testing.assert_array_equal(runs[0].loss_history, runs[1].loss_history)
    other = train_series(setups, steps=200, batch=128, seed=4, progress=False)
    assert not np.array_equal(other.params["R"], runs[0].params["R"])


@pytest.mark.slow
@pytest.mark.parametrize("direct", [True, False])
def test_both_trainers_reach_the_same_loss(direct):
    """Same starts, same budget, different random streams: most starts end in the same minimum under
    both trainers (trained losses, one Monte Carlo per model, within 2% for at least 3 in 4 models;
    the median ratio within 1%; a start may end in another local minimum), and training lowered every
    model well below its start."""
    groups = [_setup(4, 2, 2, 0.3, 0.0, direct, sparsity=s) for s in (0.0, 0.8)]
    setups = [s for s in groups for _ in range(6)]
    init = series_init(setups, seed=7)

    def losses(models):
        return np.array([
            monte_carlo_series_loss(s, model, n_samples=200_000, seed=9).mean
            for s, model in zip(setups, models, strict=True)
        ])  # fmt: skip

    found = {}
    for backend in ("fused", "torch"):
        result = train_series(setups, steps=4000, batch=512, init=init, seed=2, progress=False,
                              backend=backend)  # fmt: skip
        found[backend] = losses([result.model(i) for i in range(len(setups))])
    start = losses([SeriesModel.of(s, **{k: v[i] for k, v in init.items()}) for i, s in enumerate(setups)])
    ratio = found["fused"] / found["torch"]
    assert np.mean(np.abs(ratio - 1) <= 0.02) >= 0.75, ratio
    assert abs(np.median(ratio) - 1) <= 0.01, ratio
    assert np.all(found["fused"] < 0.8 * start)
