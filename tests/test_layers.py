"""The custom layers, checked against figures computed by hand in numpy."""

import numpy as np
import pytest

from rnn_classifier.baselines import series_statistics
from rnn_classifier.calibration import shifted_logits, softmax
from rnn_classifier.layers import (
    STD_EPSILON,
    CurveAugmentation,
    CurveNormalisation,
    MaskedDownsample,
    MaskedPooling,
    PaddingMask,
    PriorShift,
    SeriesStatistics,
)

MASK = -99.0


def padded(curves: list[np.ndarray], steps: int) -> np.ndarray:
    batch = np.full((len(curves), steps, curves[0].shape[1]), MASK, np.float32)
    for row, curve in enumerate(curves):
        batch[row, :len(curve)] = curve
    return batch


def test_padding_mask_marks_steps_with_any_real_feature():
    batch = padded([np.array([[1.0, MASK], [MASK, MASK]]), np.array([[2.0, 3.0]])], 3)
    np.testing.assert_array_equal(np.asarray(PaddingMask(MASK)(batch)),
                                  [[True, False, False], [True, False, False]])


def test_curve_normalisation_takes_out_level_and_spread_and_reports_them():
    rng = np.random.default_rng(0)
    shape = rng.normal(size=(6, 2)).astype(np.float32)
    # The same shape, 100 times brighter and offset: one supernova near, one far.
    batch = padded([shape, 100.0 * shape + 5.0], 9)
    real = np.asarray(PaddingMask(MASK)(batch))
    sequence, statistics = (np.asarray(tensor) for tensor in CurveNormalisation()(batch, real))
    assert sequence.shape == (2, 9, 4) and statistics.shape == (2, 5)
    # The standardised half is (almost) the same for both curves ...
    np.testing.assert_allclose(sequence[0, :6, 2:], sequence[1, :6, 2:], atol=5e-3)
    spread = np.sqrt(shape.var(axis=0) + STD_EPSILON**2)
    np.testing.assert_allclose(sequence[0, :6, 2:],
                               (shape - shape.mean(axis=0)) / (spread + STD_EPSILON), atol=1e-4)
    # ... the raw half and the statistics keep what was taken out, and padding is zero.
    np.testing.assert_allclose(sequence[1, :6, :2], 100.0 * shape + 5.0, rtol=1e-5)
    np.testing.assert_allclose(statistics[1, :2], 100.0 * shape.mean(axis=0) + 5.0, rtol=1e-4)
    np.testing.assert_allclose(statistics[1, 2:4] - statistics[0, 2:4], np.log(100.0), atol=1e-2)
    np.testing.assert_allclose(statistics[:, 4], np.log(6.0), rtol=1e-6)
    assert not sequence[:, 6:].any()


def test_curve_normalisation_off_passes_the_zeroed_curve_and_the_count():
    batch = padded([np.ones((2, 3)), np.ones((4, 3))], 5)
    real = np.asarray(PaddingMask(MASK)(batch))
    sequence, statistics = (np.asarray(tensor)
                            for tensor in CurveNormalisation(normalise=False)(batch, real))
    assert sequence.shape == (2, 5, 3) and not sequence[0, 2:].any()
    np.testing.assert_allclose(statistics[:, 0], np.log([2.0, 4.0]), rtol=1e-6)


def test_masked_pooling_is_mean_and_max_of_real_steps_only():
    values = np.array([[[1.0], [3.0], [50.0]], [[-4.0], [-2.0], [50.0]]], np.float32)
    real = np.array([[True, True, False], [True, True, False]])
    np.testing.assert_allclose(np.asarray(MaskedPooling()(values, real)),
                               [[2.0, 3.0], [-3.0, -2.0]])


def test_masked_downsample_averages_windows_of_real_steps():
    values = np.arange(7, dtype=np.float32).reshape(1, 7, 1)
    real = np.array([[True] * 5 + [False] * 2])
    windows, windows_real = (np.asarray(tensor) for tensor in MaskedDownsample(3)(values, real))
    # Windows [0 1 2], [3 4 (pad)], [(pad)]: the partial window averages its real steps.
    np.testing.assert_allclose(windows[0, :2, 0], [1.0, 3.5])
    np.testing.assert_array_equal(windows_real, [[True, True, False]])


