"""The CUDA path of the trainer (run with: python -m pytest -m gpu)."""

import numpy as np
import pytest
import torch

from sim import sampled_loss, train
from theory import Setup

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def setups():
    return [
        Setup(5, 2, sparsity=s, importance=0.9 ** np.arange(5), p=p) for p in (0.0, 0.4) for s in (0.5, 0.9)
    ]


def test_cuda_training_is_deterministic_and_matches_theory():
    a = train(setups(), steps=3000, seed=3, device="cuda", progress=False)
    b = train(setups(), steps=3000, seed=3, device="cuda", progress=False)
    assert a.device.startswith("cuda")
    np.testing.assert_array_equal(a.W, b.W)
    exact = a.expected_losses().lower
    sampled = sampled_loss(a.setups, a.W, a.b, n_samples=400_000, device="cuda")
    np.testing.assert_array_less(np.abs(exact - sampled.mean), 4 * sampled.stderr)
