"""Dropout groups in training: every trainer samples the grouped law, and sweeps record the groups."""

import json
import math

import numpy as np
import pytest
import torch

from sim import sweep as sweeps
from sim.config import TrainConfig
from sim.kernel_run import batch_gradients, numba_kernels
from sim.results import load
from sim.trainer import _Batched, _Batches, sampled_loss
from theory import Setup, expected_loss, expected_loss_and_grad

CPU = torch.device("cpu")
SETUPS = [
    Setup(3, 3, sparsity=0.5, importance=[1.0, 0.7, 0.4], p=0.4, dropout_groups=[0, 1, 0]),
    Setup(3, 3, sparsity=0.97, p=0.3, dropout_groups=[0, 0, 0]),  # mostly empty: the sparse paths
    Setup(3, 3, sparsity=0.2, p=0.25),  # no groups, in the same batch of instances
]


def test_sampled_scale_is_shared_within_a_group_and_independent_across():
    model = _Batched(SETUPS, CPU)
    batch = 200_000
    with _Batches(4, CPU, model, batch) as batches:
        _, scale = batches.next()
    kept = scale.double().numpy() > 0  # (instances, m, batch)
    np.testing.assert_array_equal(kept[0, 0], kept[0, 2])  # group 0 = units 0 and 2
    assert (kept[1] == kept[1, :1]).all()  # one group of all
    for i, setup in enumerate(SETUPS):
        keep = 1 - setup.p
        se = math.sqrt(keep * (1 - keep) / batch)
        assert np.all(np.abs(kept[i].mean(-1) - keep) <= 5 * se)
    # units of different groups, or without groups, are kept independently
    assert abs((kept[0, 0] & kept[0, 1]).mean() - 0.6**2) <= 5 * math.sqrt(0.25 / batch)
    assert abs((kept[2, 0] & kept[2, 1]).mean() - 0.75**2) <= 5 * math.sqrt(0.25 / batch)


@pytest.mark.parametrize("backend", ["torch", "fused", "tiled"])
def test_every_trainer_samples_the_grouped_loss(backend):
    rng = np.random.default_rng(3)
    W = rng.normal(0, 0.7, (len(SETUPS), 3, 3))
    b = rng.normal(0, 0.2, (len(SETUPS), 3))
    sampled = sampled_loss(SETUPS, W, b, n_samples=400_000, seed=2, backend=backend)
    exact = np.array([float(expected_loss(s, W[i], b[i])) for i, s in enumerate(SETUPS)])
    assert np.all(np.abs(sampled.mean - exact) <= 5 * sampled.stderr), (sampled.mean, exact, sampled.stderr)
    ungrouped = float(expected_loss(SETUPS[0].with_(dropout_groups=None), W[0], b[0]))
    assert abs(sampled.mean[0] - ungrouped) > 10 * sampled.stderr[0]  # the check tells the laws apart


@pytest.mark.parametrize("backend", ["fused", "tiled"])
@pytest.mark.parametrize("setup", SETUPS[:2])
def test_grouped_batch_gradient_is_unbiased(backend, setup):
    rng = np.random.default_rng(1)
    W, b = rng.normal(0, 0.7, (3, 3)), rng.normal(0, 0.2, 3)
    kernels = numba_kernels(backend, 3, 3)
    batches = batch_gradients([setup], W[None], b[None], kernels, batch=1024, batches=1500, seed=5)
    exact = expected_loss_and_grad(setup, W, b)
    for estimate, truth in ((batches.gW[0] * 3, exact.grad_W), (batches.gb[0] * 3, exact.grad_b)):
        mean, stderr = estimate.mean(0), estimate.std(0, ddof=1) / np.sqrt(len(estimate))
        assert np.all(np.abs(mean - truth) <= 5 * stderr + 1e-12), (mean, truth, stderr)


def test_a_sweep_with_groups_records_them_and_their_metrics(tmp_path):
    path = tmp_path / "groups.toml"
    path.write_text(
        "[model]\nn_features = 4\nn_hidden = 4\ndropout_groups = [0, 0, 1, 1]\n"
        "[grid]\nsparsity = [0.5]\np = [0.3]\nseeds = [0]\n[train]\nsteps = 300\n"
    )
    config = TrainConfig.from_toml(path)
    assert config.dropout_groups == (0, 0, 1, 1)
    ds = load(sweeps.sweep(config, tmp_path / "run.nc", progress=False, log=lambda _: None))
    assert TrainConfig.from_dict(json.loads(ds.attrs["config"])) == config
    assert ds.groups_per_feature.dims[-1] == "feature"
    assert ds.group_dimensions_per_feature.sizes["group"] == 2
    assert abs(float(ds.expected_loss.squeeze() - ds.sampled_loss.squeeze())) <= 5 * float(
        ds.sampled_loss_stderr.squeeze()
    )
    plain = TrainConfig.from_dict({**config.to_dict(), "dropout_groups": None})
    assert "dropout_groups" not in plain.to_dict()  # a sweep without groups records what it did before
