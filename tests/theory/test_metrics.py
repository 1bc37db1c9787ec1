"""TMS metrics on geometries whose values are known by hand."""

import numpy as np
import pytest

from theory import metrics
from theory.blocks import demicube_vertices, prism_vertices


def polygon(k, m=2):
    angles = 2 * np.pi * np.arange(k) / k
    return np.stack([np.cos(angles), np.sin(angles)])


@pytest.mark.parametrize(
    "W, dimensionality",
    [
        (np.eye(2), [1.0, 1.0]),  # dedicated
        (np.array([[1.0, -1.0]]), [0.5, 0.5]),  # antipodal pair
        (polygon(3), [2 / 3] * 3),  # triangle
        (polygon(5), [2 / 5] * 5),  # pentagon
        (np.array([[1.0, 0.0]]), [1.0, 0.0]),  # dedicated + ignored
    ],
)
def test_feature_dimensionality_sticks_at_the_known_fractions(W, dimensionality):
    np.testing.assert_allclose(metrics.feature_dimensionality(W), dimensionality, atol=1e-12)


def test_superposition_norms_and_dimensions_per_feature():
    W = np.array([[1.0, -1.0, 0.0], [0.0, 0.0, 0.5]])
    np.testing.assert_allclose(metrics.feature_norms(W), [1, 1, 0.5])
    np.testing.assert_allclose(metrics.superposition(W), [1, 1, 0])
    assert metrics.dimensions_per_feature(W) == pytest.approx(2 / 2.25)
    np.testing.assert_allclose(metrics.gram(W), W.T @ W)


def test_metrics_are_batched_over_leading_dims():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(4, 3, 2, 5))
    batched = metrics.superposition(W)
    assert batched.shape == (4, 3, 5)
    np.testing.assert_allclose(batched[2, 1], metrics.superposition(W[2, 1]))


def test_neuron_alignment_and_hidden_kurtosis_see_the_privileged_basis():
    W = np.array([[1.0, 0.0, 0.6, 0.0], [0.0, 1.0, 0.8, 0.0]])
    np.testing.assert_allclose(metrics.neuron_alignment(W)[:3], [1.0, 1.0, 0.8])
    assert np.isnan(metrics.neuron_alignment(W)[3])
    rng = np.random.default_rng(0)
    x = (rng.random((40_000, 3)) < 0.05) * rng.random((40_000, 3))
    # Features on the neurons: the neurons' activations are sparse (heavy-tailed), random directions mix them.
    aligned = metrics.hidden_kurtosis(np.eye(3)[:2], x)
    rotated = metrics.hidden_kurtosis(np.array([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0]]) / np.sqrt(2), x)
    assert aligned[0] > 1.3 * aligned[1]
    assert rotated[0] < rotated[1]
    # A Gaussian has excess kurtosis 0.
    assert abs(metrics.excess_kurtosis(rng.standard_normal(200_000))) < 0.05


