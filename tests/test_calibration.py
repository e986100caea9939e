"""Temperature scaling: it recovers a known temperature and improves held-out calibration."""

import numpy as np

from rnn_classifier.calibration import fit_temperature, shifted_logits, softmax
from rnn_classifier.evaluate import expected_calibration_error


def overconfident_split(n: int, temperature: float, seed: int):
    """Logits whose labels were drawn from softmax(logits / temperature)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(n, 4))
    truth = softmax(logits / temperature)
    labels = np.array([rng.choice(4, p=row) for row in truth])
    return logits, labels


def test_fit_recovers_the_temperature_that_generated_the_labels():
    logits, labels = overconfident_split(20_000, 2.5, seed=0)
    assert abs(fit_temperature(logits, labels) - 2.5) < 0.15


def test_temperature_fitted_on_validation_improves_test_calibration():
    validation_logits, validation_labels = overconfident_split(2_000, 3.0, seed=1)
    test_logits, test_labels = overconfident_split(2_000, 3.0, seed=2)
    temperature = fit_temperature(validation_logits, validation_labels)
    before = expected_calibration_error(test_labels, softmax(test_logits))
    after = expected_calibration_error(test_labels, softmax(test_logits / temperature))
    assert after < before / 3
    # It never changes the predicted class.
    np.testing.assert_array_equal(softmax(test_logits / temperature).argmax(axis=1),
                                  test_logits.argmax(axis=1))


def test_a_few_correct_validation_curves_do_not_drive_the_temperature_to_its_bound():
    # Four validation curves, all right with some confidence: the unregularised NLL
    # would fall for ever as the temperature falls.
    logits = np.log(np.array([[0.7, 0.3], [0.7, 0.3], [0.3, 0.7], [0.3, 0.7]]))
    temperature = fit_temperature(logits, np.array([0, 0, 1, 1]))
    assert 0.2 < temperature < 1.0


def test_shifted_logits_add_the_weighted_log_prior():
    proba = np.array([[0.5, 0.5]])
    log_prior = np.log([0.8, 0.2])
    np.testing.assert_allclose(shifted_logits(proba, log_prior, 0.5),
                               np.log(proba) + 0.5 * log_prior)
    np.testing.assert_allclose(shifted_logits(proba, log_prior, 0.0), np.log(proba))
