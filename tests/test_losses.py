"""Losses and class weights against values computed by hand."""

import math

import keras
import numpy as np
import pytest

from rnn_classifier.config import DEFAULTS
from rnn_classifier.losses import (
    FocalLoss,
    LogitAdjustedCrossEntropy,
    WeightedCrossEntropy,
    class_weights,
    log_prior,
    make_loss,
)
from rnn_classifier.model import build_model


def test_balanced_weights_are_n_over_k_n_c():
    weights = class_weights(np.array([0, 0, 0, 1]), 2, "balanced")
    np.testing.assert_allclose(weights, [4 / (2 * 3), 4 / (2 * 1)])


def test_effective_number_weights_by_hand():
    beta = 0.9
    raw = np.array([(1 - beta) / (1 - beta**3), (1 - beta) / (1 - beta**1)])
    # Rescaled so the mean weight over the 4 training examples is 1.
    expected = raw * 4 / (3 * raw[0] + raw[1])
    weights = class_weights(np.array([0, 0, 0, 1]), 2, "effective", beta)
    np.testing.assert_allclose(weights, expected)
    np.testing.assert_allclose(weights, [0.700525, 1.898424], atol=1e-6)


def test_absent_class_gets_zero_weight_and_none_gives_ones():
    np.testing.assert_allclose(class_weights(np.array([0, 0, 2]), 3, "balanced"), [0.5, 0, 1])
    np.testing.assert_allclose(class_weights(np.array([0, 0, 2]), 3, "none"), [1, 1, 1])


def test_focal_loss_by_hand():
    y_true = np.array([[0, 1, 0], [0, 0, 1]], dtype="float32")
    y_pred = np.array([[0.2, 0.7, 0.1], [0.5, 0.4, 0.1]], dtype="float32")
    loss = FocalLoss(gamma=2.0, alpha=[1.0, 2.0, 3.0])(y_true, y_pred)
    first = -2.0 * 0.3**2 * math.log(0.7)
    second = -3.0 * 0.9**2 * math.log(0.1)
    assert float(loss) == pytest.approx((first + second) / 2, rel=1e-5)


def test_focal_loss_with_gamma_zero_is_cross_entropy():
    y_true = np.eye(3, dtype="float32")[[0, 2, 1]]
    y_pred = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.1, 0.8, 0.1]], dtype="float32")
    focal = float(FocalLoss(gamma=0.0)(y_true, y_pred))
    crossentropy = float(keras.losses.CategoricalCrossentropy()(y_true, y_pred))
    assert focal == pytest.approx(crossentropy, rel=1e-5)


def test_weighted_cross_entropy_by_hand():
    y_true = np.array([[1, 0, 0], [0, 0, 1]], dtype="float32")
    y_pred = np.array([[0.5, 0.25, 0.25], [0.3, 0.6, 0.1]], dtype="float32")
    loss = WeightedCrossEntropy(weights=[1.0, 2.0, 3.0])(y_true, y_pred)
    assert float(loss) == pytest.approx((-math.log(0.5) - 3 * math.log(0.1)) / 2, rel=1e-5)
    unweighted = make_loss("ce", np.array([1.0, 2.0, 3.0]), 2.0)(y_true, y_pred)
    assert float(unweighted) == pytest.approx((-math.log(0.5) - math.log(0.1)) / 2, rel=1e-5)


def test_logit_adjusted_cross_entropy_by_hand():
    prior = np.log([0.75, 0.25])
    y_true = np.array([[1, 0], [0, 1]], dtype="float32")
    y_pred = np.array([[0.5, 0.5], [0.6, 0.4]], dtype="float32")
    loss = LogitAdjustedCrossEntropy(prior)(y_true, y_pred)

    def adjusted(row, label):
        logits = np.log(y_pred[row]) + prior
        return -(logits[label] - np.log(np.exp(logits).sum()))

    assert float(loss) == pytest.approx((adjusted(0, 0) + adjusted(1, 1)) / 2, rel=1e-5)
    # A prediction that matches the training prior costs less for the frequent class
    # than for the rare one: the rare class must earn its probability.
    assert adjusted(0, 0) < adjusted(1, 1)


