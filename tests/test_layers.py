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
    PiecewiseLinearEncoding,
    PriorShift,
    SeriesStatistics,
    quantile_bin_edges,
    xla_sorting,
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
                                   CurveAugmentation(MASK, 0.8, 0.1, 0.05, seed=4),
                                   PiecewiseLinearEncoding([[0.0, 1.0, 3.0], [-1.0, 2.0]])])
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


def _piecewise_linear(value: float, edges: list[float]) -> list[float]:
    """The encoding of one value, bin by bin, as Gorishniy et al. define it."""
    encoded = []
    for index, (low, high) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        fraction = (value - low) / (high - low)
        if index > 0:
            fraction = max(fraction, 0.0)
        if index < len(edges) - 2:
            fraction = min(fraction, 1.0)
        encoded.append(fraction)
    return encoded


def test_piecewise_linear_encoding_matches_its_definition_with_open_ends():
    edges = [[0.0, 1.0, 3.0, 7.0], [-1.0, 2.0]]
    values = np.array([[-2.0, -1.0], [0.5, 0.5], [2.0, 2.0], [3.0, 5.0], [9.0, -4.0]],
                      np.float32)
    encoded = np.asarray(PiecewiseLinearEncoding(edges)(values))
    assert encoded.shape == (5, 2 * 3)
    for row, (first, second) in enumerate(values):
        # The second feature has one bin, open at both ends; its other two columns stay 0.
        expected = _piecewise_linear(first, edges[0]) + _piecewise_linear(second, edges[1]) + [
            0.0, 0.0]
        np.testing.assert_allclose(encoded[row], expected, rtol=1e-6, atol=1e-6)


def test_quantile_edges_give_a_sentinel_its_own_edge():
    rng = np.random.default_rng(5)
    # 35% of the sources have no host (-1); the others a separation of 0-20 arcsec.
    separation = np.concatenate([np.full(350, -1.0), rng.uniform(0.0, 20.0, 650)])
    constant = np.full(1000, 3.0)
    edges = quantile_bin_edges(np.stack([separation, constant], axis=1), 10)
    # The three equal-count bins that fall wholly on the sentinel collapse into its edge.
    assert edges[0][0] == -1.0 and edges[0][1] > 0.0 and len(edges[0]) == 1 + 10 - 3
    assert edges[1] == [2.5, 3.5]
    encoded = np.asarray(PiecewiseLinearEncoding(edges)(
        np.array([[-1.0, 3.0], [0.3, 3.0]], np.float32)))
    # The sentinel and a real separation just above it differ by most of a bin, not by
    # the sliver of the feature's range that separates their values.
    assert encoded[0, 0] == 0.0 and encoded[1, 0] > 0.5


def test_class_balanced_edges_resolve_a_rare_classs_range():
    rng = np.random.default_rng(7)
    # 2,000 common sources spread over 0-20 arcsec; 20 rare ones within 1 arcsec.
    separation = np.concatenate([rng.uniform(0.0, 20.0, 2000), rng.uniform(0.0, 1.0, 20)])
    labels = np.repeat([0, 1], [2000, 20])
    plain = quantile_bin_edges(separation[:, None], 8)[0]
    balanced = quantile_bin_edges(separation[:, None], 8, labels)[0]
    # Counted plainly the rare class hides inside the first bin; balanced, about half
    # the edges fall within its range, and the extremes still enclose every value.
    assert sum(edge < 1.0 for edge in plain) == 1
    assert sum(edge < 1.0 for edge in balanced) >= 4
    assert balanced[0] == separation.min() and balanced[-1] == separation.max()
    assert balanced == sorted(set(balanced))
    # Equal classes weigh as plain counts do: the same edges up to interpolation.
    equal = np.repeat([0, 1], 1010)
    assert np.allclose(quantile_bin_edges(separation[:, None], 8, equal)[0], plain, atol=0.1)


@pytest.mark.parametrize("steps", [1, 2, 5, 16, 60])
def test_series_statistics_sort_the_same_way_with_the_sorting_network_for_xla(steps):
    import tensorflow as tf

    rng = np.random.default_rng(steps)
    curves = [rng.normal(size=(length, 3)).astype(np.float32) * 4.0
              for length in (steps, max(1, steps // 2), 1)]
    curves[0][:, 1] = np.round(curves[0][:, 1])  # ties
    batch = padded(curves, steps)
    real = np.asarray(PaddingMask(MASK)(batch))
    layer = SeriesStatistics()
    expected = np.asarray(layer(batch, real))

    def with_network(values, mask):
        with xla_sorting():
            return layer(values, mask)

    # Eagerly the network gives the same numbers exactly; compiled by XLA, the same up to
    # float rounding of the fused arithmetic around it.
    np.testing.assert_array_equal(np.asarray(with_network(batch, real)), expected)
    compiled = tf.function(with_network, jit_compile=True)(tf.constant(batch), tf.constant(real))
    np.testing.assert_allclose(np.asarray(compiled), expected, rtol=1e-5, atol=1e-5)
