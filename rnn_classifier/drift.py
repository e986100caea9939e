"""Drift of newly labelled data against the reference set.

Before a retraining run trains on new batches it asks: do they look like the
data the classifier was built for? Four kinds of shift are measured, each
with the population stability index (PSI) so that one threshold means the
same thing everywhere:

* per feature: the values of every time feature at real (unpadded) steps,
  and every contextual feature, in quantile bins of the reference; the
  two-sample Kolmogorov-Smirnov statistic is reported beside it;
* class balance: the class proportions (a categorical PSI), with their total
  variation distance;
* sequence length: the number of real observations per light curve;
* cadence (only with a time column): the time between consecutive
  observations. The time column itself is left out of the per-feature
  measures: it holds dates, which move with every new batch by design.

PSI = sum((new - ref) * ln(new / ref)) over bins. Conventional reading:
below 0.1 no shift, 0.1 to 0.25 a moderate one, above 0.25 a significant one.
Its sampling noise is about (bins - 1) * (1 / n_ref + 1 / n_new), so the bins
are chosen such that each expects at least `MIN_PER_BIN` new values: a small
batch gets fewer, wider bins instead of a noisy verdict.

Everything here is numpy (and scipy for the KS p-value); no TensorFlow.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rnn_classifier.data import padding_mask

DEFAULT_THRESHOLD = 0.25
MAX_BINS = 10
MIN_PER_BIN = 20
# A bin empty in one sample (not the other) counts this many examples there, so
# it gives a large but finite PSI.
PSEUDO_COUNT = 0.5
# KS on more values than this uses a fixed random subsample (the statistic's
# resolution is already far finer than any threshold).
KS_MAX_VALUES = 200_000


@dataclasses.dataclass
class DriftData:
    """The arrays drift is measured on (all splits pooled)."""

    time_features: np.ndarray
    contextual_features: np.ndarray | None
    labels: np.ndarray  # (N,) class indices

    def __len__(self) -> int:
        return len(self.labels)


def _proportions(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    counts = np.where(counts > 0, counts, PSEUDO_COUNT)
    return counts / counts.sum()


def categorical_psi(reference_counts: np.ndarray, new_counts: np.ndarray) -> float:
    """PSI between two histograms over the same categories.

    Categories empty in both carry no information and are dropped; a
    category empty in one only counts as PSEUDO_COUNT there.
    """
    reference_counts = np.asarray(reference_counts)
    new_counts = np.asarray(new_counts)
    used = (reference_counts > 0) | (new_counts > 0)
    if not used.any():
        return 0.0
    expected, actual = _proportions(reference_counts[used]), _proportions(new_counts[used])
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def n_bins(n_new: int, max_bins: int = MAX_BINS) -> int:
    """Bins such that each expects at least MIN_PER_BIN new values (2..max_bins)."""
    return int(min(max_bins, max(2, n_new // MIN_PER_BIN)))


def psi(reference: np.ndarray, new: np.ndarray, bins: int | None = None) -> float:
    """PSI of `new` against `reference` in quantile bins of the reference.

    Bins whose edges coincide (discrete or constant values) are merged, so a
    constant feature that stays constant has PSI 0; values below or above
    the reference's range fall in two extra bins.
    """
    reference = np.asarray(reference, dtype=np.float64).ravel()
    new = np.asarray(new, dtype=np.float64).ravel()
    if reference.size == 0 or new.size == 0:
        return 0.0
    bins = bins or n_bins(new.size)
    edges = np.unique(np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    low, high = reference.min(), reference.max()

    def histogram(values: np.ndarray) -> np.ndarray:
        # Values outside the reference's range get a bin of their own on each
        # side, so a shift beyond the reference (even of a constant) is seen.
        index = np.searchsorted(edges, values, side="right") + 1
        index = np.where(values < low, 0, np.where(values > high, edges.size + 2, index))
        return np.bincount(index, minlength=edges.size + 3)

    return categorical_psi(histogram(reference), histogram(new))


def _subsample(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if values.size <= KS_MAX_VALUES:
        return values
    return rng.choice(values, KS_MAX_VALUES, replace=False)


def ks(reference: np.ndarray, new: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value."""
    from scipy.stats import ks_2samp

    reference = np.asarray(reference, dtype=np.float64).ravel()
    new = np.asarray(new, dtype=np.float64).ravel()
    if reference.size == 0 or new.size == 0:
        return 0.0, 1.0
    rng = np.random.default_rng(0)
    result = ks_2samp(_subsample(reference, rng), _subsample(new, rng))
    return float(result.statistic), float(result.pvalue)