def test_logit_adjusted_loss_is_lowest_at_the_balanced_probabilities():
    # With the prior added back, p = the class-balanced posterior minimises the loss:
    # here the true posterior is the prior itself, whose balanced form is uniform.
    prior = np.log([0.9, 0.1])
    y_true = np.array([[1, 0]] * 9 + [[0, 1]], dtype="float32")
    losses = {p: float(LogitAdjustedCrossEntropy(prior)(
        y_true, np.tile(np.array([[p, 1 - p]], "float32"), (10, 1)))) for p in (0.3, 0.5, 0.7)}
    assert min(losses, key=losses.get) == 0.5


def test_label_smoothing_spreads_the_target_evenly():
    y_true = np.array([[1, 0, 0, 0]], dtype="float32")
    y_pred = np.array([[0.4, 0.3, 0.2, 0.1]], dtype="float32")
    expected = -(0.925 * math.log(0.4) + 0.025 * (math.log(0.3) + math.log(0.2)
                                                   + math.log(0.1)))
    for loss in (WeightedCrossEntropy(label_smoothing=0.1),
                 LogitAdjustedCrossEntropy(np.log(np.full(4, 0.25)), label_smoothing=0.1)):
        assert float(loss(y_true, y_pred)) == pytest.approx(expected, rel=1e-5)


def test_logit_adjusted_smoothing_is_even_in_the_balanced_probabilities():
    # A 98% majority: the smoothed share follows the prior, so in the balanced
    # probabilities p it adds the same epsilon to every class (before normalising):
    # p is proportional to (1 - eps) y / prior_y + eps. An even share in the adjusted
    # softmax instead would make the rare classes win on every majority curve.
    prior = np.array([0.98, 0.01, 0.01])
    loss = LogitAdjustedCrossEntropy(np.log(prior), label_smoothing=0.3)
    y_true = np.array([[1, 0, 0]], dtype="float32")
    unnormalised = 0.7 * np.array([1, 0, 0]) / prior[0] + 0.3
    best = unnormalised / unnormalised.sum()
    rare = {value: float(loss(y_true, np.array([[1 - 2 * value, value, value]], "float32")))
            for value in (best[1] - 0.05, best[1], best[1] + 0.05)}
    assert min(rare, key=rare.get) == best[1]
    assert best[0] > 0.5


def test_log_prior_keeps_an_absent_class_finite():
    prior = log_prior(np.array([0, 0, 0, 1]), 3)
    np.testing.assert_allclose(np.exp(prior), [3 / 4.5, 1 / 4.5, 0.5 / 4.5])


def test_confident_correct_predictions_stay_finite():
    y_true = np.array([[1.0, 0.0]], dtype="float32")
    y_pred = np.array([[1.0, 0.0]], dtype="float32")
    assert np.isfinite(float(FocalLoss(alpha=[1.0, 1.0])(y_true, y_pred)))
    assert np.isfinite(float(WeightedCrossEntropy()(np.array([[0.0, 1.0]]), y_pred)))


@pytest.mark.parametrize("name", ["focal", "wce", "logit_adjusted"])
def test_per_class_weights_survive_save_and_safe_load(tmp_path, name):
    model = build_model(DEFAULTS.replace(rnn_units=4, dense_units=4, conv_filters=4), 3, 2, 3)
    model.compile(optimizer="adam", loss=make_loss(name, np.array([0.5, 1.5, 7.25]), 1.5,
                                                   np.array([-0.25, -1.5, -3.0]), 0.05))
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    config = loaded.loss.get_config()
    if name == "logit_adjusted":
        assert config["log_prior"] == [-0.25, -1.5, -3.0]
    else:
        assert config.get("alpha", config.get("weights")) == [0.5, 1.5, 7.25]
    assert config["label_smoothing"] == 0.05
    if name == "focal":
        assert config["gamma"] == 1.5
