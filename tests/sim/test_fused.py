"""The numba trainers (sim.fused, sim.tiled) against theory's exact gradient and the torch trainer."""

import os
import subprocess
import sys

import numba
import numpy as np
import pytest
import torch

from sim import train
from sim.kernel_run import batch_gradients, numba_kernels
from sim.trainer import resolve_backend
from theory import InputError, Setup, expected_loss, expected_loss_and_grad, minimize_loss

CASES = [(2, 1, 0.05, 0.0), (2, 1, 0.05, 0.4), (2, 1, 0.6, 0.4), (3, 2, 0.1, 0.3), (3, 2, 1.0, 0.0)]
#: (backend, n, m, density, p, batch): the tiled kernel also on a batch that ends in a partial tile,
#: on sparse tiles of many features, and where every sample is empty.
GRADIENT_CASES = [("fused", *case, 1024) for case in CASES] + [
    ("tiled", 2, 1, 0.05, 0.4, 1024),
    ("tiled", 3, 2, 1.0, 0.0, 1024),
    ("tiled", 6, 3, 0.3, 0.4, 1000),
    ("tiled", 5, 2, 0.1, 0.2, 200),
    ("tiled", 8, 3, 0.02, 0.3, 1000),
    ("tiled", 2, 1, 0.0, 0.4, 300),
    ("tiled", 1, 1, 0.05, 0.4, 1024),
]


@pytest.mark.parametrize("backend", ["fused", "tiled"])
def test_the_cases_cover_both_sampling_paths(backend):
    """Mostly-empty batches skip their empty samples; the others draw every sample."""
    skips = {
        (1 - density) ** n > numba_kernels(backend, n, m).sparse_above
        for kernel, n, m, density, _, _ in GRADIENT_CASES
        if kernel == backend
    }
    assert skips == {True, False}


@pytest.mark.parametrize("backend, n, m, density, p, batch", GRADIENT_CASES)
def test_batch_gradient_is_unbiased_for_the_exact_gradient(backend, n, m, density, p, batch):
    """Mean over 1,500 batches of the kernel's gradient = theory's exact gradient / n (|z| < 5)."""
    rng = np.random.default_rng(n * 10 + m)
    setup = Setup(n, m, sparsity=1 - density, importance=0.8 ** np.arange(n), p=p)
    W = rng.normal(0, 0.7, (m, n))
    b = rng.normal(0, 0.2, n)
    batches = batch_gradients(
        [setup], W[None], b[None], numba_kernels(backend, n, m), batch=batch, batches=1500, seed=5
    )
    gW, gb, loss = batches.gW, batches.gb, batches.loss
    exact = expected_loss_and_grad(setup, W, b)
    for estimate, truth in ((gW[0] * n, exact.grad_W), (gb[0] * n, exact.grad_b), (loss[0], exact.loss)):
        mean = estimate.mean(0)
        stderr = estimate.std(0, ddof=1) / np.sqrt(estimate.shape[0])
        assert np.all(np.abs(mean - truth) <= 5 * stderr + 1e-12), (mean, truth, stderr)


@pytest.mark.parametrize("backend, n, m", [("fused", 2, 1), ("tiled", 2, 1), ("tiled", 5, 2)])
def test_same_seed_same_numbers_whatever_the_thread_count(backend, n, m):
    importance = 0.5 ** np.arange(n)
    setups = [Setup(n, m, sparsity=s, importance=importance, p=p) for s in (0.0, 0.9, 0.99) for p in (0, 0.4)]
    runs = []
    threads = numba.get_num_threads()
    try:
        for count in (1, numba.config.NUMBA_NUM_THREADS):  # every thread numba may run
            numba.set_num_threads(count)
            runs.append(train(setups, steps=300, seed=3, progress=False, backend=backend))
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(runs[0].W, runs[1].W)
    np.testing.assert_array_equal(runs[0].b, runs[1].b)
    np.testing.assert_array_equal(runs[0].loss_history, runs[1].loss_history)
    other = train(setups, steps=300, seed=4, progress=False, backend=backend)
    assert not np.array_equal(other.W, runs[0].W)


