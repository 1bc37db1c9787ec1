"""Bad input: one clear line naming the value and what is allowed, from the library and the CLI."""

from pathlib import Path

import numpy as np
import pytest

from sim import train
from sim.config import TrainConfig
from tests.cli_helpers import run_cli
from theory import InputError, Setup, expected_loss, expected_loss_bounds

GOOD = dict(n_features=2, n_hidden=1)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(p=1.0), "p = 1.0 is outside the allowed range [0, 1)"),
        (dict(p=-0.1), "p = -0.1 is outside the allowed range [0, 1)"),
        (dict(p=float("nan")), "p = nan is not allowed; it must be a finite number"),
        (dict(sparsity=1.5), "sparsity = 1.5 is outside the allowed range [0, 1]"),
        (dict(sparsity=[0.5, -0.2]), "sparsity[1] = -0.2 is outside the allowed range [0, 1]"),
        (
            dict(sparsity=[0.5, 0.5, 0.5]),
            "sparsity has shape (3,); it must be one number or one per feature (2,)",
        ),
        (dict(importance=[1.0]), "importance has shape (1,); it must be one number or one per feature (2,)"),
        (dict(importance=[1.0, -2.0]), "importance[1] = -2.0 is not allowed; importance must be >= 0"),
        (dict(n_hidden=0), "n_hidden = 0 is not allowed; it must be an integer >= 1"),
        (dict(sparsity="0.5"), "sparsity = '0.5' is not a real number"),
        (dict(p=0.1 + 0.2j), "p = (0.1+0.2j) is not a real number"),
        (dict(p=True), "p = True is not a real number"),
        (dict(importance=["1", "2"]), "importance holds text; it must hold real numbers"),
        (
            dict(sparsity=[[0.1], [0.1, 0.2]]),
            "sparsity is ragged (rows of different lengths); it must be a rectangular array",
        ),
    ],
)
def test_bad_setup_is_one_clear_error(changes, message):
    with pytest.raises(InputError) as err:
        Setup(**{**GOOD, **changes})
    assert str(err.value) == message


@pytest.mark.parametrize(
    "W, b, message",
    [
        (np.ones((2, 2)), np.zeros(2), "W has shape (2, 2); it must be (..., n_hidden=1, n_features=2)"),
        (np.ones((1, 2)), np.zeros(3), "b has shape (3,); it must be (..., n_features=2)"),
        (np.array([[np.nan, 1.0]]), np.zeros(2), "W contains NaN or infinite entries; it must be finite"),
        (np.ones((3, 1, 2)), np.zeros((4, 2)), "W batch shape (3,) and b batch shape (4,) do not broadcast"),
        (
            [[1.0], [1.0, 2.0]],
            np.zeros(2),
            "W is ragged (rows of different lengths); it must be a rectangular array",
        ),
        ([["1", "2"]], np.zeros(2), "W holds text; it must hold real numbers"),
        ([[1j, 2.0]], np.zeros(2), "W holds complex numbers; it must hold real numbers"),
        (
            np.zeros((0, 1, 2)),
            np.zeros(2),
            "W (0, 1, 2) and b (2,) hold no model; the batch dims must not be empty",
        ),
        (
            [[1e160, 1.0]],
            np.zeros(2),
            "the exact loss overflows float64 for these parameters (largest |W| = 1e+160, |b| = 0); "
            "scale them down",
        ),
    ],
)
def test_bad_parameters_are_one_clear_error(W, b, message):
    with pytest.raises(InputError) as err:
        expected_loss(Setup(**GOOD), W, b)
    assert str(err.value) == message


