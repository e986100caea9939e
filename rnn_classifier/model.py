"""The Keras model: masked GRU/LSTM over the light curve, plus contextual features.

Default architecture (the original project's): Masking -> two recurrent
layers, each followed by dropout and batch normalisation -> concatenation
with the contextual features -> a hidden dense layer -> softmax.

Only built-in layers are used (no Lambda), so the model saves as `.keras`
and reloads in Keras's safe mode. The recurrent layers keep their default
activations, biases, reset_after and no recurrent dropout, so on a GPU
Keras picks the cuDNN kernel (which needs right-padded masks: the data
contract's padding is trailing); `precision` selects mixed float16/bfloat16
compute.
"""

from __future__ import annotations

import keras

from rnn_classifier.config import TrainConfig

TIME_INPUT = "time_features"
CONTEXT_INPUT = "contextual_features"


def build_model(config: TrainConfig, n_time_features: int, n_context_features: int,
                n_classes: int) -> keras.Model:
    """Build (uncompiled) the classifier described by `config`.

    Args:
        config: hyperparameters (rnn_type, rnn_layers, rnn_units,
            bidirectional, dropout, l2, dense_units, context_units, mixed,
            mask_value, precision).
        n_time_features: F, features per observation.
        n_context_features: M, contextual features (ignored when
            config.mixed is False).
        n_classes: K, width of the softmax.

    Returns:
        A keras.Model taking {"time_features": (None, T, F)} and, when mixed,
        {"contextual_features": (None, M)}; sequences may have any length T.
    """
    regulariser = keras.regularizers.L2(config.l2) if config.l2 > 0 else None
    # Mixed precision: every layer computes in config.precision except the softmax,
    # which stays float32 so probabilities (and the loss) keep full precision.
    policy = config.precision
    recurrent_layer = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[config.rnn_type]

    time_input = keras.Input(shape=(None, n_time_features), name=TIME_INPUT)
    inputs = [time_input]
    hidden = keras.layers.Masking(mask_value=config.mask_value, name="masking",
                                  dtype=policy)(time_input)
    for index in range(config.rnn_layers):
        last = index == config.rnn_layers - 1
        layer = recurrent_layer(config.rnn_units, return_sequences=not last,
                                kernel_regularizer=regulariser,
                                recurrent_regularizer=regulariser,
                                name=f"{config.rnn_type}_{index + 1}", dtype=policy)
        if config.bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{index + 1}",
                                               dtype=policy)
        hidden = layer(hidden)
        hidden = keras.layers.Dropout(config.dropout, name=f"rnn_dropout_{index + 1}",
                                      dtype=policy)(hidden)
        hidden = keras.layers.BatchNormalization(name=f"rnn_batch_norm_{index + 1}",
                                                 dtype=policy)(hidden)

    if config.mixed:
        context_input = keras.Input(shape=(n_context_features,), name=CONTEXT_INPUT)
        inputs.append(context_input)
        context = context_input
        if config.context_units > 0:
            context = keras.layers.Dense(config.context_units, activation="relu",
                                         kernel_regularizer=regulariser,
                                         name="context_dense", dtype=policy)(context)
        hidden = keras.layers.Concatenate(name="concatenate", dtype=policy)([hidden, context])

    hidden = keras.layers.Dense(config.dense_units, activation="relu",
                                kernel_regularizer=regulariser, name="dense", dtype=policy)(hidden)
    hidden = keras.layers.Dropout(config.dropout, name="dense_dropout", dtype=policy)(hidden)
    outputs = keras.layers.Dense(n_classes, activation="softmax", kernel_regularizer=regulariser,
                                 name="probabilities", dtype="float32")(hidden)
    return keras.Model(inputs=inputs, outputs=outputs, name=f"{config.rnn_type}_classifier")


def model_inputs(time_features, contextual_features) -> dict:
    """The model's input dict for arrays (contextual features None when not mixed)."""
    inputs = {TIME_INPUT: time_features}
    if contextual_features is not None:
        inputs[CONTEXT_INPUT] = contextual_features
    return inputs