def test_numba_and_torch_trainers_reach_the_same_optimum():
    """Same init, same budget: all end within 1% of the exact loss's global minimum (at density 0.03 both
    numba kernels skip the empty samples)."""
    setups = [
        Setup(2, 1, sparsity=1 - d, importance=[1.0, r], p=p)
        for d, r, p in [(0.3, 1.0, 0.4), (0.1, 2.0, 0.0), (0.03, 1.0, 0.4)]
    ]
    init = np.array([[[0.8, -0.6]], [[-0.5, 0.9]], [[0.7, -0.7]]], dtype=np.float32)
    for setup, index in zip(setups, range(3), strict=True):
        best = minimize_loss(setup, n_starts=8).loss
        for backend in ("fused", "tiled", "torch"):
            result = train([setup], steps=4000, init=init[index : index + 1], progress=False, backend=backend)
            loss = float(expected_loss(setup, result.W[0], result.b[0]))
            assert loss <= best * 1.01, (backend, setup, loss, best)


@pytest.mark.parametrize("backend", ["fused", "tiled"])
def test_snapshot_with_a_numba_backend_is_a_shorter_run(backend):
    setups = [Setup(2, 1, sparsity=0.7, p=0.0)]
    full = train(setups, steps=600, log_every=50, seed=1, progress=False, backend=backend,
                 snapshot_below=np.array([np.inf]))  # fmt: skip
    assert full.snapshot_step[0] == 0
    threshold = full.loss_history[0, 5]
    again = train(setups, steps=600, log_every=50, seed=1, progress=False, backend=backend,
                  snapshot_below=np.array([threshold]))  # fmt: skip
    step = int(again.snapshot_step[0])
    assert step == full.log_steps[np.argmax(full.loss_history[0] <= threshold)]
    short = train(setups, steps=step, seed=1, progress=False, backend=backend)
    np.testing.assert_allclose(again.snapshot_W, short.W, rtol=0, atol=1e-12)


def test_backend_choice_and_errors():
    cpu = torch.device("cpu")
    assert resolve_backend("auto", cpu, 2, 1) == "fused"
    assert resolve_backend("auto", cpu, 20, 5) == "tiled"
    assert resolve_backend("auto", torch.device("cuda"), 2, 1) == "torch"
    assert resolve_backend("auto", torch.device("cuda"), 20, 5) == "torch"
    for backend in ("fused", "tiled"):
        with pytest.raises(InputError, match=f"backend '{backend}' runs on CPU only"):
            resolve_backend(backend, torch.device("cuda"), 2, 1)
    with pytest.raises(InputError, match="unknown; allowed: auto, torch, fused, tiled"):
        train([Setup(2, 1)], steps=1, progress=False, backend="numpy")


_SAME_IN_EVERY_PROCESS = """
import numpy as np
from sim import sampled_loss, train
from theory import Setup

setups = [Setup(3, 2, sparsity=s, importance=[1.0, 0.8, 0.64], p=0.4) for s in (0.5, 0.9)]
result = train(setups, steps=200, seed=0, backend="tiled", progress=False)
sampled = sampled_loss(setups, result.W, result.b, n_samples=100_000, backend="tiled")
print(repr(result.W.tolist()), repr(result.loss_history.tolist()), repr(sampled.mean.tolist()))
"""


@pytest.mark.slow
def test_a_fresh_compile_and_a_cached_kernel_give_the_same_numbers(tmp_path):
    """The first process compiles the kernels, the second loads them from numba's cache: a resumed sweep
    mixes both, so their numbers must agree bit for bit (reassociated sums once made the loss differ)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    runs = [
        subprocess.run(
            [sys.executable, "-c", _SAME_IN_EVERY_PROCESS], capture_output=True, text=True, env=env
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert any((tmp_path / "numba").rglob("*tiled*.nbi"))  # the second run had a cache to load
    assert runs[0].stdout == runs[1].stdout
