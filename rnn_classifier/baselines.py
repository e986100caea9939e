"""Non-sequential baselines the classifier must beat: gradient boosting on summary statistics.

An astronomer who doubts a recurrent network first tries a tree ensemble on
per-curve statistics. `series_statistics` computes those statistics for any
data-contract array (every feature, padding ignored) and
`gradient_boosting_baseline` fits scikit-learn's HistGradientBoostingClassifier
on them plus the contextual features, with its default settings: the strong,
untuned baseline such a user would run. benchmarks/real_data.py compares the
classifier's defaults with it on real data.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

# Quantiles of every feature's values over a curve's real steps.
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def series_statistics(time_features: np.ndarray, mask_value: float = -99.0) -> np.ndarray:
    """Per-curve summary statistics of every feature, over its real (unpadded) steps.

    Per feature: mean, standard deviation, minimum, maximum, the QUANTILES,
    skewness, kurtosis, first and last value, the relative positions of the
    minimum and maximum, the linear trend against the step index, the mean
    and standard deviation of the step-to-step differences, and the lag-1
    autocorrelation; plus the number of observations. Undefined values (a
    one-step curve's spread) are 0.

    Args:
        time_features: (N, T, F) padded after the last observation with
            `mask_value` in every feature.
        mask_value: the padding value.

    Returns:
        float64 (N, 1 + 19 F).
    """
    time_features = np.asarray(time_features, dtype=np.float64)
    real = ~np.all(time_features == mask_value, axis=2)
    n_obs = real.sum(axis=1)
    values = np.where(real[..., None], time_features, np.nan)
    steps = np.arange(time_features.shape[1], dtype=np.float64)
    last_index = np.maximum(n_obs - 1, 0)
    # One-step curves have no spread and no differences: numpy warns about the
    # all-NaN slices, and their statistics become 0 below.
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=1)
        std = np.nanstd(values, axis=1)
        centred = values - mean[:, None]
        scaled_std = np.where(std > 0, std, np.nan)
        skewness = np.nanmean(centred**3, axis=1) / scaled_std**3
        kurtosis = np.nanmean(centred**4, axis=1) / scaled_std**4 - 3.0
        quantiles = np.nanquantile(values, QUANTILES, axis=1)  # (Q, N, F)
        first = time_features[:, 0]
        last = np.take_along_axis(time_features, last_index[:, None, None], axis=1)[:, 0]
        filled_low = np.where(real[..., None], time_features, np.inf)
        filled_high = np.where(real[..., None], time_features, -np.inf)
        span = np.maximum(last_index, 1)[:, None]
        position_min = filled_low.argmin(axis=1) / span
        position_max = filled_high.argmax(axis=1) / span
        step_mean = (np.where(real, steps, 0).sum(axis=1) / np.maximum(n_obs, 1))[:, None]
        step_centred = np.where(real, steps - step_mean, np.nan)[..., None]
        trend = (np.nansum(step_centred * centred, axis=1)
                 / np.nansum(step_centred**2, axis=1))
        differences = values[:, 1:] - values[:, :-1]
        difference_mean = np.nanmean(differences, axis=1)
        difference_std = np.nanstd(differences, axis=1)
        autocorrelation = (np.nanmean(centred[:, 1:] * centred[:, :-1], axis=1)
                           / scaled_std**2)
    columns = [mean, std, np.nanmin(values, axis=1), np.nanmax(values, axis=1), *quantiles,
               skewness, kurtosis, first, last, position_min, position_max, trend,
               difference_mean, difference_std, autocorrelation]
    features = np.concatenate([n_obs[:, None].astype(np.float64), *columns], axis=1)
    return np.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0)


def _features(split: Mapping[str, np.ndarray], mask_value: float) -> np.ndarray:
    columns = [series_statistics(split["time_features"], mask_value)]
    if split.get("contextual_features") is not None:
        columns.append(np.asarray(split["contextual_features"], dtype=np.float64))
    return np.hstack(columns)


def _integer_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    return labels.argmax(axis=1) if labels.ndim == 2 else labels


def gradient_boosting_baseline(train: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray],
                               n_classes: int, seed: int = 0,
                               mask_value: float = -99.0) -> np.ndarray:
    """Test probabilities of HistGradientBoostingClassifier (defaults) on summary statistics.

    Args:
        train: {"time_features", "labels"[, "contextual_features"]} of the
            split to fit on (labels one-hot or integer).
        test: the same for the split to score (labels not needed).
        n_classes: K; classes absent from train get probability 0.
        seed: the classifier's random_state.
        mask_value: padding value of the time features.

    Returns:
        (N_test, K) class probabilities.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    labels = _integer_labels(train["labels"])
    model = HistGradientBoostingClassifier(random_state=seed)
    model.fit(_features(train, mask_value), labels)
    proba = np.zeros((len(test["time_features"]), n_classes))
    proba[:, model.classes_] = model.predict_proba(_features(test, mask_value))
    return proba
