"""theory.series: the series model's loss three ways, and its ablation metrics on models built by hand."""

import numpy as np
import pytest

from theory import InputError, Setup, expected_loss_bounds
from theory.series import (
    SeriesModel,
    SeriesSetup,
    ablations,
    block_superposition,
    block_writes,
    blocks_writing,
    leading_order_loss,
    monte_carlo_series_loss,
)


def _random_model(setup: SeriesSetup, seed: int, scale: float = 0.6) -> SeriesModel:
    """Random parameters, the blocks' biases positive: their units are on, so dropping them matters."""
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(0, scale, shape) for k, shape in setup.shapes.items()}
    return SeriesModel.of(setup, **(params | {"c": np.abs(params["c"]) + 0.3}))


def test_setup_and_model_are_validated():
    setup = SeriesSetup(6, 2, 2, 3, sparsity=0.9, importance=0.9 ** np.arange(6), p_block=0.2, p_unit=0.1)
    assert setup.shapes == {"E": (2, 6), "R": (2, 3, 2), "c": (2, 3), "U": (2, 2, 3), "O": (6, 2), "b": (6,)}
    assert setup.parameter_count == 12 + 12 + 6 + 12 + 12 + 6
    assert SeriesSetup(**setup.to_dict()) == setup
    for bad, message in (
        (dict(blocks=-1), "blocks = -1"),
        (dict(units=0), "units = 0"),
        (dict(p_block=1.0), "p_block = 1.0 is outside"),
        (dict(p_unit=-0.1), "p_unit = -0.1 is outside"),
        (dict(sparsity=1.5), "outside the allowed range"),
        (dict(importance=[1.0, -1.0, 1, 1, 1, 1]), "importance must be >= 0"),
        (dict(direct="no"), "direct = 'no' must be true or false"),
    ):
        with pytest.raises(InputError, match=message):
            setup.with_(**bad)
    params = {k: np.zeros(shape) for k, shape in setup.shapes.items()}
    with pytest.raises(InputError, match="R has shape"):
        SeriesModel.of(setup, **(params | {"R": np.zeros((3, 2, 2))}))
    with pytest.raises(InputError, match="needs O"):
        SeriesModel.of(setup, **{k: v for k, v in params.items() if k != "O"})


@pytest.mark.parametrize("seed", range(3))
def test_without_blocks_and_tied_the_leading_order_is_theorys_truncated_exact_loss(seed):
    """L = 0 with O = E^T is TMS (no dropout): the loss over at most one active feature is theory's exact
    loss truncated to active sets of one feature (theory.loss, code shared with neither)."""
    rng = np.random.default_rng(seed)
    sparsity, importance = rng.uniform(0.3, 0.95, 4), rng.uniform(0.2, 1.5, 4)
    setup = SeriesSetup(4, 2, 0, 1, sparsity=sparsity, importance=importance)
    W, b = rng.normal(0, 0.8, (2, 4)), rng.normal(0, 0.2, 4)
    params = {
        "E": W,
        "R": np.zeros((0, 1, 2)),
        "c": np.zeros((0, 1)),
        "U": np.zeros((0, 2, 1)),
        "O": W.T,
        "b": b,
    }
    exact = expected_loss_bounds(Setup(4, 2, sparsity=sparsity, importance=importance), W, b, max_active=1)
    assert leading_order_loss(setup, SeriesModel.of(setup, **params)) == pytest.approx(
        float(exact.lower), rel=1e-12
    )


#: (setup, the seed of its random model)
CASES = [
    (SeriesSetup(4, 2, 1, 2, sparsity=0.7, p_block=0.3), 1),
    (SeriesSetup(4, 2, 2, 2, sparsity=0.6, p_block=0.4, p_unit=0.1, direct=False), 1),
    (SeriesSetup(4, 2, 2, 2, sparsity=0.8, importance=[1, 0.8, 0.6, 0.4], p_block=0.3, p_unit=0.2), 2),
    (SeriesSetup(3, 1, 3, 1, sparsity=[0.2, 0.6, 0.9], p_unit=0.4), 3),
]


@pytest.mark.parametrize("setup, seed", CASES)
def test_leading_order_loss_is_the_monte_carlo_over_samples_of_at_most_one_active_feature(setup, seed):
    model = _random_model(setup, seed=seed)
    exact = leading_order_loss(setup, model)
    mc = monte_carlo_series_loss(setup, model, n_samples=1_000_000, seed=4, at_most_one=True)
    assert abs(exact - mc.mean) <= 5 * mc.stderr
    # the check tells the dropout law apart: the same model without dropout has another loss
    plain = leading_order_loss(setup.with_(p_block=0.0, p_unit=0.0), model)
    assert abs(plain - mc.mean) > 10 * mc.stderr
    other_path = leading_order_loss(setup.with_(direct=not setup.direct), model)  # and the readout's input
    assert abs(other_path - mc.mean) > 10 * mc.stderr
    # and the full loss adds the samples of two or more active features (never negative)
    full = monte_carlo_series_loss(setup, model, n_samples=400_000, seed=5)
    assert full.mean > exact - 5 * full.stderr


