"""The Keras model: default and original architectures, options, masking, .keras round trip."""

import keras
import numpy as np
import pytest

from rnn_classifier.config import DEFAULTS, preset
from rnn_classifier.model import build_model, model_inputs, recurrent_pool_size, with_prior_shift

ORIGINAL = preset("original")
# Every option that changes the graph, each in a model small enough to build quickly.
VARIANTS = {
    "defaults": {},
    "original": preset("original").to_dict(),
    "attention pooling": {"pooling": "attention"},
    "bidirectional lstm": {"rnn_type": "lstm", "bidirectional": True, "rnn_layers": 1},
    "recurrent windows": {"max_rnn_steps": 4},
    "no curve normalisation": {"curve_normalisation": False},
    "no convolutional branch": {"conv_filters": 0},
    "context branch": {"context_units": 3},
    "contextual features unencoded": {"context_bins": 0},
    "no summary statistics": {"summary_statistics": False},
    "light curves with a time column (augmented)": {"time_column": 0},
    "random-kernel head": {"random_kernels": 200},
}


def layer_types(model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers]


def small(overrides: dict):
    return DEFAULTS.replace(**{"rnn_units": 4, "conv_filters": 4, "dense_units": 4,
                               **overrides})


def test_original_preset_is_the_original_architecture():
    model = build_model(ORIGINAL, 3, 2, 3)
    assert layer_types(model) == [
        "InputLayer", "PaddingMask", "CurveNormalisation", "GRU", "Dropout",
        "BatchNormalization", "GRU", "Dropout", "BatchNormalization", "InputLayer",
        "Concatenate", "Dense", "Dropout", "Dense"]
    # The last recurrent layer hands over its final state, as the original did.
    assert model.get_layer("gru_2").return_sequences is False
    assert model.get_layer("curve_normalisation").normalise is False
    assert model.output_shape == (None, 3)
    assert model.get_layer("probabilities").activation.__name__ == "softmax"


def test_default_has_recurrent_and_convolutional_branches_and_both_kinds_of_statistics():
    model = build_model(DEFAULTS, 3, 2, 3)
    types = layer_types(model)
    assert types.count("MaskedConvBlock") == DEFAULTS.conv_layers
    assert [model.get_layer(f"conv_{i}").kernel_size for i in (1, 2, 3)] == [8, 5, 3]
    assert model.get_layer("gru_1").return_sequences and model.get_layer(
        f"gru_{DEFAULTS.rnn_layers}").return_sequences
    concatenated = model.get_layer("concatenate").input
    widths = sorted(tensor.shape[-1] for tensor in concatenated)
    # recurrent mean+max (2 units), conv mean+max (2 filters), 2 statistics per
    # feature + the observation count, the summary statistics (19 per feature + the
    # count) and the 2 contextual features, each encoded over its quantile bins.
    assert widths == sorted([2 * DEFAULTS.rnn_units, 2 * DEFAULTS.conv_filters, 2 * 3 + 1,
                             19 * 3 + 1, 2 * DEFAULTS.context_bins])
    assert types.count("SeriesStatistics") == 1


@pytest.mark.parametrize("overrides, expected", [
    ({"rnn_type": "lstm", "rnn_layers": 3}, ["LSTM", "LSTM", "LSTM"]),
    ({"bidirectional": True, "rnn_layers": 1}, ["Bidirectional"]),
])
def test_recurrent_options(overrides, expected):
    model = build_model(DEFAULTS.replace(**overrides), 3, 2, 2)
    assert [t for t in layer_types(model) if t in ("GRU", "LSTM", "Bidirectional")] == expected


def test_contextual_features_are_encoded_over_the_given_bins():
    edges = [[-1.0, 0.0, 4.0], [0.0, 1.0]]
    model = build_model(DEFAULTS, 3, 2, 2, context_edges=edges)
    assert model.get_layer("context_encoding").edges == edges
    assert model.get_layer("context_encoding").output.shape[-1] == 2 * 2
    # Without the training split's bins, those of a standard normal stand in.
    default = build_model(DEFAULTS, 3, 2, 2).get_layer("context_encoding").edges
    assert len(default) == 2 and len(default[0]) == DEFAULTS.context_bins + 1
    assert default[0][0] == pytest.approx(-2.326, abs=1e-3)
    assert "PiecewiseLinearEncoding" not in layer_types(
        build_model(DEFAULTS.replace(context_bins=0), 3, 2, 2))