def _distribution_shift(reference: np.ndarray, new: np.ndarray) -> dict[str, float]:
    statistic, pvalue = ks(reference, new)
    return {"psi": psi(reference, new), "ks": statistic, "ks_pvalue": pvalue,
            "reference_median": float(np.median(reference)) if reference.size else None,
            "new_median": float(np.median(new)) if new.size else None}


def _gaps(time_features: np.ndarray, time_column: int, mask_value: float) -> np.ndarray:
    """Time between consecutive real observations, pooled over sequences."""
    real = ~padding_mask(time_features, mask_value)
    times = np.asarray(time_features[..., time_column], dtype=np.float64)
    both_real = real[:, 1:] & real[:, :-1]
    return (times[:, 1:] - times[:, :-1])[both_real]


def drift_report(reference: DriftData, new: DriftData, class_names: list[str],
                 mask_value: float = -99.0, time_column: int = -1) -> dict:
    """Every drift measure of `new` against `reference`, as one JSON-serialisable dict.

    Returns:
        ``{"n_reference", "n_new", "measures": {name: {"psi", "ks", "ks_pvalue",
        "reference_median", "new_median"}}, "class_balance": {"reference",
        "new", "tvd"}}``. Measure names are ``time_feature_<i>``,
        ``contextual_feature_<j>``, ``class_balance``, ``observations`` and
        (with a time column) ``cadence``. With no new examples the measures
        are empty.
    """
    report: dict = {"n_reference": len(reference), "n_new": len(new), "measures": {},
                    "class_balance": None}
    if len(new) == 0 or len(reference) == 0:
        return report
    measures = report["measures"]
    reference_real = ~padding_mask(reference.time_features, mask_value)
    new_real = ~padding_mask(new.time_features, mask_value)
    for feature in range(reference.time_features.shape[2]):
        if feature == time_column:
            continue  # dates move with every batch; the cadence measure covers time
        measures[f"time_feature_{feature}"] = _distribution_shift(
            reference.time_features[..., feature][reference_real],
            new.time_features[..., feature][new_real])
    if reference.contextual_features is not None and new.contextual_features is not None:
        for feature in range(reference.contextual_features.shape[1]):
            measures[f"contextual_feature_{feature}"] = _distribution_shift(
                reference.contextual_features[:, feature], new.contextual_features[:, feature])

    k = len(class_names)
    reference_counts = np.bincount(reference.labels, minlength=k)
    new_counts = np.bincount(new.labels, minlength=k)
    reference_share = reference_counts / reference_counts.sum()
    new_share = new_counts / new_counts.sum()
    measures["class_balance"] = {"psi": categorical_psi(reference_counts, new_counts)}
    report["class_balance"] = {
        "reference": dict(zip(class_names, reference_share.tolist(), strict=True)),
        "new": dict(zip(class_names, new_share.tolist(), strict=True)),
        "tvd": float(0.5 * np.abs(reference_share - new_share).sum())}

    measures["observations"] = _distribution_shift(reference_real.sum(axis=1),
                                                   new_real.sum(axis=1))
    if time_column >= 0:
        measures["cadence"] = _distribution_shift(
            _gaps(reference.time_features, time_column, mask_value),
            _gaps(new.time_features, time_column, mask_value))
    return report


def exceeded(report: dict, threshold: float) -> dict[str, float]:
    """The measures whose PSI is above `threshold` (name -> PSI), worst first."""
    over = {name: values["psi"] for name, values in report["measures"].items()
            if values["psi"] > threshold}
    return dict(sorted(over.items(), key=lambda item: -item[1]))


def max_psi(report: dict) -> float:
    """The largest PSI of the report (0 when nothing was measured)."""
    return max((values["psi"] for values in report["measures"].values()), default=0.0)
