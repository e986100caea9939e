"""Losses for rare classes: focal loss, class-weighted and unweighted cross-entropy.

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


def _per_class_tensor(values: Sequence[float] | None, dtype):
    return None if values is None else ops.convert_to_tensor(list(values), dtype=dtype)


@keras.saving.register_keras_serializable(package="rnn_classifier")
class FocalLoss(keras.losses.Loss):
    """Multi-class focal loss (Lin et al. 2017) on one-hot targets.

    FL = -sum_c alpha_c y_c (1 - p_c)^gamma log(p_c); with gamma = 0 and
    alpha = 1 it is the cross-entropy.

    Args:
        gamma: focusing parameter (0 disables focusing).
        alpha: per-class weights, or None for 1 everywhere.
    """

    def __init__(self, gamma: float = 2.0, alpha: Sequence[float] | None = None,
                 name: str = "focal_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else [float(value) for value in alpha]

    def call(self, y_true, y_pred):
        y_pred = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
        y_true = ops.cast(y_true, y_pred.dtype)
        loss = -y_true * ops.power(1.0 - y_pred, self.gamma) * ops.log(y_pred)
        alpha = _per_class_tensor(self.alpha, y_pred.dtype)
        if alpha is not None:
            loss = loss * alpha
        return ops.sum(loss, axis=-1)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="rnn_classifier")
class WeightedCrossEntropy(keras.losses.Loss):
    """Categorical cross-entropy with each example weighted by its class weight.

    Args:
        weights: per-class weights, or None for the unweighted cross-entropy.
    """

    def __init__(self, weights: Sequence[float] | None = None,
                 name: str = "weighted_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.weights = None if weights is None else [float(value) for value in weights]

    def call(self, y_true, y_pred):
        y_pred = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
        y_true = ops.cast(y_true, y_pred.dtype)
        loss = -y_true * ops.log(y_pred)
        weights = _per_class_tensor(self.weights, y_pred.dtype)
        if weights is not None:
            loss = loss * weights
        return ops.sum(loss, axis=-1)

    def get_config(self):
        return {**super().get_config(), "weights": self.weights}


def make_loss(loss: str, weights: np.ndarray, gamma: float) -> keras.losses.Loss:
    """The loss named by the config: "focal", "wce" (weighted) or "ce" (unweighted)."""
    if loss == "focal":
        return FocalLoss(gamma=gamma, alpha=weights.tolist())
    if loss == "wce":
        return WeightedCrossEntropy(weights=weights.tolist())
    if loss == "ce":
        return WeightedCrossEntropy(weights=None, name="cross_entropy")
    raise ValueError(f"unknown loss {loss!r}")
