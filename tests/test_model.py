"""The Keras model: default architecture, options, masking, .keras round trip."""

import keras
import numpy as np
import pytest

from rnn_classifier.config import DEFAULTS
from rnn_classifier.model import build_model, model_inputs


def layer_types(model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers]


def test_default_is_the_original_architecture():
    model = build_model(DEFAULTS, 3, 2, 3)
    assert layer_types(model) == [
        "InputLayer", "Masking", "GRU", "Dropout", "BatchNormalization", "GRU", "Dropout",
        "BatchNormalization", "InputLayer", "Concatenate", "Dense", "Dropout", "Dense"]
    assert model.output_shape == (None, 3)
    assert model.get_layer("probabilities").activation.__name__ == "softmax"


@pytest.mark.parametrize("overrides, expected", [
    ({"rnn_type": "lstm", "rnn_layers": 3}, ["LSTM", "LSTM", "LSTM"]),
    ({"bidirectional": True, "rnn_layers": 1}, ["Bidirectional"]),
])
def test_recurrent_options(overrides, expected):
    model = build_model(DEFAULTS.replace(**overrides), 3, 2, 2)
    assert [t for t in layer_types(model) if t in ("GRU", "LSTM", "Bidirectional")] == expected


def test_context_branch_and_time_only_model():
    with_branch = build_model(DEFAULTS.replace(context_units=5), 3, 2, 2)
    assert with_branch.get_layer("context_dense").units == 5
    time_only = build_model(DEFAULTS.replace(mixed=False), 3, 2, 2)
    assert [tensor.name for tensor in time_only.inputs] == ["time_features"]


def test_padding_does_not_change_the_prediction():
    model = build_model(DEFAULTS.replace(rnn_units=4), 2, 1, 2)
    curve = np.random.default_rng(0).normal(size=(1, 5, 2)).astype("float32")
    padded = np.concatenate([curve, np.full((1, 7, 2), -99.0, "float32")], axis=1)
    context = np.ones((1, 1), "float32")
    short = model.predict(model_inputs(curve, context), verbose=0)
    long = model.predict(model_inputs(padded, context), verbose=0)
    np.testing.assert_allclose(short, long, atol=1e-5)


def test_saves_and_reloads_in_safe_mode(tmp_path):
    model = build_model(DEFAULTS.replace(context_units=3, bidirectional=True), 3, 2, 3)
    data = model_inputs(np.zeros((2, 4, 3), "float32"), np.zeros((2, 2), "float32"))
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    assert "Lambda" not in layer_types(loaded)
    np.testing.assert_allclose(model.predict(data, verbose=0), loaded.predict(data, verbose=0),
                               atol=1e-6)


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_16_bits_with_float32_weights_and_output(precision):
    model = build_model(DEFAULTS.replace(precision=precision), 3, 2, 3)
    compute_dtype = precision.removeprefix("mixed_")
    for name in ("gru_1", "gru_2", "dense"):
        assert model.get_layer(name).compute_dtype == compute_dtype
        assert model.get_layer(name).variable_dtype == "float32"
    assert model.get_layer("probabilities").compute_dtype == "float32"
    time = np.random.default_rng(0).normal(size=(4, 6, 3)).astype(np.float32)
    proba = model(model_inputs(time, np.zeros((4, 2), np.float32)), training=False)
    assert proba.dtype == "float32"
    np.testing.assert_allclose(np.asarray(proba).sum(axis=1), 1.0, atol=1e-5)
