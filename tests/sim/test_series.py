"""sim.series: the trainer samples the series model's law and learns."""

import numpy as np
import pytest

from sim.series import batch_losses, series_init, train_series
from theory import InputError
from theory.series import SeriesModel, SeriesSetup, leading_order_loss, monte_carlo_series_loss

SETUPS = (
    SeriesSetup(4, 2, 2, 2, sparsity=0.7, importance=[1.0, 0.8, 0.6, 0.4], p_block=0.3, p_unit=0.2),
    SeriesSetup(4, 2, 2, 2, sparsity=0.3, p_block=0.0, p_unit=0.5),
)


def _params(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = SETUPS[0].shapes
    params = {k: rng.normal(0, 0.6, (len(SETUPS), *shape)) for k, shape in shapes.items()}
    params["c"] = np.abs(params["c"]) + 0.3  # units on: the masks matter
    return params


def test_training_batches_sample_the_models_loss():
    """The torch forward pass's batch losses against theory's numpy Monte Carlo (shared code: none)."""
    params = _params()
    losses = batch_losses(SETUPS, params, batch=1024, batches=400, seed=3)
    for i, setup in enumerate(SETUPS):
        model = SeriesModel.of(setup, **{k: v[i] for k, v in params.items()})
        mc = monte_carlo_series_loss(setup, model, n_samples=1_000_000, seed=i)
        stderr = np.hypot(losses[i].std(ddof=1) / np.sqrt(losses.shape[1]), mc.stderr)
        assert abs(losses[i].mean() - mc.mean) <= 5 * stderr, (losses[i].mean(), mc.mean, stderr)
        plain = monte_carlo_series_loss(
            setup.with_(p_block=0.0, p_unit=0.0), model, n_samples=200_000, seed=i
        )
        assert abs(losses[i].mean() - plain.mean) > 10 * stderr  # the check sees the dropout law


def test_training_learns_and_repeats_itself():
    setups = [SeriesSetup(5, 2, 1, 2, sparsity=0.9, p_block=p) for p in (0.0, 0.4)]
    a = train_series(setups, steps=400, batch=256, seed=1, progress=False, log_every=100)
    b = train_series(setups, steps=400, batch=256, seed=1, progress=False, log_every=100)
    c = train_series(setups, steps=400, batch=256, seed=2, progress=False, log_every=100)
    np.testing.assert_array_equal(a.params["R"], b.params["R"])
    np.testing.assert_array_equal(a.loss_history, b.loss_history)
    assert not np.array_equal(a.params["R"], c.params["R"])
    assert a.log_steps.tolist() == [0, 100, 200, 300, 399]
    for i, setup in enumerate(setups):
        start = SeriesModel.of(setup, **{k: v[i] for k, v in series_init(setups, 1).items()})
        assert leading_order_loss(setup, a.model(i)) < leading_order_loss(setup, start)


def test_tms_with_untied_weights_is_the_model_without_blocks():
    setups = [SeriesSetup(3, 2, 0, 1, sparsity=0.5)]
    result = train_series(setups, steps=300, batch=256, progress=False)
    assert result.params["R"].shape == (1, 0, 1, 2)
    assert result.loss_history[0, -1] < result.loss_history[0, 0]


def test_bad_input_is_refused():
    with pytest.raises(InputError, match="share"):
        train_series([SETUPS[0], SETUPS[0].with_(units=3)], steps=1)
    with pytest.raises(InputError, match="steps = 0"):
        train_series(SETUPS, steps=0)
    with pytest.raises(InputError, match="init must hold"):
        train_series(SETUPS, steps=1, init={"E": np.zeros((2, 2, 4))})
    with pytest.raises(InputError, match="SeriesSetup"):
        train_series(["not a setup"], steps=1)
