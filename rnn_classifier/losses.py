"""Losses for rare classes: logit-adjusted, focal, class-weighted and plain cross-entropy.

Both loss classes are registered Keras serialisables, so a model saved as
`.keras` reloads with its loss (and its per-class weights) in safe mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

# Probabilities are clipped away from 0 and 1 so log() and the focal factor stay finite.
EPSILON = 1e-7


def class_weights(labels: np.ndarray, n_classes: int, method: str = "balanced",
                  beta: float = 0.999) -> np.ndarray:
    """Per-class weights from integer training labels.

    Args:
        labels: (N,) class indices of the training split.
        n_classes: K.
        method: "balanced" gives N / (K n_c) (the mean weight over training
            examples is then 1); "effective" gives (1 - beta) / (1 - beta^n_c)
            (Cui et al. 2019), rescaled so the mean weight over training
            examples is also 1; "none" gives ones.
        beta: effective-number hyperparameter.

    Returns:
        (K,) float64 weights; a class absent from `labels` gets weight 0.
    """
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    if method == "none":
        return np.ones(n_classes)
    if method == "balanced":
        weights[present] = counts.sum() / (n_classes * counts[present])
    elif method == "effective":
        weights[present] = (1.0 - beta) / (1.0 - np.power(beta, counts[present]))
        weights *= counts.sum() / (weights * counts).sum()
    else:
        raise ValueError(f"unknown class weighting {method!r}")
    return weights


def log_prior(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(K,) log class frequencies of integer training labels.

    A class absent from `labels` counts as half an example, so its log prior
    stays finite (and very low).
    """
    counts = np.maximum(np.bincount(labels, minlength=n_classes).astype(np.float64), 0.5)
    return np.log(counts / counts.sum())


def _per_class_tensor(values: Sequence[float] | None, dtype):
    return None if values is None else ops.convert_to_tensor(list(values), dtype=dtype)


def _smoothed(y_true, y_pred, label_smoothing: float):
    """One-hot targets cast to the prediction's dtype, with `label_smoothing` spread evenly."""
    y_true = ops.cast(y_true, y_pred.dtype)
    if label_smoothing:
        n_classes = ops.cast(ops.shape(y_true)[-1], y_pred.dtype)
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / n_classes
    return y_true


@keras.saving.register_keras_serializable(package="rnn_classifier")
class LogitAdjustedCrossEntropy(keras.losses.Loss):
    """Cross-entropy on logits shifted by the log class prior (Menon et al. 2021).

    The model's probabilities p are read as logits log p; training minimises
    the cross-entropy of softmax(log p + log_prior), so p itself learns the
    class-balanced probabilities: a rare class is not out-voted by its prior,
    and unlike inverse-frequency weights no example's gradient is inflated.

    Args:
        log_prior: (K,) log class frequencies of the training split.
        label_smoothing: share of each target spread evenly over the classes.
    """

    def __init__(self, log_prior: Sequence[float], label_smoothing: float = 0.0,
                 name: str = "logit_adjusted_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.log_prior = [float(value) for value in log_prior]
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        prior = _per_class_tensor(self.log_prior, y_pred.dtype)
        logits = ops.log(ops.clip(y_pred, EPSILON, 1.0)) + prior
        log_proba = logits - ops.logsumexp(logits, axis=-1, keepdims=True)
        y_true = ops.cast(y_true, y_pred.dtype)
        if self.label_smoothing:
            # The smoothed share follows the class prior: it is the adjusted softmax that
            # meets the target, so an even share would ask p to favour the rarest classes
            # by 1 / prior (every curve of the survey's 98% majority scored as a supernova).
            # In the balanced probabilities p it is then an even share, as intended.
            y_true = (1.0 - self.label_smoothing) * y_true + self.label_smoothing * ops.softmax(
                prior)
        return -ops.sum(y_true * log_proba, axis=-1)

    def get_config(self):
        return {**super().get_config(), "log_prior": self.log_prior,
                "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="rnn_classifier")
class FocalLoss(keras.losses.Loss):
    """Multi-class focal loss (Lin et al. 2017) on one-hot targets.

    FL = -sum_c alpha_c y_c (1 - p_c)^gamma log(p_c); with gamma = 0 and
    alpha = 1 it is the cross-entropy.

    Args:
        gamma: focusing parameter (0 disables focusing).
        alpha: per-class weights, or None for 1 everywhere.
        label_smoothing: share of each target spread evenly over the classes.
    """

    def __init__(self, gamma: float = 2.0, alpha: Sequence[float] | None = None,
                 label_smoothing: float = 0.0, name: str = "focal_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else [float(value) for value in alpha]
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_pred = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
        y_true = _smoothed(y_true, y_pred, self.label_smoothing)
        loss = -y_true * ops.power(1.0 - y_pred, self.gamma) * ops.log(y_pred)
        alpha = _per_class_tensor(self.alpha, y_pred.dtype)
        if alpha is not None:
            loss = loss * alpha
        return ops.sum(loss, axis=-1)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha,
                "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="rnn_classifier")
class WeightedCrossEntropy(keras.losses.Loss):
    """Categorical cross-entropy with each example weighted by its class weight.

    Args:
        weights: per-class weights, or None for the unweighted cross-entropy.
        label_smoothing: share of each target spread evenly over the classes.
    """

    def __init__(self, weights: Sequence[float] | None = None, label_smoothing: float = 0.0,
                 name: str = "weighted_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.weights = None if weights is None else [float(value) for value in weights]
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_pred = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
        y_true = _smoothed(y_true, y_pred, self.label_smoothing)
        loss = -y_true * ops.log(y_pred)
        weights = _per_class_tensor(self.weights, y_pred.dtype)
        if weights is not None:
            loss = loss * weights
        return ops.sum(loss, axis=-1)

    def get_config(self):
        return {**super().get_config(), "weights": self.weights,
                "label_smoothing": self.label_smoothing}


def make_loss(loss: str, weights: np.ndarray, gamma: float, prior: np.ndarray | None = None,
              label_smoothing: float = 0.0) -> keras.losses.Loss:
    """The loss named by the config.

    Args:
        loss: "logit_adjusted", "focal", "wce" (weighted) or "ce" (unweighted).
        weights: (K,) class weights (focal alpha, wce weights).
        gamma: focal-loss focusing parameter.
        prior: (K,) log class prior (logit_adjusted).
        label_smoothing: share of each target spread evenly over the classes.
    """
    if loss == "logit_adjusted":
        return LogitAdjustedCrossEntropy(np.asarray(prior).tolist(), label_smoothing)
    if loss == "focal":
        return FocalLoss(gamma=gamma, alpha=weights.tolist(), label_smoothing=label_smoothing)
    if loss == "wce":
        return WeightedCrossEntropy(weights=weights.tolist(), label_smoothing=label_smoothing)
    if loss == "ce":
        return WeightedCrossEntropy(weights=None, label_smoothing=label_smoothing,
                                    name="cross_entropy")
    raise ValueError(f"unknown loss {loss!r}")
