"""RandomKernelFeatures and its fitting (work in progress: not yet used by the model)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from rnn_classifier.layers import PaddingMask
from rnn_classifier.random_kernels import (
    KERNEL_LENGTH,
    N_KERNELS,
    RandomKernelFeatures,
    base_kernels,
    channel_masks,
    dilations_for,
    fit_random_kernels,
)

MASK = -99.0


def curves(n=40, length=50, channels=2, seed=0):
    """Random walks of random lengths, padded with MASK."""
    rng = np.random.default_rng(seed)
    values = np.cumsum(rng.normal(size=(n, length, channels)), axis=1).astype(np.float32)
    lengths = rng.integers(5, length + 1, size=n)
    values[np.arange(length)[None, :] >= lengths[:, None]] = MASK
    return values


def reference_features(series: np.ndarray, kernel: np.ndarray, dilation: int,
                       bias: float) -> float:
    """One PPV feature of one univariate unpadded series, by definition."""
    padded = np.pad(series, 4 * dilation)
    output = np.array([sum(kernel[j] * padded[t + j * dilation] for j in range(KERNEL_LENGTH))
                       for t in range(len(series))])
    return float(np.mean(output > bias))


def test_the_84_kernels_are_distinct_and_sum_to_zero():
    kernels = base_kernels()
    assert kernels.shape == (KERNEL_LENGTH, N_KERNELS) == (9, 84)
    assert np.allclose(kernels.sum(axis=0), 0.0)
    assert len({tuple(column) for column in kernels.T}) == 84


def test_dilations_grow_until_the_kernel_spans_the_series():
    assert dilations_for(5) == [1]
    dilations = dilations_for(200)
    assert dilations[0] == 1 and (KERNEL_LENGTH - 1) * dilations[-1] <= 199
    assert dilations == sorted(set(dilations))


def test_each_kernel_sums_at_least_one_channel_and_the_seed_fixes_them():
    masks = channel_masks(6, seed=3)
    assert masks.shape == (6, 84) and (masks.sum(axis=0) >= 1).all()
    np.testing.assert_array_equal(masks, channel_masks(6, seed=3))
    assert (channel_masks(1, seed=0) == 1).all()


def test_features_match_their_definition_on_an_unpadded_curve():
    data = curves(n=3, length=30, channels=1)
    data[:, :, :] = np.nan_to_num(np.where(data == MASK, 0.0, data))  # no padding
    bias = np.linspace(-1.0, 1.0, 84 * 2).reshape(84, 2)
    layer = RandomKernelFeatures(np.ones((1, 84)), [2], [bias], np.zeros(168), np.ones(168))
    real = np.ones(data.shape[:2], dtype=bool)
    features = keras.ops.convert_to_numpy(layer(data, real))
    kernels = base_kernels()
    for row in range(3):
        for kernel in (0, 41, 83):
            for b in range(2):
                assert features[row, kernel * 2 + b] == pytest.approx(reference_features(
                    data[row, :, 0], kernels[:, kernel], 2, bias[kernel, b]))


def test_padding_changes_no_feature():
    data = curves()
    config = fit_random_kernels(data, MASK, n_features=500, seed=1)
    layer = RandomKernelFeatures(**config)
    longer = np.concatenate([data, np.full((len(data), 17, data.shape[2]), MASK,
                                           dtype=np.float32)], axis=1)
    short = keras.ops.convert_to_numpy(layer(data, np.any(data != MASK, axis=-1)))
    long = keras.ops.convert_to_numpy(layer(longer, np.any(longer != MASK, axis=-1)))
    np.testing.assert_allclose(short, long, atol=1e-6)


def test_fitting_gives_about_the_features_asked_for_standardised_on_training():
    data = curves(n=200)
    config = fit_random_kernels(data, MASK, n_features=1000, seed=2)
    layer = RandomKernelFeatures(**config)
    assert abs(layer.n_features - 1000) <= N_KERNELS * len(config["dilations"])
    features = keras.ops.convert_to_numpy(layer(data, np.any(data != MASK, axis=-1)))
    assert features.shape == (200, layer.n_features)
    np.testing.assert_allclose(features.mean(axis=0), 0.0, atol=1e-4)
    # Biases are quantiles of the outputs: the raw shares spread over (0, 1), not stuck.
    raw = keras.ops.convert_to_numpy(layer.proportions(data, np.any(data != MASK, axis=-1)))
    assert 0.2 < raw.mean() < 0.8


def test_a_model_with_the_layer_reloads_in_safe_mode(tmp_path):
    data = curves(n=20)
    config = fit_random_kernels(data, MASK, n_features=300, seed=4)
    inputs = keras.Input((None, data.shape[2]))
    outputs = RandomKernelFeatures(**config)(inputs, PaddingMask(MASK)(inputs))
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(data, verbose=0), model.predict(data, verbose=0),
                               atol=1e-6)