@pytest.mark.parametrize("seed", [2, 6])
def test_leading_order_loss_through_units_that_switch_on_and_off_along_the_input(seed):
    """Biases of either sign and large weights: units cross their kink inside [0, 1] (checked), where the
    integral is split."""
    setup = SeriesSetup(3, 2, 2, 2, sparsity=0.6, p_block=0.2, p_unit=0.3)
    rng = np.random.default_rng(seed)
    model = SeriesModel.of(setup, **{k: rng.normal(0, 1.5, shape) for k, shape in setup.shapes.items()})
    pre = model.E[:, 0] @ model.R[0].T  # block 1's pre-activation along feature 0: pre v + c
    roots = -model.c[0] / pre
    assert np.any((roots > 0) & (roots < 1))
    exact = leading_order_loss(setup, model)
    mc = monte_carlo_series_loss(setup, model, n_samples=1_000_000, seed=9, at_most_one=True)
    assert abs(exact - mc.mean) <= 5 * mc.stderr


@pytest.mark.parametrize(
    "p_block, direct, expected", [(0.0, True, 1 / 6), (0.5, True, 1 / 3), (0.0, False, 1 / 12)]
)
def test_leading_order_loss_of_a_unit_that_switches_on_halfway(p_block, direct, expected):
    """One feature, always active; one block of one unit, a = ReLU(v - 1/2), writes 2a: x' = v + 2a, so
    the error is 2 (v - 1/2) above 1/2: L = 4 (1/2)^3 / 3 = 1/6. Dropped with p = 1/2 (kept twice as
    large): L = 1/2 * 16 (1/2)^3 / 3 = 1/3. Without the direct path x' = 2a: the error is v below 1/2 and
    1 - v above, L = 2 (1/2)^3 / 3 = 1/12."""
    setup = SeriesSetup(1, 1, 1, 1, p_block=p_block, direct=direct)
    model = SeriesModel.of(setup, E=[[1.0]], R=[[[1.0]]], c=[[-0.5]], U=[[[2.0]]], O=[[1.0]], b=[0.0])
    assert leading_order_loss(setup, model) == pytest.approx(expected, rel=1e-12)


def test_too_many_masks_are_refused():
    setup = SeriesSetup(3, 2, 4, 4, sparsity=0.9, p_unit=0.1)
    with pytest.raises(InputError, match="masks"):
        leading_order_loss(setup, _random_model(setup, 0))


def _doubled(second_write: float) -> tuple[SeriesSetup, SeriesModel]:
    """Feature 0 on stream dim 0; both blocks read dim 0 (= x0: no block writes it) and write
    0.5 x0 and second_write * x0 into dim 1; the readout of feature 0 is 0.5 s_0 + w s_1."""
    setup = SeriesSetup(2, 2, 2, 1, sparsity=0.5)
    model = SeriesModel.of(
        setup,
        E=[[1.0, 0.0], [0.0, 0.0]],
        R=[[[1.0, 0.0]], [[1.0, 0.0]]],
        c=[[0.0], [0.0]],
        U=[[[0.0], [0.5]], [[0.0], [second_write]]],
        O=[[0.5, 0.5 / (0.5 + second_write)], [0.0, 0.0]],
        b=[0.0, 0.0],
    )
    return setup, model


def test_two_blocks_writing_one_feature_halves_each_are_counted_as_two():
    setup, model = _doubled(0.5)  # x' = 0.5 x0 + 0.5 (0.5 + 0.5) x0 = x0 with both blocks
    found = ablations(setup, model, n_samples=1 << 16)
    assert found.full[0] == pytest.approx(0.0, abs=1e-14)
    # without one block x' = 0.75 x0; without both x' = 0.5 x0
    np.testing.assert_allclose(found.lost_alone[:, 0], 0.0625 / 0.25)
    np.testing.assert_allclose(found.restored_alone[:, 0], 0.75)
    # feature 1 is never written: its loss is the same with and without blocks, so the totals are feature 0's
    np.testing.assert_allclose(found.lost_alone_total, 0.25)
    np.testing.assert_allclose(found.restored_alone_total, 0.75)
    assert found.benefit == pytest.approx((found.none[0] - found.full[0]) / found.none.sum())
    writes = block_writes(setup, model)
    np.testing.assert_allclose(writes[:, 0], 0.5 * 0.5 / 2)  # O_0 . (0, 0.5 v) averaged over v: 0.125
    assert blocks_writing(writes)[0] == pytest.approx(2.0)
    assert np.isnan(blocks_writing(writes)[1])  # feature 1 is written by no block
    lone = _doubled(0.0)
    assert blocks_writing(block_writes(*lone))[0] == pytest.approx(1.0)
    uneven = block_writes(*_doubled(0.25))[:, 0]  # writes in the ratio 2 : 1
    assert uneven[0] == pytest.approx(2 * uneven[1])
    assert blocks_writing(uneven[:, None])[0] == pytest.approx(0.75**2 / (0.5**2 + 0.25**2))


def test_block_superposition_reads_each_block_as_tms_w():
    setup = SeriesSetup(3, 2, 1, 2)
    model = SeriesModel.of(
        setup, E=[[1.0, 0.0, 0.7], [0.0, 1.0, 0.7]], R=[np.eye(2)], c=[[0.0, 0.0]], U=[np.eye(2)],
        O=np.zeros((3, 2)), b=np.zeros(3),
    )  # fmt: skip
    found = block_superposition(model)
    assert found["features_read"].tolist() == [3]
    effective = (1 + 1 + 0.98) ** 2 / (1 + 1 + 0.98**2)  # participation ratio of the squared norms
    np.testing.assert_allclose(found["features_per_unit"], [effective / 2])
    np.testing.assert_allclose(found["superposition"][0, 0], 0.49 / 1.0)
    # scale-free: reads ten times larger, writes ten times smaller, the same numbers
    larger = block_superposition(SeriesModel(model.E, 10 * model.R, model.c, model.U / 10, model.O, model.b))
    for name, value in found.items():
        np.testing.assert_allclose(larger[name], value)