def test_exact_loss_refuses_too_many_features_and_points_to_the_truncation():
    setup = Setup(13, 2)
    with pytest.raises(InputError, match="n_features = 13 is too large for the exact loss"):
        expected_loss(setup, np.zeros((2, 13)), np.zeros(13))
    with pytest.raises(InputError, match="max_active = -1 is not allowed"):
        expected_loss_bounds(setup, np.zeros((2, 13)), np.zeros(13), max_active=-1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(steps=0), "steps = 0 is not allowed; it must be an integer >= 1"),
        (dict(lr=-1.0), "lr = -1.0 is not allowed; it must be a finite number > 0"),
        (dict(device="tpu"), "device = 'tpu' is not a torch device; use 'auto', 'cpu' or 'cuda'"),
        (dict(device="meta"), "device = 'meta' is not supported; use 'auto', 'cpu' or 'cuda'"),
    ],
)
def test_bad_training_arguments_are_one_clear_error(kwargs, message):
    with pytest.raises(InputError) as err:
        train([Setup(**GOOD)], **kwargs)
    assert str(err.value) == message


def test_training_refuses_setups_of_different_shapes():
    with pytest.raises(InputError, match="must share n_features and n_hidden"):
        train([Setup(2, 1), Setup(3, 1)], steps=1)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--p", "1"], "error: p = 1.0 is outside the allowed range [0, 1)"),
        (["--sparsity", "2"], "error: sparsity = 2.0 is outside the allowed range [0, 1]"),
        (["--importance", "1,-1"], "error: importance[1] = -1.0 is not allowed; importance must be >= 0"),
        (["--W", "[[1, 2, 3]]"], "error: W has shape (1, 3); it must be (..., n_hidden=1, n_features=2)"),
        (["--W", "[[NaN, 1]]"], "error: W contains NaN or infinite entries; it must be finite"),
        (["--W", "[[1, x]]"], "error: --W = '[[1, x]]' is not a number or a comma-separated list of numbers"),
        (
            ["--W", "[[1], [1, 2]]"],
            "error: W is ragged (rows of different lengths); it must be a rectangular array",
        ),
        (["--W", '[["1", 2]]'], "error: W holds text; it must hold real numbers"),
        (
            ["--W", "[[1e160, 1]]"],
            "error: the exact loss overflows float64 for these parameters (largest |W| = 1e+160, |b| = 0); "
            "scale them down",
        ),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(capsys, args, message):
    base = {"--n-features": "2", "--n-hidden": "1", "--W": "[[1, -1]]"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    result = run_cli(capsys, "theory", "loss", *[x for kv in base.items() for x in kv])
    assert result.returncode == 2
    assert result.stderr.strip() == message
    assert "Traceback" not in result.stderr


def test_the_exact_loss_of_large_but_representable_weights_is_finite_and_scales_as_the_fourth_power():
    """The overflow error is no blanket limit: 1e20 is computed, and L scales as |W|^4 there."""
    setup = Setup(**GOOD, sparsity=0.5, p=0.4)
    W = np.array([[1.0, -1.0]])
    big, small = expected_loss(setup, 1e20 * W, [0.0, 0.0]), expected_loss(setup, 1e10 * W, [0.0, 0.0])
    assert np.isfinite(big) and float(big / small) == pytest.approx(1e40, rel=1e-9)


def test_monte_carlo_takes_one_model_and_enough_samples():
    from theory import monte_carlo_loss

    setup = Setup(2, 1, sparsity=0.5)
    with pytest.raises(
        InputError, match=r"a single model: W \(m, n\) and b \(n,\); got \(3, 1, 2\) and \(3, 2\)"
    ):
        monte_carlo_loss(setup, np.ones((3, 1, 2)), np.zeros((3, 2)))
    with pytest.raises(InputError, match="n_samples = 1 is not allowed; it must be an integer >= 2"):
        monte_carlo_loss(setup, [[1.0, -1.0]], [0.0, 0.0], n_samples=1)


@pytest.mark.parametrize(
    "path",
    sorted(Path(__file__).resolve().parent.parent.glob("configs/**/*.toml")),
    ids=lambda path: str(path.relative_to(Path(__file__).resolve().parent.parent)),
)
def test_every_shipped_config_reads(path):
    """The configs the README and the paper's runs name are valid for `tms-dropout sim sweep` (an unknown
    key or a value out of range fails with the file's name)."""
    config = TrainConfig.from_toml(path)
    assert config.n_features >= 1 and config.n_cells >= 1 and config.seeds
