"""The Keras model: a masked recurrent branch and a convolutional branch over the light curve.

    time features -> padding mask -> per-curve normalisation
        -> recurrent branch: GRU/LSTM layers (on windows of averaged steps for
           long sequences), pooled over every real step (or the last state)
        -> convolutional branch: Conv1D blocks (FCN, as in LSTM-FCN), pooled
    time features -> order-free summary statistics (optional) -> batch norm
    contextual features -> piecewise-linear encoding over quantile bins (optional)
    [recurrent, convolutional, per-curve and summary statistics, contextual features]
        -> a hidden dense layer -> softmax

The original project's architecture (`--preset original`) is the recurrent
branch alone, two layers each followed by dropout and batch normalisation,
its last state concatenated with the contextual features.

Only built-in layers and the registered layers of rnn_classifier.layers are
used (no Lambda), so the model saves as `.keras` and reloads in Keras's safe
mode. The recurrent layers keep their default activations, biases,
reset_after and no recurrent dropout, and their masks are right-padded, so on
a GPU Keras picks the cuDNN kernel; `precision` selects mixed float16/bfloat16
compute.
"""

from __future__ import annotations

import math
import statistics

import keras

from rnn_classifier.config import AUGMENTATION, CONV_KERNEL_SIZES, TrainConfig
from rnn_classifier.layers import (
    BATCH_NORM_MOMENTUM,
    AttentionPooling,
    CurveAugmentation,
    CurveNormalisation,
    MaskedConvBlock,
    MaskedDownsample,
    MaskedPooling,
    PaddingMask,
    PiecewiseLinearEncoding,
    PriorShift,
    SeriesStatistics,
)
from rnn_classifier.random_kernels import RandomKernelFeatures, unfitted_random_kernels

TIME_INPUT = "time_features"
CONTEXT_INPUT = "contextual_features"


def recurrent_pool_size(config: TrainConfig, max_steps: int | None) -> int:
    """Steps averaged into one recurrent step, so the branch reads at most max_rnn_steps."""
    if not config.max_rnn_steps or not max_steps:
        return 1
    return max(1, math.ceil(max_steps / config.max_rnn_steps))


def _recurrent_branch(config: TrainConfig, sequence, real, pool: int, regulariser, policy):
    recurrent_layer = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[config.rnn_type]
    if pool > 1:
        sequence, real = MaskedDownsample(pool, name="recurrent_windows")(sequence, real)
    hidden = sequence
    for index in range(config.rnn_layers):
        last_state = config.pooling == "last" and index == config.rnn_layers - 1
        layer = recurrent_layer(config.rnn_units, return_sequences=not last_state,
                                kernel_regularizer=regulariser,
                                recurrent_regularizer=regulariser,
                                name=f"{config.rnn_type}_{index + 1}", dtype=policy)
        if config.bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{index + 1}",
                                               dtype=policy)
        hidden = layer(hidden, mask=real)
        hidden = keras.layers.Dropout(config.dropout, name=f"rnn_dropout_{index + 1}",
                                      dtype=policy)(hidden)
        norm = keras.layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM,
                                               name=f"rnn_batch_norm_{index + 1}", dtype=policy)
        hidden = norm(hidden) if last_state else norm(hidden, mask=real)
    if config.pooling == "mean_max":
        return MaskedPooling(name="recurrent_pooling", dtype=policy)(hidden, real)
    if config.pooling == "attention":
        return AttentionPooling(name="recurrent_pooling", dtype=policy)(hidden, real)
    return hidden


def _convolutional_branch(config: TrainConfig, sequence, real, policy):
    hidden = sequence
    for index, kernel_size in enumerate(CONV_KERNEL_SIZES[:config.conv_layers]):
        hidden = MaskedConvBlock(config.conv_filters, kernel_size, config.l2,
                                 dilation=config.conv_dilation**index,
                                 name=f"conv_{index + 1}", dtype=policy)(hidden, real)
    return MaskedPooling(name="conv_pooling", dtype=policy)(hidden, real)


def _random_kernel_head(config: TrainConfig, curves, real, n_time_features: int,
                        n_classes: int, max_steps: int | None, kernel_config: dict | None,
                        main_probabilities, regulariser, policy):
    """A second head on random-kernel features; the two heads' probabilities averaged.

    The loss is that of the average, so the heads learn together (one loss per
    head, which keeps them more independent, has not been tried).
    """
    features = RandomKernelFeatures(
        **(kernel_config or unfitted_random_kernels(n_time_features, max_steps,
                                                    config.kernel_features(), config.seed)),
        name="random_kernel_features")(curves, real)
    hidden = keras.layers.Dropout(config.dropout, name="kernel_input_dropout",
                                  dtype=policy)(features)
    hidden = keras.layers.Dense(config.dense_units, activation="relu",
                                kernel_regularizer=regulariser, name="kernel_dense",
                                dtype=policy)(hidden)
    hidden = keras.layers.Dropout(config.dropout, name="kernel_dense_dropout",
                                  dtype=policy)(hidden)
    kernel_probabilities = keras.layers.Dense(
        n_classes, activation="softmax", kernel_regularizer=regulariser,
        name="kernel_probabilities", dtype="float32")(hidden)
    return keras.layers.Average(name="probabilities", dtype="float32")(
        [main_probabilities, kernel_probabilities])


