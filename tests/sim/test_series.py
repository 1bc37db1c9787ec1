"""sim.series: the trainer samples the series model's law and learns."""

import numpy as np
import pytest

from sim.series import SERIES_BACKENDS, batch_losses, series_init, train_series
from theory import InputError
from theory.series import SeriesModel, SeriesSetup, leading_order_loss, monte_carlo_series_loss

SETUPS = (
    SeriesSetup(4, 2, 2, 2, sparsity=0.7, importance=[1.0, 0.8, 0.6, 0.4], p_block=0.3, p_unit=0.2),
    SeriesSetup(4, 2, 2, 2, sparsity=0.3, p_block=0.0, p_unit=0.5),
)
#: The same, the readout seeing only what the blocks wrote.
INDIRECT = tuple(s.with_(direct=False) for s in SETUPS)


def _params(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = SETUPS[0].shapes
    params = {k: rng.normal(0, 0.6, (len(SETUPS), *shape)) for k, shape in shapes.items()}
    params["c"] = np.abs(params["c"]) + 0.3  # units on: the masks matter
    return params


@pytest.mark.parametrize("backend", SERIES_BACKENDS)
@pytest.mark.parametrize("setups", [SETUPS, INDIRECT])
def test_training_batches_sample_the_models_loss(setups, backend):
    """Each trainer's forward pass's batch losses against theory's numpy Monte Carlo (shared code: none)."""
    params = _params()
    losses = batch_losses(setups, params, batch=1024, batches=400, seed=3, backend=backend)
    for i, setup in enumerate(setups):
        model = SeriesModel.of(setup, **{k: v[i] for k, v in params.items()})
        mc = monte_carlo_series_loss(setup, model, n_samples=1_000_000, seed=i)
        stderr = np.hypot(losses[i].std(ddof=1) / np.sqrt(losses.shape[1]), mc.stderr)
        assert abs(losses[i].mean() - mc.mean) <= 5 * stderr, (losses[i].mean(), mc.mean, stderr)
        plain = monte_carlo_series_loss(
            setup.with_(p_block=0.0, p_unit=0.0), model, n_samples=200_000, seed=i
        )
        assert abs(losses[i].mean() - plain.mean) > 10 * stderr  # the check sees the dropout law


@pytest.mark.parametrize("backend", SERIES_BACKENDS)
def test_training_learns_and_repeats_itself(backend):
    setups = [SeriesSetup(4, 2, 2, 2, sparsity=0.9, p_block=p) for p in (0.0, 0.4)]
    a, b, c = (
        train_series(setups, steps=400, batch=256, seed=s, progress=False, log_every=100, backend=backend)
        for s in (1, 1, 2)
    )
    np.testing.assert_array_equal(a.params["R"], b.params["R"])
    np.testing.assert_array_equal(a.loss_history, b.loss_history)
    assert not np.array_equal(a.params["R"], c.params["R"])
    assert a.log_steps.tolist() == [0, 100, 200, 300, 399]
    for i, setup in enumerate(setups):
        start = SeriesModel.of(setup, **{k: v[i] for k, v in series_init(setups, 1).items()})
        assert leading_order_loss(setup, a.model(i)) < leading_order_loss(setup, start)


@pytest.mark.parametrize("backend", SERIES_BACKENDS)
def test_tms_with_untied_weights_is_the_model_without_blocks(backend):
    setups = [SeriesSetup(3, 2, 0, 1, sparsity=0.5)]
    result = train_series(setups, steps=300, batch=256, progress=False, backend=backend)
    assert result.params["R"].shape == (1, 0, 1, 2)
    assert result.loss_history[0, -1] < result.loss_history[0, 0]


def test_bad_input_is_refused():
    with pytest.raises(InputError, match="share"):
        train_series([SETUPS[0], SETUPS[0].with_(units=3)], steps=1)
    with pytest.raises(InputError, match="share"):
        train_series([SETUPS[0], INDIRECT[0]], steps=1)
    with pytest.raises(InputError, match="steps = 0"):
        train_series(SETUPS, steps=0)
    with pytest.raises(InputError, match="lr = -1"):
        train_series(SETUPS, steps=1, lr=-1)
    with pytest.raises(InputError, match="init must hold"):
        train_series(SETUPS, steps=1, init={"E": np.zeros((2, 2, 4))})
    with pytest.raises(InputError, match="SeriesSetup"):
        train_series(["not a setup"], steps=1)
    with pytest.raises(InputError, match="backend = 'tiled' is unknown for the series model"):
        train_series(SETUPS, steps=1, backend="tiled")
    with pytest.raises(InputError, match="backend = 'tiled' is unknown for the series model"):
        batch_losses(SETUPS, _params(), batch=4, batches=1, backend="tiled")


SERIES_CONFIG = """
[model]
n_features = 4
n_hidden = 2
[series]
blocks = 2
units = 2
dropout = "{dropout}"
[grid]
sparsity = [0.9, 0.5]
p = [0.0, 0.3]
seeds = [0]
[train]
steps = 200
log_every = 100
[sweep]
chunk = 2
"""


def test_a_series_sweep_is_the_same_whole_or_in_shards(tmp_path, capsys):
    from sim import sweep as sweeps
    from sim.config import TrainConfig
    from sim.results import load

    path = tmp_path / "series.toml"
    path.write_text(SERIES_CONFIG.format(dropout="block"))
    config = TrainConfig.from_toml(path)
    assert config.series_setup(config.cells()[-1]) == SeriesSetup(4, 2, 2, 2, sparsity=0.5, p_block=0.3)
    whole = load(sweeps.sweep(config, tmp_path / "whole.nc", progress=False, log=lambda _: None))
    for shard in ((0, 2), (1, 2)):
        sweeps.sweep(config, tmp_path / "parts.nc", shard=shard, progress=False, log=lambda _: None)
    parts = load(sweeps.merge(config, tmp_path / "parts.nc", log=lambda _: None))
    from tests.cli_helpers import run_cli

    refused = run_cli(capsys, "sim", "plot", str(tmp_path / "whole.nc"))
    assert refused.returncode != 0 and "series model" in refused.stderr
    with pytest.raises(InputError, match="CPU only"):
        sweeps.sweep(config, tmp_path / "gpu.nc", device="cuda", progress=False, log=lambda _: None)
    for name in ("E", "R", "U", "O", "loss_history", "sampled_loss", "blocks_writing", "lost_alone"):
        np.testing.assert_array_equal(whole[name].values, parts[name].values)
    assert dict(whole.R.sizes) == {"seed": 1, "p": 2, "sparsity": 2, "block": 2, "unit": 2, "stream": 2}
    # the stored exact leading-order loss is the stored model's
    cell = whole.isel(seed=0, p=1, sparsity=0)
    setup = SeriesSetup(4, 2, 2, 2, sparsity=0.9, p_block=0.3)
    model = SeriesModel.of(setup, **{k: cell[k].values for k in setup.shapes})
    assert float(cell.leading_order_loss) == pytest.approx(leading_order_loss(setup, model), rel=1e-12)


def test_series_configs_are_checked(tmp_path):
    from sim.config import TrainConfig

    path = tmp_path / "series.toml"
    path.write_text(SERIES_CONFIG.format(dropout="unit").replace("[series]", "[series]\ndirect = false"))
    indirect = TrainConfig.from_toml(path)
    assert not indirect.series_setup(indirect.cells()[0]).direct
    assert indirect.to_dict()["series"]["direct"] is False
    path.write_text(SERIES_CONFIG.format(dropout="unit"))
    assert "direct" not in TrainConfig.from_toml(path).to_dict()["series"]  # the default, recorded as before
    from compare.phases import check_config

    path.write_text(SERIES_CONFIG.format(dropout="block"))
    with pytest.raises(InputError, match="series model"):
        check_config(TrainConfig.from_toml(path))
    path.write_text(SERIES_CONFIG.format(dropout="everything"))
    with pytest.raises(InputError, match="series.dropout = 'everything' is unknown"):
        TrainConfig.from_toml(path)
    path.write_text(SERIES_CONFIG.format(dropout="unit").replace("[series]", "[series]\nwidth = 3"))
    with pytest.raises(InputError, match="unknown keys"):
        TrainConfig.from_toml(path)
    text = SERIES_CONFIG.format(dropout="unit").replace(
        "n_hidden = 2", "n_hidden = 2\ndropout_groups = [0, 0]"
    )
    path.write_text(text)
    with pytest.raises(InputError, match="dropout_groups"):
        TrainConfig.from_toml(path)
    tiled = 'log_every = 100\nbackend = "tiled"'
    path.write_text(SERIES_CONFIG.format(dropout="both").replace("log_every = 100", tiled))
    with pytest.raises(InputError, match="trains on fused"):
        TrainConfig.from_toml(path)