def test_light_curves_with_a_time_column_are_augmented_by_default():
    assert "CurveAugmentation" in layer_types(build_model(DEFAULTS.replace(time_column=0), 3, 2, 2))
    assert "CurveAugmentation" not in layer_types(build_model(DEFAULTS, 3, 2, 2))
    assert "CurveAugmentation" in layer_types(
        build_model(DEFAULTS.replace(augmentation="on"), 3, 2, 2))


def test_context_branch_and_time_only_model():
    with_branch = build_model(DEFAULTS.replace(context_units=5), 3, 2, 2)
    assert with_branch.get_layer("context_dense").units == 5
    time_only = build_model(DEFAULTS.replace(mixed=False), 3, 2, 2)
    assert [tensor.name for tensor in time_only.inputs] == ["time_features"]


def test_long_training_curves_are_read_in_windows_by_the_recurrent_branch():
    assert recurrent_pool_size(DEFAULTS, 60) == 1
    config = DEFAULTS.replace(max_rnn_steps=128)
    assert recurrent_pool_size(config, 1460) == 12  # ceil(1460 / 128)
    assert recurrent_pool_size(DEFAULTS.replace(max_rnn_steps=0), 1460) == 1
    model = build_model(config, 1, 0, 2, max_steps=1460)
    assert model.get_layer("recurrent_windows").pool == 12
    assert "MaskedDownsample" not in layer_types(build_model(DEFAULTS, 1, 0, 2, max_steps=60))


@pytest.mark.parametrize("name", VARIANTS)
def test_padding_does_not_change_the_prediction(name):
    config = small(VARIANTS[name])
    model = build_model(config, 2, 1, 3, max_steps=12)
    rng = np.random.default_rng(0)
    lengths = (1, 3, 5, 9)
    curves = np.full((len(lengths), 9, 2), -99.0, "float32")
    for row, length in enumerate(lengths):
        curves[row, :length] = rng.normal(size=(length, 2))
    padded = np.concatenate([curves, np.full((len(lengths), 14, 2), -99.0, "float32")], axis=1)
    context = rng.normal(size=(len(lengths), 1)).astype("float32")
    short = model.predict(model_inputs(curves, context), verbose=0)
    long = model.predict(model_inputs(padded, context), verbose=0)
    np.testing.assert_allclose(short, long, atol=1e-5)
    # And each curve alone, cut to its own length, gets the same prediction as in the batch.
    for row, length in enumerate(lengths):
        alone = model.predict(model_inputs(curves[row:row + 1, :length], context[row:row + 1]),
                              verbose=0)
        np.testing.assert_allclose(alone[0], short[row], atol=1e-5)


@pytest.mark.parametrize("name", VARIANTS)
def test_saves_and_reloads_in_safe_mode(tmp_path, name):
    model = with_prior_shift(build_model(small(VARIANTS[name]), 3, 2, 3, max_steps=12),
                             np.log([0.8, 0.15, 0.05]), 0.5, 1.7)
    rng = np.random.default_rng(1)
    time = rng.normal(size=(2, 6, 3)).astype("float32")
    time[0, 4:] = -99.0
    data = model_inputs(time, rng.normal(size=(2, 2)).astype("float32"))
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    assert "Lambda" not in layer_types(loaded)
    assert loaded.get_layer("calibrated_probabilities").temperature == pytest.approx(1.7)
    np.testing.assert_allclose(model.predict(data, verbose=0), loaded.predict(data, verbose=0),
                               atol=1e-6)


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_16_bits_with_float32_weights_and_output(precision):
    model = build_model(DEFAULTS.replace(precision=precision), 3, 2, 3)
    compute_dtype = precision.removeprefix("mixed_")
    for name in ("gru_1", "conv_1", "conv_3", "dense"):
        assert model.get_layer(name).compute_dtype == compute_dtype
        assert model.get_layer(name).variable_dtype == "float32"
    # Per-curve sums of squares would overflow float16, and narrow bins round to zero width:
    # they stay in float32.
    assert model.get_layer("curve_normalisation").compute_dtype == "float32"
    assert model.get_layer("context_encoding").compute_dtype == "float32"
    assert model.get_layer("probabilities").compute_dtype == "float32"
    time = np.random.default_rng(0).normal(size=(4, 6, 3)).astype(np.float32)
    proba = model(model_inputs(time, np.zeros((4, 2), np.float32)), training=False)
    assert proba.dtype == "float32"
    np.testing.assert_allclose(np.asarray(proba).sum(axis=1), 1.0, atol=1e-5)