def standard_normal_bin_edges(n_features: int, n_bins: int) -> list[list[float]]:
    """Quantile bin edges of a standard normal (1st to 99th percentile) for each feature.

    Scaled contextual features are roughly standard normal, so these stand in
    for the training split's own quantiles when a model is built without data.
    """
    normal = statistics.NormalDist()
    column = [normal.inv_cdf(0.01 + 0.98 * index / n_bins) for index in range(n_bins + 1)]
    return [column] * n_features


def build_model(config: TrainConfig, n_time_features: int, n_context_features: int,
                n_classes: int, max_steps: int | None = None,
                context_edges: list[list[float]] | None = None,
                kernel_config: dict | None = None) -> keras.Model:
    """Build (uncompiled) the classifier described by `config`.

    Args:
        config: hyperparameters (the Model section of TrainConfig, plus
            mixed, mask_value and precision).
        n_time_features: F, features per observation.
        n_context_features: M, contextual features (ignored when
            config.mixed is False).
        n_classes: K, width of the softmax.
        max_steps: T of the training data; sets how many steps the recurrent
            branch averages into one (`max_rnn_steps`); None: one.
        context_edges: per contextual feature, the edges of its quantile bins
            on the scaled training split (layers.quantile_bin_edges with
            `context_bins`); None: those of a standard normal.
        kernel_config: the RandomKernelFeatures config fitted on the scaled
            training curves (random_kernels.fit_random_kernels); None: unfitted.

    Returns:
        A keras.Model taking {"time_features": (None, T, F)} and, when mixed,
        {"contextual_features": (None, M)}; sequences may have any length T.
    """
    regulariser = keras.regularizers.L2(config.l2) if config.l2 > 0 else None
    # Mixed precision: every layer computes in config.precision except the per-curve
    # statistics (sums of squares overflow float16) and the softmax, which stays
    # float32 so probabilities (and the loss) keep full precision.
    policy = config.precision

    time_input = keras.Input(shape=(None, n_time_features), name=TIME_INPUT)
    inputs = [time_input]
    curves = time_input
    if config.augments():
        curves = CurveAugmentation(config.mask_value, *AUGMENTATION, seed=config.seed,
                                   name="augmentation")(curves)
    real = PaddingMask(config.mask_value, name="padding_mask")(curves)
    sequence, statistics = CurveNormalisation(config.curve_normalisation,
                                              name="curve_normalisation")(curves, real)
    branches = [_recurrent_branch(config, sequence, real,
                                  recurrent_pool_size(config, max_steps), regulariser, policy)]
    if config.conv_filters > 0:
        branches.append(_convolutional_branch(config, sequence, real, policy))
    if config.curve_normalisation:
        branches.append(statistics)
    if config.summary_statistics:
        summary = SeriesStatistics(name="summary_statistics")(curves, real)
        # Their scales differ by feature (a count, a position in [0, 1], a kurtosis).
        branches.append(keras.layers.BatchNormalization(
            momentum=BATCH_NORM_MOMENTUM, name="summary_batch_norm", dtype=policy)(summary))

    if config.mixed:
        context_input = keras.Input(shape=(n_context_features,), name=CONTEXT_INPUT)
        inputs.append(context_input)
        context = context_input
        if config.context_bins > 0 and n_context_features > 0:
            # float32 even under mixed precision: float16 would round narrow bins to zero width.
            context = PiecewiseLinearEncoding(
                context_edges or standard_normal_bin_edges(n_context_features,
                                                           config.context_bins),
                name="context_encoding")(context)
        if config.context_units > 0:
            context = keras.layers.Dense(config.context_units, activation="relu",
                                         kernel_regularizer=regulariser,
                                         name="context_dense", dtype=policy)(context)
        branches.append(context)
    hidden = branches[0] if len(branches) == 1 else keras.layers.Concatenate(
        name="concatenate", dtype=policy)(branches)

    hidden = keras.layers.Dense(config.dense_units, activation="relu",
                                kernel_regularizer=regulariser, name="dense", dtype=policy)(hidden)
    hidden = keras.layers.Dropout(config.dropout, name="dense_dropout", dtype=policy)(hidden)
    outputs = keras.layers.Dense(n_classes, activation="softmax", kernel_regularizer=regulariser,
                                 name="probabilities" if config.kernel_features() == 0
                                 else "main_probabilities", dtype="float32")(hidden)
    if config.kernel_features() > 0:
        outputs = _random_kernel_head(config, curves, real, n_time_features, n_classes,
                                      max_steps, kernel_config, outputs, regulariser, policy)
    return keras.Model(inputs=inputs, outputs=outputs, name=f"{config.rnn_type}_classifier")


def with_prior_shift(model: keras.Model, log_prior, prior_weight: float,
                     temperature: float) -> keras.Model:
    """`model` with its probabilities passed through PriorShift (the model folder's form)."""
    shifted = PriorShift(log_prior, prior_weight, temperature, name="calibrated_probabilities",
                         dtype="float32")(model.output)
    return keras.Model(inputs=model.inputs, outputs=shifted, name=model.name)


def model_inputs(time_features, contextual_features) -> dict:
    """The model's input dict for arrays (contextual features None when not mixed)."""
    inputs = {TIME_INPUT: time_features}
    if contextual_features is not None:
        inputs[CONTEXT_INPUT] = contextual_features
    return inputs