def test_represented_counts_the_nonzero_columns():
    W = np.array([[[1.0, 0.0, 0.0], [0.0, 0.0, 1e-9]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    np.testing.assert_array_equal(metrics.represented(W), [2, 0])
    assert metrics.represented(W[0], tolerance=1e-6) == 1


def test_neuron_aligned_features_use_one_neuron_and_spread_ones_all():
    aligned = np.diag([0.9, 0.8, 1.1])
    np.testing.assert_allclose(metrics.neurons_per_feature(aligned), [1.0, 1.0, 1.0])
    spread = np.full((4, 2), 0.5)  # each column evenly over 4 neurons
    np.testing.assert_allclose(metrics.neurons_per_feature(spread), [4.0, 4.0])
    one_off = np.array([[1.0, 0.0], [1.0, 0.0]])  # the second feature has no direction
    assert metrics.neurons_per_feature(one_off)[0] == 2.0 and np.isnan(
        metrics.neurons_per_feature(one_off)[1]
    )


def test_tegum_factors_names_each_orthogonal_group_and_its_spread():
    # a pentagon on neurons 0-1, a tetrahedron spread over neurons 2-4 by a rotation, an antipodal pair on
    # neuron 5, two ignored features
    angles = 2 * np.pi * np.arange(5) / 5
    tetrahedron = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]).T / np.sqrt(3)  # (3, 4)
    rotation = np.linalg.qr(np.array([[1.0, 1, 1], [1, -1, 0], [1, 1, -2]]))[0]
    W = np.zeros((6, 13))
    W[0, :5], W[1, :5] = np.cos(angles), np.sin(angles)
    W[2:5, 5:9] = rotation @ tetrahedron
    W[5, 9], W[5, 10] = 0.9, -0.8
    factors = metrics.tegum_factors(W)
    assert [f.kind for f in factors] == ["pentagon", "tetrahedron", "antipodal pair"]
    assert [f.features for f in factors] == [(0, 1, 2, 3, 4), (5, 6, 7, 8), (9, 10)]
    assert [f.dims for f in factors] == [2, 3, 1]
    np.testing.assert_allclose([f.neurons for f in factors], [2.0, 3.0, 1.0])
    assert str(factors[2]) == "antipodal pair 9 10 (1 dim over 1.0 neurons)"
    # a regular simplex of 6 in 5 dims, spread evenly over all neurons; a feature alone
    simplex = np.eye(6) - 1 / 6
    basis = np.linalg.svd(simplex)[0][:, :5]  # (6, 5): the simplex's span
    W = np.zeros((6, 7))
    W[:5, :6] = (simplex @ basis).T / np.linalg.norm(simplex[0])
    W[5, 6] = 1.0
    factors = metrics.tegum_factors(W)
    assert [f.kind for f in factors] == ["5-simplex", "single"]
    assert factors[0].dims == 5 and factors[1].neurons == pytest.approx(1.0)
    # an antipodal pair along (1, 1, 1, 1) / 2: one dimension spread evenly over four neurons
    pair = np.outer([0.5, 0.5, 0.5, 0.5], [1.0, -1.0])
    (factor,) = metrics.tegum_factors(pair)
    assert (factor.kind, factor.dims, factor.neurons) == ("antipodal pair", 1, pytest.approx(4.0))
    # no represented feature: no factor
    assert metrics.tegum_factors(np.full((2, 3), 0.1)) == []
    with pytest.raises(ValueError, match="one model"):
        metrics.tegum_factors(np.zeros((2, 2, 3)))


def test_tegum_factors_name_a_turned_and_shuffled_demicube_but_not_another_frame_of_sixteen():
    rng = np.random.default_rng(0)
    rotation = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    cube = rotation @ demicube_vertices(5).T * 1.1  # (5, 16)
    W = np.zeros((5, 20))
    W[:, rng.permutation(20)[:16]] = cube + rng.normal(scale=0.01, size=cube.shape)
    (factor,) = metrics.tegum_factors(W)
    assert (factor.kind, factor.dims, len(factor.features)) == ("5-demicube", 5, 16)
    frame = rng.normal(size=(5, 16))  # 16 directions in 5 dims with no such cosines
    assert [f.kind for f in metrics.tegum_factors(frame / np.linalg.norm(frame, axis=0))] == ["16 features"]


def test_tegum_factors_name_a_turned_shuffled_simplex_prism_at_any_tilt_but_not_another_frame_of_twenty():
    rng = np.random.default_rng(1)
    for tilt in (0.4, 0.71, 1.1):
        rotation = np.linalg.qr(rng.normal(size=(5, 5)))[0]
        prism = rotation @ prism_vertices(tilt).T * np.repeat([1.12, 1.1], 10)  # two norms, one per orbit
        W = (prism + rng.normal(scale=0.01, size=prism.shape))[:, rng.permutation(20)]
        (factor,) = metrics.tegum_factors(W)
        assert (factor.kind, factor.dims, len(factor.features)) == ("simplex prism", 5, 20)
    frame = rng.normal(size=(5, 20))
    assert [f.kind for f in metrics.tegum_factors(frame / np.linalg.norm(frame, axis=0))] == ["20 features"]


def test_hidden_offset_centres_each_represented_input_along_its_column():
    """Feature 0 on neuron 0, feature 1 on neuron 1, features 2 and 3 unrepresented (norms 0.3 and
    0.22): at their mean inputs (density / 2 = 0.25 and 0.1) they add c = (-0.3 * 0.25 + 0.1 * 0.1,
    0.2 * 0.1) = (-0.065, 0.02) to the hidden layer. Along w_0 = (2, 0) that is -0.065 * 2 / 4 = -0.0325:
    x_0 - 0.0325 on average, 0.13 of feature 0's mean input 0.25 removed; along w_1 = (0, 0.5) it adds
    0.04: -0.16 of 0.25. The two tail columns' cosine is -0.3 * 0.1 / (0.3 * sqrt(0.05))."""
    W = np.array([[2.0, 0.0, -0.3, 0.1], [0.0, 0.5, 0.0, 0.2]])
    look = metrics.hidden_offset(W, [0.5, 0.5, 0.5, 0.2], represented=0.4)
    np.testing.assert_array_equal(look.unrepresented, [False, False, True, True])
    np.testing.assert_allclose(look.offset, [-0.065, 0.02], rtol=1e-12)
    np.testing.assert_allclose(look.centred[:2], [0.13, -0.16], rtol=1e-12)
    assert np.isnan(look.centred[2:]).all()
    assert look.tail_cosine == pytest.approx(-0.3 * 0.1 / (0.3 * np.sqrt(0.05)), rel=1e-12)
    assert look.offset_norm == pytest.approx(np.hypot(0.065, 0.02), rel=1e-12)


def test_hidden_offset_of_zero_columns_has_no_cosine():
    """A family's optimum leaves its ignored features at exactly zero: no offset, no direction."""
    W = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    look = metrics.hidden_offset(W, 0.3)
    assert np.isnan(look.tail_cosine) and look.offset_norm == 0.0
    np.testing.assert_array_equal(look.centred[:2], [0.0, 0.0])
