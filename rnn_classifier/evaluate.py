"""Judging a classifier the way astronomers judge it.

Everything here works on numpy arrays (true labels and predicted
probabilities) and, for early classification, on a ``predict_proba`` callable,
so it never imports TensorFlow and its tests run in seconds.

What it produces:

* :func:`classification_metrics`: accuracy, balanced accuracy, macro-F1,
  macro ROC-AUC, calibration error, per-class scores, the confusion matrix,
  ROC / PR curves and a reliability table, as one JSON-serialisable dict.
* :func:`auc_vs_observations`: ROC-AUC after the first ``n`` observations of
  every light curve, the paper's measure of early classification.
* ``plot_*``: the figures (PNG) people look at, drawn in the style of the
  paper's headline figure.
* :func:`write_report` / :func:`evaluate_predictions`: ``metrics.json``, the
  figures and one self-contained ``report.html``.

Conventions: an undefined value (the ROC-AUC of a class absent from the
labels, the precision of a class never predicted) is ``None``, never NaN, so
``json.dumps(..., allow_nan=False)`` always succeeds and Kubeflow Pipelines
can store every result.
"""

import base64
import dataclasses
import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

FIGURE_DPI = 110

# ROC and PR curves are stored with at most this many points. On a survey of
# 30,000 stars sklearn's PR curve has one point per star, which would make
# metrics.json megabytes long for no visible difference; AUC and AP are always
# computed from the full curve.
MAX_CURVE_POINTS = 1000

# The splits the summary shows first, in this order; any other split follows.
PREFERRED_SPLIT_ORDER = ("validation", "test")

# Captions for the figure keys that evaluate_predictions writes; other keys are
# shown with their key as caption.
_FIGURE_CAPTIONS = {
    "confusion_matrix": "Confusion matrix (row-normalised; counts in brackets)",
    "roc_curves": "ROC curves (one class against the rest)",
    "pr_curves": "Precision-recall curves (dashed: prevalence, a random classifier)",
    "reliability": "Reliability diagram (calibration of the top-class probability)",
    "auc_vs_observations": "ROC-AUC against number of observations",
}

