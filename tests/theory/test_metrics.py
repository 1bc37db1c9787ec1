"""TMS metrics on geometries whose values are known by hand."""

import numpy as np
import pytest

from theory import metrics


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