def test_prior_shift_matches_the_numpy_calibration_and_keeps_the_argmax():
    rng = np.random.default_rng(2)
    proba = softmax(rng.normal(size=(50, 3)) * 2).astype(np.float32)
    log_prior = np.log([0.9, 0.07, 0.03])
    for temperature in (0.5, 1.0, 3.0):
        shifted = np.asarray(PriorShift(log_prior, 0.5, temperature)(proba))
        logits = shifted_logits(proba, log_prior, 0.5)
        np.testing.assert_allclose(shifted, softmax(logits / temperature), atol=1e-5)
        np.testing.assert_array_equal(shifted.argmax(axis=1), logits.argmax(axis=1))
    # Weight 0 leaves the probabilities as they are; weight 1 favours the frequent class.
    np.testing.assert_allclose(np.asarray(PriorShift(log_prior, 0.0)(proba)), proba, atol=1e-5)
    assert (np.asarray(PriorShift(log_prior, 1.0)(proba)).argmax(axis=1) == 0).sum() > (
        proba.argmax(axis=1) == 0).sum()


def test_augmentation_keeps_a_window_of_each_curve_and_is_off_at_inference():
    rng = np.random.default_rng(3)
    lengths = (10, 4, 1)
    batch = padded([rng.normal(size=(length, 2)).astype(np.float32) for length in lengths], 12)
    layer = CurveAugmentation(MASK, min_kept=0.5, scale=0.1, jitter=0.05, seed=0)
    np.testing.assert_array_equal(np.asarray(layer(batch)), batch)
    augmented = np.asarray(layer(batch, training=True))
    kept = (augmented != MASK).all(axis=2).sum(axis=1)
    for row, length in enumerate(lengths):
        assert np.ceil(0.5 * length) <= kept[row] <= length
        # Padding stays trailing, and the values stay close to a run of the original.
        assert (augmented[row, kept[row]:] == MASK).all()
        original = batch[row, :length, 0]
        start = int(np.argmin([np.abs(original[offset:offset + kept[row]]
                                      - augmented[row, :kept[row], 0]).sum()
                               for offset in range(length - kept[row] + 1)]))
        np.testing.assert_allclose(augmented[row, :kept[row], 0],
                                   original[start:start + kept[row]], atol=1.0)


@pytest.mark.parametrize("layer", [PaddingMask(MASK), CurveNormalisation(), MaskedPooling(),
                                   MaskedDownsample(2), PriorShift([0.0, -1.0], 0.5, 2.0),
                                   CurveAugmentation(MASK, 0.8, 0.1, 0.05, seed=4)])
def test_config_round_trips(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def _summary(batch: np.ndarray) -> np.ndarray:
    return np.asarray(SeriesStatistics()(batch, np.asarray(PaddingMask(MASK)(batch))))


def test_series_statistics_are_the_gradient_boosting_features_squashed():
    rng = np.random.default_rng(3)
    curves = [rng.normal(size=(length, 3)) * rng.uniform(0.1, 5.0) for length in (12, 7, 2, 1)]
    curves[1][:, 1] = 2.0  # a constant feature: no spread, skewness or autocorrelation
    batch = padded(curves, 12)
    expected = series_statistics(batch, MASK)
    np.testing.assert_allclose(_summary(batch), np.sign(expected) * np.log1p(np.abs(expected)),
                               rtol=1e-3, atol=1e-4)
    assert _summary(batch).shape == (4, 1 + SeriesStatistics.PER_FEATURE * 3)


def test_series_statistics_ignore_padding_and_stay_finite_on_extreme_curves():
    rng = np.random.default_rng(4)
    curves = [rng.normal(size=(9, 2)), 1e6 * rng.standard_cauchy(size=(4, 2))]
    short, long = _summary(padded(curves, 9)), _summary(padded(curves, 40))
    np.testing.assert_allclose(short, long, rtol=1e-5, atol=1e-5)
    assert np.isfinite(long).all() and np.abs(long).max() < 40
