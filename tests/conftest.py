import os

import hypothesis
import numpy as np
import pytest
from hypothesis import settings

# Property tests run with a fresh random seed each time, printed in the report's header, so that
# every run tries new cases and a failure can be replayed: pytest --hypothesis-seed=SEED.
settings.register_profile("ci", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    seed = config.getoption("hypothesis_seed", None)
    if seed is None:
        # pytest-xdist's workers parse the command line again: they take the seed the controller drew.
        worker = getattr(config, "workerinput", {})
        seed = int(worker.get("hypothesis_seed") or int.from_bytes(os.urandom(4), "big"))
        config.option.hypothesis_seed = str(seed)
        hypothesis.core.global_force_seed = seed


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist: every worker runs with the seed printed in the header."""
    node.workerinput["hypothesis_seed"] = node.config.option.hypothesis_seed


def pytest_report_header(config):
    seed = config.getoption("hypothesis_seed")
    return f"hypothesis seed: {seed} (replay with: python -m pytest --hypothesis-seed={seed})"


def _setup(n: int, m: int):
    from theory.setup import Setup

    return Setup(n, m, sparsity=0.5, p=0.2)


def _warm_training(backend: str, n: int, m: int):
    from sim import train

    train([_setup(n, m)], steps=2, batch=16, backend=backend, progress=False)


def _warm_gradients(backend: str, n: int, m: int):
    from sim.kernel_run import batch_gradients, numba_kernels

    W, b = np.full((1, m, n), 0.5), np.zeros((1, n))
    batch_gradients([_setup(n, m)], W, b, numba_kernels(backend, n, m), batch=16, batches=2)


def _warm_exact_loss():
    from theory.compiled_loss import expected_loss_and_grad_many_compiled

    expected_loss_and_grad_many_compiled([_setup(3, 2)], np.full((1, 2, 3), 0.5), np.zeros((1, 3)))


def _warm_sampled_loss():
    from theory.sampled import SampledLoss

    SampledLoss.draw(_setup(3, 2), 64).loss_and_grad(np.full((2, 3), 0.5), np.zeros(3))


#: The numba kernels most of the suite's files use, each 5-20 s to compile on a fresh machine, in shares
#: of about equal time (largest first), one per pytest-xdist worker.
_KERNEL_WARMUPS = (
    lambda: _warm_gradients("tiled", 3, 2),
    lambda: _warm_training("tiled", 3, 2),
    _warm_exact_loss,
    _warm_sampled_loss,
    lambda: _warm_training("fused", 2, 1),
    lambda: _warm_gradients("fused", 2, 1),
)


@pytest.fixture(scope="session", autouse=True)
def _compile_kernels_in_shares():
    """Under pytest-xdist, worker k compiles every K-th of _KERNEL_WARMUPS before its first test, so the
    workers compile them side by side, once, and each loads the others' from numba's cache on disk
    (a kernel asked for before its worker has written it is compiled again: slower, never wrong)."""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if count > 1:
        # The workers share the cores: each runs its numba and torch threads on its share (a thread
        # waiting for a core that another worker holds spins and wastes it).
        import numba
        import torch

        from paper.runs import thread_share

        threads = thread_share(count)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        torch.set_num_threads(threads)
        worker = int(os.environ["PYTEST_XDIST_WORKER"].removeprefix("gw"))
        for warm in _KERNEL_WARMUPS[worker::count]:
            warm()