_SUMMARY_COLUMNS = (
    ("accuracy", "Accuracy"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("macro_f1", "Macro F1"),
    ("macro_roc_auc", "Macro ROC-AUC"),
    ("ece", "ECE"),
)

_SUMMARY_NOTE = (
    '<p class="note">Balanced accuracy is the mean recall over classes, the '
    "fair score when classes are imbalanced. Macro ROC-AUC is one class against "
    "the rest, averaged over classes (for two classes, the AUC of the second). "
    "ECE is the expected calibration error of the top-class probability. "
    "n/a marks a value that is undefined, e.g. for a class absent from the split.</p>"
)

_PER_CLASS_COLUMNS = (
    ("precision", "Precision"),
    ("recall", "Recall"),
    ("f1", "F1"),
    ("roc_auc", "ROC-AUC"),
    ("pr_auc", "PR-AUC (AP)"),
)


# --------------------------------------------------------------------------
# Input checks and JSON hygiene
# --------------------------------------------------------------------------


def _as_class_indices(y_true: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Returns labels as an (N,) int array, accepting one-hot (N, K) too.

    The data contract stores labels one-hot, so callers would otherwise each
    have to remember the argmax.
    """
    labels = np.asarray(y_true)
    if labels.ndim == 2:
        if n_classes is not None and labels.shape[1] != n_classes:
            raise ValueError(
                f"one-hot labels have {labels.shape[1]} columns but there are {n_classes} classes"
            )
        labels = np.argmax(labels, axis=1)
    if labels.ndim != 1:
        raise ValueError(
            f"labels must be (N,) class indices or (N, K) one-hot, got shape {labels.shape}"
        )
    if labels.size and not np.all(np.equal(np.mod(labels, 1), 0)):
        raise ValueError("labels must be whole numbers (class indices)")
    labels = labels.astype(np.int64)
    if n_classes is not None and labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must lie in 0..{n_classes - 1}, found {labels.min()}..{labels.max()}"
        )
    return labels


def _check_predictions(
    y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validates a (labels, probabilities) pair and returns clean arrays."""
    probabilities = np.asarray(proba, dtype=np.float64)
    if probabilities.ndim != 2:
        raise ValueError(f"probabilities must be (N, K), got shape {probabilities.shape}")
    n_examples, n_classes = probabilities.shape
    if n_classes < 2:
        raise ValueError(f"need at least 2 classes, probabilities have {n_classes} columns")
    if n_examples == 0:
        raise ValueError("no examples to evaluate (0 rows)")
    if not np.all(np.isfinite(probabilities)):
        raise ValueError("probabilities contain NaN or infinite values")
    if class_names is not None:
        if len(class_names) != n_classes:
            raise ValueError(f"{len(class_names)} class names for {n_classes} probability columns")
        if len(set(class_names)) != len(class_names):
            raise ValueError(f"class names must be unique, got {list(class_names)}")
    labels = _as_class_indices(y_true, n_classes)
    if labels.shape[0] != n_examples:
        raise ValueError(f"{labels.shape[0]} labels for {n_examples} rows of probabilities")
    return labels, probabilities


def _finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _jsonable(value: Any) -> Any:
    """Converts numpy scalars/arrays to plain Python; NaN and inf become None."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return [_jsonable(item) for item in value.tolist()]
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return _finite_or_none(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _safe_ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator) / float(denominator) if denominator else None


def _mean_of_defined(values: Sequence[float | None]) -> float | None:
    defined = [value for value in values if value is not None]
    return float(np.mean(defined)) if defined else None


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------


def _one_vs_rest_auc(is_positive: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC-AUC of one class against the rest; None when only one side exists."""
    n_positive = int(is_positive.sum())
    if n_positive == 0 or n_positive == is_positive.size:
        return None
    return _finite_or_none(roc_auc_score(is_positive, scores))


def _per_class_and_macro_auc(
    labels: np.ndarray, probabilities: np.ndarray
) -> tuple[list[float | None], float | None]:
    """Per-class one-vs-rest ROC-AUC and the macro AUC built from them.

    For two classes the macro AUC is the binary AUC of the positive class,
    scored on ``probabilities[:, 1]``. The original project scored column 0
    and so reported 1 - AUC (and picked its "best" model by it).
    """
    n_classes = probabilities.shape[1]
    per_class = [_one_vs_rest_auc(labels == k, probabilities[:, k]) for k in range(n_classes)]
    if n_classes == 2:
        return per_class, _one_vs_rest_auc(labels == 1, probabilities[:, 1])
    # Averaging over the classes whose AUC is defined keeps a model evaluable on
    # a split that happens to miss a rare class; the per-class None shows it.
    return per_class, _mean_of_defined(per_class)


def _reliability_table(
    labels: np.ndarray, probabilities: np.ndarray, n_bins: int
) -> dict[str, list]:
    """Bins the top-class confidence into equal-width bins over [0, 1]."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    confidence = probabilities.max(axis=1)
    is_correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bins are (lo, hi], the usual convention (Guo et al. 2017); searching the
    # inner edges only puts a confidence of exactly 0 in the first bin.
    bin_index = np.searchsorted(edges[1:-1], confidence, side="left")
    counts = np.bincount(bin_index, minlength=n_bins)
    correct_per_bin = np.bincount(bin_index, weights=is_correct, minlength=n_bins)
    confidence_per_bin = np.bincount(bin_index, weights=confidence, minlength=n_bins)
    return {
        "bin_edges": edges.tolist(),
        "bin_centers": ((edges[:-1] + edges[1:]) / 2).tolist(),
        "accuracy": [_safe_ratio(c, n) for c, n in zip(correct_per_bin, counts, strict=True)],
        "confidence": [_safe_ratio(c, n) for c, n in zip(confidence_per_bin, counts, strict=True)],
        "counts": [int(n) for n in counts],
    }


def _ece_from_reliability(reliability: Mapping[str, list]) -> float:
    total = sum(reliability["counts"])
    return float(
        sum(
            count / total * abs(accuracy - confidence)
            for count, accuracy, confidence in zip(
                reliability["counts"],
                reliability["accuracy"],
                reliability["confidence"],
                strict=True,
            )
            if count
        )
    )


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error of the top-class confidence.

    The top-class probability of each example is binned into ``n_bins``
    equal-width bins over [0, 1] (bins are ``(lo, hi]``); the ECE is the
    example-weighted mean over bins of ``|accuracy - mean confidence|``.

    Args:
        y_true: (N,) class indices, or (N, K) one-hot labels.
        proba: (N, K) predicted probabilities.
        n_bins: Number of equal-width confidence bins.

    Returns:
        The ECE, between 0 (perfectly calibrated) and 1.

    Raises:
        ValueError: If the shapes disagree or there are no examples.
    """
    labels, probabilities = _check_predictions(y_true, proba)
    return _ece_from_reliability(_reliability_table(labels, probabilities, n_bins))


def _confusion_counts(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(labels * n_classes + predicted, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def _row_normalise(counts: np.ndarray) -> np.ndarray:
    row_totals = counts.sum(axis=1, keepdims=True)
    # A class with no examples gets a row of zeros rather than 0/0 = NaN.
    return np.divide(
        counts,
        row_totals,
        out=np.zeros(counts.shape, dtype=np.float64),
        where=row_totals > 0,
    )


def _thinned_indices(n_points: int) -> np.ndarray:
    """Evenly spread indices, first and last always kept, at most MAX_CURVE_POINTS."""
    if n_points <= MAX_CURVE_POINTS:
        return np.arange(n_points)
    return np.unique(np.linspace(0, n_points - 1, MAX_CURVE_POINTS).round().astype(np.int64))


def _roc_curve_points(is_positive: np.ndarray, scores: np.ndarray) -> dict[str, list] | None:
    if is_positive.all() or not is_positive.any():
        return None
    fpr, tpr, thresholds = roc_curve(is_positive, scores)
    # sklearn's first threshold is +inf ("predict nothing positive"); KFP cannot
    # serialise inf, and no probability exceeds 1.
    thresholds = np.where(np.isfinite(thresholds), thresholds, 1.0)
    kept = _thinned_indices(fpr.size)
    return {
        "fpr": fpr[kept].tolist(),
        "tpr": tpr[kept].tolist(),
        "thresholds": thresholds[kept].tolist(),
    }


def _pr_curve_points(is_positive: np.ndarray, scores: np.ndarray) -> dict[str, Any] | None:
    if not is_positive.any():
        return None
    precision, recall, thresholds = precision_recall_curve(
        is_positive, scores, drop_intermediate=True
    )
    kept = _thinned_indices(precision.size)
    # sklearn's last (precision 1, recall 0) point has no threshold.
    kept_thresholds = kept[kept < thresholds.size]
    return {
        "precision": precision[kept].tolist(),
        "recall": recall[kept].tolist(),
        "thresholds": thresholds[kept_thresholds].tolist(),
        # A random classifier's precision: the baseline the curve must beat.
        "prevalence": float(is_positive.mean()),
    }


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str], n_bins: int = 10
) -> dict:
    """Computes every score the project reports for one split.

    Args:
        y_true: (N,) int class indices (one-hot (N, K) labels are accepted too).
        proba: (N, K) predicted probabilities; the predicted class is the argmax.
        class_names: K class names, in column order.
        n_bins: Number of equal-width confidence bins for the ECE and the
            reliability table.

    Returns:
        A JSON-serialisable dict with keys ``n_examples``, ``accuracy``,
        ``balanced_accuracy`` (mean recall over the classes present),
        ``macro_f1`` (over the classes present in labels or predictions, as
        sklearn), ``macro_roc_auc`` (one-vs-rest macro over the classes whose
        AUC is defined; for K == 2 the binary AUC on ``proba[:, 1]``), ``ece``,
        ``per_class`` ({name: {precision, recall, f1, roc_auc, pr_auc,
        support}}), ``confusion_matrix`` ({labels, counts, normalized}; rows
        are the true class), ``roc_curves`` ({name: {fpr, tpr, thresholds}}),
        ``pr_curves`` ({name: {precision, recall, thresholds, prevalence}})
        and ``reliability`` ({bin_edges, bin_centers, accuracy, confidence,
        counts}). Undefined values are None, never NaN; a curve that cannot
        be drawn (the class is absent, or is every example) is None.

    Raises:
        ValueError: If the shapes, labels or class names are inconsistent.
    """
    labels, probabilities = _check_predictions(y_true, proba, class_names)
    class_names = [str(name) for name in class_names]
    n_classes = len(class_names)
    predicted = probabilities.argmax(axis=1)

    counts = _confusion_counts(labels, predicted, n_classes)
    true_positives = np.diag(counts)
    support = counts.sum(axis=1)
    predicted_totals = counts.sum(axis=0)
    per_class_auc, macro_auc = _per_class_and_macro_auc(labels, probabilities)

    per_class: dict[str, dict] = {}
    recalls, f1_scores = [], []
    for k, name in enumerate(class_names):
        is_positive = labels == k
        recall = _safe_ratio(true_positives[k], support[k])
        f1_denominator = support[k] + predicted_totals[k]
        f1 = _safe_ratio(2 * true_positives[k], f1_denominator)
        average_precision = (
            _finite_or_none(average_precision_score(is_positive, probabilities[:, k]))
            if is_positive.any()
            else None
        )
        per_class[name] = {
            "precision": _safe_ratio(true_positives[k], predicted_totals[k]),
            "recall": recall,
            "f1": f1,
            "roc_auc": per_class_auc[k],
            "pr_auc": average_precision,
            "support": int(support[k]),
        }
        recalls.append(recall)
        f1_scores.append(f1)

    reliability = _reliability_table(labels, probabilities, n_bins)
    metrics = {
        "n_examples": int(labels.size),
        "accuracy": float(true_positives.sum() / labels.size),
        "balanced_accuracy": _mean_of_defined(recalls),
        "macro_f1": _mean_of_defined(f1_scores),
        "macro_roc_auc": macro_auc,
        "ece": _ece_from_reliability(reliability),
        "per_class": per_class,
        "confusion_matrix": {
            "labels": class_names,
            "counts": counts.tolist(),
            "normalized": _row_normalise(counts).tolist(),
        },
        "roc_curves": {
            name: _roc_curve_points(labels == k, probabilities[:, k])
            for k, name in enumerate(class_names)
        },
        "pr_curves": {
            name: _pr_curve_points(labels == k, probabilities[:, k])
            for k, name in enumerate(class_names)
        },
        "reliability": reliability,
    }
    return _jsonable(metrics)


MAJORITY_RECALL_TARGET = 0.95


def recall_at_majority_recall(
    validation: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    class_names: Sequence[str],
    target: float = MAJORITY_RECALL_TARGET,
) -> dict | None:
    """Each class's test recall when the most frequent class keeps `target` recall.

    The survey question "how complete are the supernovae if 95% of variable
    stars stay variable stars?": a curve is called the most frequent class
    (in the validation split) when that class's probability reaches a
    threshold, otherwise the most probable of the other classes. The threshold
    is set on the validation split, where it gives the majority class `target`
    recall, and applied unchanged to the test split.

    Args:
        validation: (labels, proba) of the split that sets the threshold.
        test: (labels, proba) of the split that is scored.
        class_names: K names, in column order.
        target: recall the majority class must keep on validation.

    Returns:
        {"majority_class", "target", "threshold", "recall": {name: test recall}},
        or None when there are fewer than two classes.
    """
    validation_labels, validation_proba = _check_predictions(*validation, class_names)
    test_labels, test_proba = _check_predictions(*test, class_names)
    if len(class_names) < 2:
        return None
    majority = int(np.bincount(validation_labels, minlength=len(class_names)).argmax())
    scores = validation_proba[validation_labels == majority, majority]
    threshold = float(np.quantile(scores, 1.0 - target, method="lower"))
    others = test_proba.copy()
    others[:, majority] = -np.inf
    predicted = np.where(test_proba[:, majority] >= threshold, majority, others.argmax(axis=1))
    recall = {name: _safe_ratio(float(np.sum((predicted == k) & (test_labels == k))),
                                float(np.sum(test_labels == k)))
              for k, name in enumerate(class_names)}
    return _jsonable({"majority_class": class_names[majority], "target": target,
                      "threshold": threshold, "recall": recall})


# --------------------------------------------------------------------------
# Early classification
# --------------------------------------------------------------------------


def auc_vs_observations(
    predict_proba: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    time_features: np.ndarray,
    contextual_features: np.ndarray | None,
    y_true: np.ndarray,
    class_names: Sequence[str],
    mask_value: float = -99.0,
    max_observations: int | None = None,
) -> dict:
    """ROC-AUC as a function of how many observations the classifier has seen.

    For each n = 1..max_observations every light curve is cut to its first n
    real observations (every later step is set to ``mask_value``; a curve
    with fewer than n observations stays whole), the model predicts, and the
    per-class one-vs-rest ROC-AUC and the macro AUC are computed exactly as in
    :func:`classification_metrics`. A time step is padding when all of its
    features equal ``mask_value``.

    Args:
        predict_proba: Called as ``predict_proba(time_features,
            contextual_features)``; returns (N, K) probabilities. It receives
            a fresh truncated copy each time; the caller's array is never
            modified.
        time_features: (N, T, F) light curves, padded with ``mask_value``.
        contextual_features: (N, M) static features, or None; passed through.
        y_true: (N,) class indices, or (N, K) one-hot labels.
        class_names: K class names, in column order.
        mask_value: The padding value of the time features.
        max_observations: Largest n; defaults to the longest curve's number
            of real observations.

    Returns:
        ``{"n_observations": [1, 2, ...], "macro": [...], "per_class": {name:
        [...]}, "curves_with_at_least_n": [...]}``: AUCs are None where
        undefined; the last list counts the curves that have at least n real
        observations (the ones that can still change with n).

    Raises:
        ValueError: If shapes disagree or ``max_observations`` is below 1.
    """
    features = np.asarray(time_features)
    if features.ndim != 3:
        raise ValueError(f"time features must be (N, T, F), got shape {features.shape}")
    n_classes = len(class_names)
    labels = _as_class_indices(y_true, n_classes)
    if labels.shape[0] != features.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {features.shape[0]} light curves")
    if contextual_features is not None and len(contextual_features) != features.shape[0]:
        raise ValueError(
            f"{len(contextual_features)} contextual rows for {features.shape[0]} light curves"
        )

    is_real = ~np.all(features == mask_value, axis=-1)
    # Position of each real step among the curve's real steps (1-based), so
    # that padding in the middle of a curve does not count as an observation.
    observation_rank = np.cumsum(is_real, axis=1)
    observations_per_curve = is_real.sum(axis=1)
    longest = int(observations_per_curve.max()) if observations_per_curve.size else 0
    if max_observations is None:
        if longest == 0:
            raise ValueError(f"no light curve has a real observation (all steps are {mask_value})")
        max_observations = longest
    if max_observations < 1:
        raise ValueError(f"max_observations must be at least 1, got {max_observations}")

    result: dict[str, Any] = {
        "n_observations": [],
        "macro": [],
        "per_class": {str(name): [] for name in class_names},
        "curves_with_at_least_n": [],
    }
    previous: tuple[list[float | None], float | None] | None = None
    for n_seen in range(1, max_observations + 1):
        # Once n exceeds every curve's length the input no longer changes; a
        # full prediction pass over the survey is too costly to repeat for nothing.
        if previous is None or n_seen <= longest:
            truncated = features.copy()
            truncated[observation_rank > n_seen] = mask_value
            probabilities = np.asarray(predict_proba(truncated, contextual_features))
            if probabilities.shape != (labels.size, n_classes):
                raise ValueError(
                    f"predict_proba returned shape {probabilities.shape}, "
                    f"expected {(labels.size, n_classes)}"
                )
            probabilities = probabilities.astype(np.float64)
            previous = _per_class_and_macro_auc(labels, probabilities)
        per_class_auc, macro_auc = previous
        result["n_observations"].append(n_seen)
        result["macro"].append(macro_auc)
        for name, auc in zip(class_names, per_class_auc, strict=True):
            result["per_class"][str(name)].append(auc)
        result["curves_with_at_least_n"].append(int((observations_per_curve >= n_seen).sum()))
    return _jsonable(result)


# --------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------


def _class_colours(n_classes: int) -> list:
    from matplotlib import colormaps

    palette = colormaps["tab10" if n_classes <= 10 else "tab20"]
    return [palette(k % palette.N) for k in range(n_classes)]


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=FIGURE_DPI, bbox_inches="tight", facecolor="white")
    # A Figure made without pyplot is not registered anywhere: dropping the
    # last reference frees it, and clearing makes that prompt.
    figure.clear()
    return path


def _none_to_nan(values: Sequence[float | None]) -> np.ndarray:
    # matplotlib leaves a gap at NaN, which is how an undefined AUC should look.
    return np.array([np.nan if value is None else value for value in values], dtype=float)


def _format_score(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def plot_confusion_matrix(confusion: dict, title: str, path: str | Path) -> Path:
    """Draws a confusion matrix like the paper's: fractions coloured, counts shown.

    Colours are the row-normalised fractions (the recall of each true class
    on the diagonal), so a rare class reads as clearly as a common one; each
    cell shows the fraction and, in brackets, the count.

    Args:
        confusion: The ``confusion_matrix`` entry of
            :func:`classification_metrics` (labels, counts, normalized).
        title: Figure title.
        path: Where to write the PNG.

    Returns:
        The path written.
    """
    labels = [str(label) for label in confusion["labels"]]
    counts = np.asarray(confusion["counts"], dtype=np.int64)
    fractions = np.asarray(confusion["normalized"], dtype=float)
    n_classes = len(labels)
    side = max(4.5, 1.0 + 1.0 * n_classes)
    figure = Figure(figsize=(side + 1.3, side), dpi=FIGURE_DPI)
    axes = figure.add_subplot()
    image = axes.imshow(fractions, cmap="Oranges", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="Fraction of true class")

    font_size = max(6.0, 12.0 - 0.5 * n_classes)
    for row in range(n_classes):
        for column in range(n_classes):
            fraction = fractions[row, column]
            axes.text(
                column,
                row,
                f"{fraction:.2f}\n({counts[row, column]})",
                ha="center",
                va="center",
                fontsize=font_size,
                color="white" if fraction > 0.5 else "black",
            )
    long_names = max((len(label) for label in labels), default=0) > 6
    axes.set_xticks(
        range(n_classes),
        labels=labels,
        rotation=35 if long_names else 0,
        ha="right" if long_names else "center",
    )
    # The class size beside each row: with 30,000 stars and 60 supernovae the
    # same fraction means very different evidence.
    axes.set_yticks(
        range(n_classes),
        labels=[
            f"{label}\n(n={total})" for label, total in zip(labels, counts.sum(axis=1), strict=True)
        ],
    )
    axes.set_xlabel("Predicted label")
    axes.set_ylabel("True label")
    axes.set_title(title)
    return _save(figure, path)


_MODEL_MARKERS = ("o", "^", "s", "D", "v", "P", "X", "*")
_MODEL_LINESTYLES = ("-", "--", ":", "-.")


def plot_auc_vs_observations(curves: dict[str, dict], path: str | Path) -> Path:
    """Plots ROC-AUC against number of observations, like the paper's figure.

    Each entry is one model (e.g. "GRU focal loss"), drawn as its macro AUC
    on shared axes so models can be compared. With a single model its
    per-class AUCs are drawn too, thinner, to show which class needs more
    observations.

    Args:
        curves: ``{label: auc_vs_observations result}``.
        path: Where to write the PNG.

    Returns:
        The path written.

    Raises:
        ValueError: If ``curves`` is empty.
    """
    if not curves:
        raise ValueError("no AUC curves to plot")
    figure = Figure(figsize=(8.0, 5.0), dpi=FIGURE_DPI)
    axes = figure.add_subplot()
    single_model = len(curves) == 1
    for index, (label, curve) in enumerate(curves.items()):
        n_observations = curve["n_observations"]
        axes.plot(
            n_observations,
            _none_to_nan(curve["macro"]),
            marker=_MODEL_MARKERS[index % len(_MODEL_MARKERS)],
            linestyle=_MODEL_LINESTYLES[(index // len(_MODEL_MARKERS)) % len(_MODEL_LINESTYLES)],
            linewidth=2.0,
            markersize=5,
            label=f"{label}: macro average" if single_model else str(label),
            color="black" if single_model else None,
            # Above the per-class lines, which would otherwise hide it.
            zorder=3,
        )
        if single_model:
            class_names = list(curve["per_class"])
            for colour, name in zip(_class_colours(len(class_names)), class_names, strict=True):
                axes.plot(
                    n_observations,
                    _none_to_nan(curve["per_class"][name]),
                    linestyle="--",
                    linewidth=1.2,
                    marker=".",
                    color=colour,
                    label=str(name),
                )
    axes.axhline(0.5, color="grey", linewidth=0.8, linestyle=":", label="chance")
    axes.set_xlabel("Number of observations")
    axes.set_ylabel("ROC-AUC")
    axes.set_ylim(top=1.005)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=9)
    axes.set_title("Early classification: ROC-AUC against number of observations")
    return _save(figure, path)


def plot_roc_curves(metrics: dict, path: str | Path, *, title: str | None = None) -> Path:
    """Plots one-vs-rest ROC curves, one per class, with each AUC in the legend.

    Args:
        metrics: A :func:`classification_metrics` result.
        path: Where to write the PNG.
        title: Figure title; a default names the macro AUC.

    Returns:
        The path written.
    """
    figure = Figure(figsize=(6.0, 5.5), dpi=FIGURE_DPI)
    axes = figure.add_subplot()
    class_names = list(metrics["roc_curves"])
    for colour, name in zip(_class_colours(len(class_names)), class_names, strict=True):
        curve = metrics["roc_curves"][name]
        if curve is None:
            continue
        auc = metrics["per_class"][name]["roc_auc"]
        axes.plot(
            curve["fpr"],
            curve["tpr"],
            color=colour,
            linewidth=1.8,
            label=f"{name} (AUC = {_format_score(auc)})",
        )
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_xlabel("False positive rate")
    axes.set_ylabel("True positive rate (recall)")
    axes.set_title(
        title or f"ROC, one class vs rest (macro AUC = {_format_score(metrics['macro_roc_auc'])})"
    )
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=9)
    return _save(figure, path)


def plot_pr_curves(metrics: dict, path: str | Path, *, title: str | None = None) -> Path:
    """Plots precision-recall curves per class, each with its prevalence baseline.

    For a rare class the ROC curve flatters; precision against recall shows
    how many of the candidates sent for follow-up are real. The dashed line
    of the same colour is the precision of a random classifier (the class's
    prevalence).

    Args:
        metrics: A :func:`classification_metrics` result.
        path: Where to write the PNG.
        title: Figure title.

    Returns:
        The path written.
    """
    figure = Figure(figsize=(6.0, 5.5), dpi=FIGURE_DPI)
    axes = figure.add_subplot()
    class_names = list(metrics["pr_curves"])
    for colour, name in zip(_class_colours(len(class_names)), class_names, strict=True):
        curve = metrics["pr_curves"][name]
        if curve is None:
            continue
        average_precision = metrics["per_class"][name]["pr_auc"]
        axes.step(
            curve["recall"],
            curve["precision"],
            where="post",
            color=colour,
            linewidth=1.8,
            label=(
                f"{name} (AP = {_format_score(average_precision)}, "
                f"prevalence = {_format_score(curve['prevalence'])})"
            ),
        )
        axes.axhline(curve["prevalence"], color=colour, linestyle="--", linewidth=1)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("Recall")
    axes.set_ylabel("Precision")
    axes.set_title(title or "Precision-recall, one class vs rest")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=9)
    return _save(figure, path)


def plot_reliability_diagram(metrics: dict, path: str | Path, *, title: str | None = None) -> Path:
    """Plots how often the top class is right against how sure the model was.

    Top panel: accuracy per confidence bin (bars) against the diagonal of
    perfect calibration, with the mean confidence of each bin marked. Bottom
    panel: how many examples fall in each bin (log scale, since most usually
    sit near 1).

    Args:
        metrics: A :func:`classification_metrics` result.
        path: Where to write the PNG.
        title: Figure title; a default names the ECE.

    Returns:
        The path written.
    """
    reliability = metrics["reliability"]
    edges = np.asarray(reliability["bin_edges"], dtype=float)
    centres = np.asarray(reliability["bin_centers"], dtype=float)
    widths = np.diff(edges)
    counts = np.asarray(reliability["counts"], dtype=float)

    figure = Figure(figsize=(6.0, 6.5), dpi=FIGURE_DPI)
    top, bottom = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.08}
    )
    top.bar(
        centres,
        np.nan_to_num(_none_to_nan(reliability["accuracy"])),
        width=widths,
        edgecolor="black",
        color="tab:blue",
        alpha=0.75,
        label="accuracy in bin",
    )
    top.plot(
        centres,
        _none_to_nan(reliability["confidence"]),
        "o",
        color="tab:orange",
        label="mean confidence in bin",
    )
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.set_ylabel("Accuracy")
    # Above the axes: bars can reach the top anywhere, so any corner may be taken.
    top.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=3, fontsize=8, frameon=False)
    top.grid(alpha=0.3)
    figure.suptitle(title or f"Reliability (ECE = {_format_score(metrics['ece'])})")

    bottom.bar(centres, counts, width=widths, edgecolor="black", color="lightgrey")
    if counts.max() > 0:
        bottom.set_yscale("log")
    bottom.set_xlabel("Top-class probability (confidence)")
    bottom.set_ylabel("Examples")
    return _save(figure, path)


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

