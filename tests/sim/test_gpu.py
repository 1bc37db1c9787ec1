"""The CUDA path of the trainer (run with: python -m pytest -m gpu)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from sim import sampled_loss, train
from sim import sweep as sweeps
from sim.config import TrainConfig
from sim.results import load
from theory import Setup

ROOT = Path(__file__).resolve().parents[2]

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


def test_cuda_and_cpu_training_end_at_the_same_loss():
    """Same law, same init, other random streams: the same optimum to well within 1%."""
    cpu = train(setups(), steps=3000, seed=3, device="cpu", backend="torch", progress=False)
    cuda = train(setups(), steps=3000, seed=3, device="cuda", progress=False)
    np.testing.assert_allclose(cuda.expected_losses().lower, cpu.expected_losses().lower, rtol=0.01)


def test_a_sweep_on_cuda_packs_its_cells_by_the_cards_memory(tmp_path):
    """The intro sweep (60 models of 5 in 2) on the GPU, its chunks sized by the card's memory."""
    text = (ROOT / "configs" / "tms_intro.toml").read_text().replace("chunk = 10", "")
    path = tmp_path / "intro.toml"
    path.write_text(text.replace("steps = 10000", "steps = 2000"))
    config = TrainConfig.from_toml(path)
    plan = sweeps.plan(config, "cuda")
    assert plan.device == "cuda" and plan.n_chunks == 1  # 60 small models fit any card
    out = sweeps.sweep(config, tmp_path / "intro.nc", device="cuda", progress=False, log=lambda _: None)
    data = load(out)
    assert data.attrs["device"] == "cuda"
    assert bool((data.expected_loss < data.loss_history.isel(step=0)).all())
    gap = np.abs(data.expected_loss - data.sampled_loss) / data.sampled_loss_stderr
    assert float(gap.max()) < 5
