"""Output probabilities: the class-prior shift and temperature scaling fitted on validation.

A model trained with the logit-adjusted loss outputs class-balanced
probabilities p. What the model folder outputs is

    softmax((log p + prior_weight * log_prior) / temperature)

(rnn_classifier.layers.PriorShift, the last layer of the saved model, so
`predict` applies it too). `prior_weight` is a hyperparameter; the
temperature is fitted after training by minimising the validation split's
negative log-likelihood (Guo et al. 2017). It does not change which class is
the most probable, only how confident the probabilities are.
"""

from __future__ import annotations

import numpy as np

# Temperatures are searched within these bounds (log-uniformly).
TEMPERATURE_BOUNDS = (0.05, 20.0)


def shifted_logits(proba: np.ndarray, log_prior: np.ndarray | None,
                   prior_weight: float) -> np.ndarray:
    """log p + prior_weight * log_prior, the logits PriorShift divides by the temperature."""
    logits = np.log(np.maximum(np.asarray(proba, dtype=np.float64), 1e-12))
    if log_prior is not None and prior_weight:
        logits = logits + prior_weight * np.asarray(log_prior, dtype=np.float64)
    return logits


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def _negative_log_likelihood(logits: np.ndarray, labels: np.ndarray,
                             temperature: float) -> float:
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(scaled).sum(axis=1))
    return float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the NLL of `labels`, shrunk towards 1 for small splits.

    A few validation curves that the model gets all right would drive the
    temperature to its lower bound (ever more confident); a standard normal
    prior on log(temperature), weighted as one example against the split's
    n, keeps it near 1 unless the split gives real evidence.
    """
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels)
    n_examples = max(len(labels), 1)

    def objective(log_temperature: float) -> float:
        return (_negative_log_likelihood(logits, labels, float(np.exp(log_temperature)))
                + 0.5 * log_temperature**2 / n_examples)

    low, high = np.log(TEMPERATURE_BOUNDS)
    result = minimize_scalar(objective, bounds=(low, high), method="bounded",
                             options={"xatol": 1e-4})
    return float(np.exp(result.x))