_REPORT_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 1.5em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0 1.2em; }
/* A wide table scrolls inside its box instead of widening the page
   (narrow windows, the Kubeflow UI's artifact pane, many classes). */
.table-scroll { overflow-x: auto; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: .3em .7em; text-align: right; }
th { background: #f3f3f3; } td.name, th.name { text-align: left; }
figure { display: inline-block; margin: .5em 1em 1em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; }
.note { color: #555; font-size: .9em; }
"""


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(
        (
            f'<th class="name">{html.escape(title)}</th>'
            if index == 0
            else f"<th>{html.escape(title)}</th>"
        )
        for index, title in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="name">{html.escape(str(cells[0]))}</td>'
            if index == 0
            else f"<td>{_cell(value)}</td>"
            for index, value in enumerate(cells)
        )
        + "</tr>"
        for cells in rows
    )
    return (
        f'<div class="table-scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _figure_html(key: str, path: Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"figure {key!r} not found at {path}")
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = key
    for prefix, text in _FIGURE_CAPTIONS.items():
        if key.startswith(prefix):
            caption = text
            break
    return (
        f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(key, quote=True)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _split_names(metrics: Mapping[str, Any]) -> list[str]:
    splits = [
        name
        for name, value in metrics.items()
        if isinstance(value, Mapping) and "confusion_matrix" in value
    ]
    preferred = [name for name in PREFERRED_SPLIT_ORDER if name in splits]
    return preferred + [name for name in splits if name not in preferred]


def write_report(
    output_dir: str | Path,
    metrics: dict,
    figures: dict[str, Path],
    title: str,
    config: dict | None = None,
) -> Path:
    """Writes ``output_dir/report.html``: one self-contained page of results.

    Every figure is embedded as a base64 PNG, so the file can be opened from
    a bucket, attached to an e-mail or shown as a Kubeflow ``HTML`` artifact
    with nothing else beside it; it needs no JavaScript and loads nothing
    from the network. All text is escaped (class names come from user files).

    Layout: summary table (one row per split), then per split its per-class
    table and the figures whose key ends in ``_<split>``, then AUC against
    number of observations, any other figure, and the configuration.

    Args:
        output_dir: Folder to write into (created if missing).
        metrics: ``{split: classification_metrics result, ...}``, optionally
            with ``auc_vs_observations``, as returned by
            :func:`evaluate_predictions`. A single
            :func:`classification_metrics` result is accepted too.
        figures: ``{key: PNG path}``; keys such as ``confusion_matrix_test``
            are placed with their split.
        title: Page title.
        config: The configuration used (a dict or a dataclass), shown as JSON.

    Returns:
        The path of the report.

    Raises:
        FileNotFoundError: If a figure does not exist.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if "confusion_matrix" in metrics:
        metrics = {"evaluation": metrics}
    splits = _split_names(metrics)
    placed: set[str] = set()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_REPORT_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Summary</h2>",
        _table(
            ["Split", "Examples", *(label for _, label in _SUMMARY_COLUMNS)],
            [
                [split, metrics[split].get("n_examples")]
                + [metrics[split].get(key) for key, _ in _SUMMARY_COLUMNS]
                for split in splits
            ],
        ),
        _SUMMARY_NOTE,
    ]

    for split in splits:
        split_metrics = metrics[split]
        parts.append(f"<h2>{html.escape(split.capitalize())}</h2>")
        parts.append(
            _table(
                ["Class", "Support", *(label for _, label in _PER_CLASS_COLUMNS)],
                [
                    [name, scores.get("support")]
                    + [scores.get(key) for key, _ in _PER_CLASS_COLUMNS]
                    for name, scores in split_metrics["per_class"].items()
                ],
            )
        )
        for key, path in figures.items():
            if key.endswith(f"_{split}"):
                parts.append(_figure_html(key, path))
                placed.add(key)

    operating_point = metrics.get("operating_point")
    if operating_point:
        parts.append("<h2>Completeness at a fixed majority-class recall</h2>")
        parts.append(
            f'<p class="note">Test recall of every class when a curve is called '
            f'{html.escape(operating_point["majority_class"])} only if its probability reaches '
            f'{operating_point["threshold"]:.4g}, the threshold that keeps '
            f'{operating_point["target"]:.0%} of the validation split\'s '
            f'{html.escape(operating_point["majority_class"])} curves; otherwise the most '
            "probable other class.</p>")
        parts.append(_table(["Class", "Test recall"],
                            [[name, value] for name, value in operating_point["recall"].items()]))

    auc_curve = metrics.get("auc_vs_observations")
    if auc_curve or "auc_vs_observations" in figures:
        parts.append("<h2>Early classification</h2>")
        parts.append(
            '<p class="note">ROC-AUC when every light curve is cut to its first n observations.</p>'
        )
        if "auc_vs_observations" in figures:
            parts.append(_figure_html("auc_vs_observations", figures["auc_vs_observations"]))
            placed.add("auc_vs_observations")
        if auc_curve:
            class_names = list(auc_curve["per_class"])
            # Curves from elsewhere (e.g. an older metrics.json) may lack the counts.
            curve_counts = auc_curve.get("curves_with_at_least_n") or [None] * len(
                auc_curve["n_observations"]
            )
            rows = [
                [str(n), curve_counts[i], auc_curve["macro"][i]]
                + [auc_curve["per_class"][name][i] for name in class_names]
                for i, n in enumerate(auc_curve["n_observations"])
            ]
            parts.append("<details><summary>Table of AUC by number of observations</summary>")
            parts.append(
                _table(
                    ["Observations", "Curves with at least n", "Macro AUC", *class_names],
                    rows,
                )
            )
            parts.append("</details>")

    remaining = [key for key in figures if key not in placed]
    if remaining:
        parts.append("<h2>Other figures</h2>")
        parts.extend(_figure_html(key, figures[key]) for key in remaining)

    if config is not None:
        if dataclasses.is_dataclass(config) and not isinstance(config, type):
            config = dataclasses.asdict(config)
        parts.append("<h2>Configuration</h2>")
        config_text = json.dumps(_jsonable(config), indent=2, sort_keys=True, default=str)
        parts.append(f"<pre>{html.escape(config_text)}</pre>")
    parts.append("</body></html>")

    report_path = output_dir / "report.html"
    report_path.write_text("\n".join(parts), encoding="utf-8")
    return report_path


def evaluate_predictions(
    output_dir: str | Path,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    auc_curve: dict | None,
    config: dict | None = None,
    title: str = "rnn-classifier evaluation",
) -> dict:
    """Runs the whole evaluation from predictions and writes every artifact.

    Writes into ``output_dir`` (created if missing; existing files are
    overwritten): ``metrics.json``, ``confusion_matrix_<split>.png`` for each
    split, ``auc_vs_observations.png`` (when ``auc_curve`` is given),
    ``roc_curves_<split>.png``, ``pr_curves_<split>.png`` and
    ``reliability_<split>.png`` for the test split (the last split when there
    is no "test"), and ``report.html``.

    Args:
        output_dir: Folder to write into.
        splits: ``{"validation": (y_true, proba), "test": (y_true, proba)}``;
            labels as class indices or one-hot.
        class_names: K class names, in column order.
        auc_curve: An :func:`auc_vs_observations` result, or None.
        config: The configuration used, copied into the report.
        title: Report title.

    Returns:
        ``{split: classification_metrics result, ..., "auc_vs_observations":
        auc_curve}``, exactly what ``metrics.json`` holds.

    Raises:
        ValueError: If ``splits`` is empty or any split is inconsistent.
    """
    if not splits:
        raise ValueError("no splits to evaluate")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    metrics: dict[str, Any] = {
        split: classification_metrics(y_true, proba, class_names)
        for split, (y_true, proba) in splits.items()
    }
    metrics["auc_vs_observations"] = _jsonable(auc_curve) if auc_curve is not None else None
    if "validation" in splits and "test" in splits:
        metrics["operating_point"] = recall_at_majority_recall(
            splits["validation"], splits["test"], class_names)
    (output_dir / "metrics.json").write_text(
        json.dumps(metrics, indent=2, allow_nan=False), encoding="utf-8"
    )

    figures: dict[str, Path] = {}
    for split in splits:
        figures[f"confusion_matrix_{split}"] = plot_confusion_matrix(
            metrics[split]["confusion_matrix"],
            f"{split.capitalize()} set",
            output_dir / f"confusion_matrix_{split}.png",
        )
    if auc_curve is not None:
        figures["auc_vs_observations"] = plot_auc_vs_observations(
            {"model": metrics["auc_vs_observations"]},
            output_dir / "auc_vs_observations.png",
        )
    detail_split = "test" if "test" in splits else list(splits)[-1]
    detail = metrics[detail_split]
    figures[f"roc_curves_{detail_split}"] = plot_roc_curves(
        detail, output_dir / f"roc_curves_{detail_split}.png"
    )
    figures[f"pr_curves_{detail_split}"] = plot_pr_curves(
        detail, output_dir / f"pr_curves_{detail_split}.png"
    )
    figures[f"reliability_{detail_split}"] = plot_reliability_diagram(
        detail, output_dir / f"reliability_{detail_split}.png"
    )
    write_report(output_dir, metrics, figures, title, config)
    return metrics


def evaluate_model(
    model_dir: str | Path,
    data_dir: str | Path,
    output_dir: str | Path,
    progress: Callable[[str], None] | None = None,
    labels: Sequence[str] | None = None,
) -> dict:
    """Evaluates a trained model folder on the validation and test splits.

    Predicts both splits, measures AUC against number of observations on the
    test split, and writes ``metrics.json``, the figures and ``report.html``
    (see :func:`evaluate_predictions`). The data is validated before anything
    is written.

    Args:
        model_dir: A folder written by ``rnn_classifier.train.train``.
        data_dir: The data folder (only the validation and test files are read).
        output_dir: Where the evaluation goes.
        progress: Receives one line per stage (default: print).
        labels: Class names in label order, in place of the model's
            ``classes.txt`` (the CLI's ``--label``); one per class.

    Returns:
        The metrics dict, as in ``metrics.json``.

    Raises:
        DataError: The model folder or the data is invalid or they disagree,
            or ``labels`` does not name each class once.
    """
    from rnn_classifier.data import DataError, load_dataset
    from rnn_classifier.model_folder import override_class_names
    from rnn_classifier.predict import load_trained_model

    progress = progress or (lambda line: print(line, flush=True))
    trained = load_trained_model(model_dir)
    class_names = override_class_names(trained.class_names, labels, Path(model_dir))
    config = trained.config
    dataset = load_dataset(data_dir, mixed=config.mixed, mask_value=config.mask_value,
                           splits=("validation", "test"))
    if dataset.n_classes > len(trained.class_names):
        raise DataError(f"{data_dir}: labels have {dataset.n_classes} classes but the model in "
                        f"{model_dir} was trained on {len(trained.class_names)}")
    predictions = {}
    for name, split in dataset.splits.items():
        progress(f"predicting {len(split)} {name} examples")
        predictions[name] = (split.labels,
                             trained.predict_proba(split.time_features, split.contextual_features))
    test = dataset["test"]
    progress("measuring AUC against number of observations on the test split")
    curve = auc_vs_observations(trained.predict_proba, test.time_features,
                                test.contextual_features, test.labels, class_names,
                                mask_value=config.mask_value)
    metrics = evaluate_predictions(output_dir, predictions, class_names, curve,
                                   config=config.to_dict(),
                                   title=f"rnn-classifier evaluation: {Path(model_dir).name}")
    progress(f"wrote {Path(output_dir) / 'metrics.json'} and report.html")
    return metrics
