"""Custom Keras layers for padded, masked sequences; each honours the padding mask.

Every layer here is a registered serialisable with no Python code in its
config, so a model saved as `.keras` reloads in Keras's safe mode. Masks are
passed explicitly as a second input `real`, (B, T) booleans, True at real
steps (not as Keras's `mask` argument):
convolutions and pooling do not propagate Keras's implicit masks, and an
explicit input keeps the guarantee visible in the graph: padding a curve
further changes no output, because every layer zeroes or ignores padded
steps before they can reach a real one.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import keras
import numpy as np
from keras import ops

from rnn_classifier.baselines import QUANTILES

# Batch normalisation's moving statistics follow the batches with this momentum. Keras's
# 0.99 needs hundreds of steps to forget its initial values; a small training set gets
# a few hundred steps in all, and was scored on stale statistics (GunPoint: validation
# accuracy 0.5 for 9 epochs while training accuracy was 1.0).
BATCH_NORM_MOMENTUM = 0.9
# Added to a per-curve standard deviation before dividing or taking its log.
STD_EPSILON = 1e-3
# PiecewiseLinearEncoding's first and last bins are open: a value beyond the training range
# extrapolates linearly, up to this many bin widths (within float16's range).
_OPEN = 6e4
PACKAGE = "rnn_classifier"
# Set while a graph for XLA is traced (see xla_sorting).
_SORTING_NETWORK = contextvars.ContextVar("sorting_network", default=False)


@contextlib.contextmanager
def xla_sorting() -> Iterator[None]:
    """Within it, layers traced into a graph sort with a sorting network.

    XLA compiles a general sort poorly on CPU: sorting (16384, 64, 3) steps
    took 190 ms under XLA against 46 ms without it, and 17 ms as a bitonic
    network of elementwise minima and maxima, which XLA fuses. Without XLA
    the network is the slower one (134 ms), hence a switch for the code
    that traces XLA graphs (batching.BucketedPredictor) rather than a
    default. Both give exactly the same sorted values.
    """
    token = _SORTING_NETWORK.set(True)
    try:
        yield
    finally:
        _SORTING_NETWORK.reset(token)


def _bitonic_sort(values):
    """(B, N, F) sorted ascending along N, a power of two, by a bitonic sorting network."""
    steps, features = values.shape[1], values.shape[2]
    block = 2
    while block <= steps:
        distance = block // 2
        while distance >= 1:
            pairs = steps // (2 * distance)
            # Element i meets i XOR distance; the pair sorts ascending where i & block is 0.
            halves = ops.reshape(values, (-1, pairs, 2, distance, features))
            low, high = halves[:, :, 0], halves[:, :, 1]
            smaller, larger = ops.minimum(low, high), ops.maximum(low, high)
            ascending = ((np.arange(pairs) // (block // (2 * distance))) % 2 == 0).reshape(
                1, pairs, 1, 1)
            values = ops.reshape(ops.stack([ops.where(ascending, smaller, larger),
                                            ops.where(ascending, larger, smaller)], axis=2),
                                 (-1, steps, features))
            distance //= 2
        block *= 2
    return values


def _sort_steps(values, fill):
    """(B, T, F) sorted along T; by a sorting network inside xla_sorting when T is static."""
    steps = values.shape[1]
    if not _SORTING_NETWORK.get() or steps is None or values.shape[2] is None or steps < 2:
        return ops.sort(values, axis=1)
    size = 1 << (steps - 1).bit_length()
    if size > steps:
        padding = ops.full_like(values[:, :1], fill)
        values = ops.concatenate([values, ops.repeat(padding, size - steps, axis=1)], axis=1)
    return _bitonic_sort(values)[:, :steps]


def _float_mask(real, dtype):
    """(B, T) booleans as (B, T, 1) floats of `dtype`."""
    return ops.expand_dims(ops.cast(real, dtype), -1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PaddingMask(keras.layers.Layer):
    """(B, T, F) padded sequences -> (B, T) mask, True where any feature is not the mask value."""

    def __init__(self, mask_value: float, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)

    def call(self, inputs):
        return ops.any(ops.not_equal(inputs, ops.cast(self.mask_value, inputs.dtype)), axis=-1)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs.shape[:-1], dtype="bool")

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CurveAugmentation(keras.layers.Layer):
    """Training only: a random window of each curve, its values scaled and jittered.

    For each curve in a training batch: keep a random contiguous run of at
    least `min_kept` of its observations (moved to the start, so padding stays
    trailing: a light curve seen for part of its life, or a pattern at another
    offset), multiply its values by one factor drawn from exp(N(0, scale)),
    and add N(0, jitter) noise to every real value. Inputs are the scaled
    features, so the factors and noise are in standard deviations. At
    inference the layer passes its input through unchanged.
    """

    def __init__(self, mask_value: float, min_kept: float, scale: float, jitter: float,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)
        self.min_kept = float(min_kept)
        self.scale = float(scale)
        self.jitter = float(jitter)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        batch, steps = ops.shape(inputs)[0], ops.shape(inputs)[1]
        mask_value = ops.cast(self.mask_value, inputs.dtype)
        real = ops.any(ops.not_equal(inputs, mask_value), axis=-1)
        lengths = ops.sum(ops.cast(real, "float32"), axis=1)
        fraction = keras.random.uniform((batch,), self.min_kept, 1.0, seed=self.seed_generator)
        kept = ops.maximum(ops.ceil(lengths * fraction), 1.0)
        start = ops.floor(keras.random.uniform((batch,), seed=self.seed_generator)
                          * (lengths - kept + 1.0))
        positions = ops.arange(steps, dtype="float32")
        source = ops.minimum(ops.expand_dims(start, 1) + positions, ops.cast(steps - 1, "float32"))
        window = ops.take_along_axis(inputs, ops.expand_dims(ops.cast(source, "int32"), -1),
                                     axis=1)
        inside = ops.expand_dims(positions < ops.expand_dims(kept, 1), -1)
        factor = ops.exp(self.scale * keras.random.normal((batch, 1, 1),
                                                          seed=self.seed_generator))
        noise = self.jitter * keras.random.normal(ops.shape(inputs), seed=self.seed_generator)
        augmented = window * ops.cast(factor, inputs.dtype) + ops.cast(noise, inputs.dtype)
        return ops.where(inside, augmented, mask_value)

    def compute_output_spec(self, inputs, training=None):
        return keras.KerasTensor(inputs.shape, inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value,
                "min_kept": self.min_kept, "scale": self.scale, "jitter": self.jitter,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CurveNormalisation(keras.layers.Layer):
    """Each curve's features standardised over its own real steps, beside the originals.

    Light curves of one class can differ in brightness by orders of
    magnitude; a shape learnt on faint supernovae must also fire on bright
    ones. For each curve and feature this computes the mean and standard
    deviation over the real steps and outputs:

    - sequence (B, T, 2F): the input features, then (x - mean) / (std + eps),
      both zero at padded steps;
    - statistics (B, 2F + 1): each feature's mean and log(std + eps), and
      log(number of observations), so the level and spread taken out of the
      shape still reach the classifier.

    With `normalise=False` the sequence is the input zeroed at padding (F
    features) and the statistics are only log(number of observations).
    """

    def __init__(self, normalise: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.normalise = bool(normalise)

    def call(self, inputs, real):
        weights = _float_mask(real, inputs.dtype)
        zeroed = inputs * weights
        count = ops.sum(weights, axis=1)  # (B, 1)
        log_count = ops.log(ops.maximum(count, 1.0))
        if not self.normalise:
            return zeroed, log_count
        safe_count = ops.maximum(count, 1.0)
        mean = ops.sum(zeroed, axis=1) / safe_count
        centred = (inputs - ops.expand_dims(mean, 1)) * weights
        # The epsilon inside the root keeps its gradient finite for constant features.
        std = ops.sqrt(ops.sum(ops.square(centred), axis=1) / safe_count + STD_EPSILON**2)
        normalised = centred / ops.expand_dims(std + STD_EPSILON, 1)
        sequence = ops.concatenate([zeroed, normalised], axis=-1)
        statistics = ops.concatenate([mean, ops.log(std + STD_EPSILON), log_count], axis=-1)
        return sequence, statistics

    def compute_output_spec(self, inputs, real):
        batch, steps, features = inputs.shape
        if not self.normalise:
            return (keras.KerasTensor((batch, steps, features), inputs.dtype),
                    keras.KerasTensor((batch, 1), inputs.dtype))
        return (keras.KerasTensor((batch, steps, 2 * features), inputs.dtype),
                keras.KerasTensor((batch, 2 * features + 1), inputs.dtype))

    def get_config(self):
        return {**super().get_config(), "normalise": self.normalise}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SeriesStatistics(keras.layers.Layer):
    """(B, T, F) curves -> (B, 1 + 19 F): order-free summary statistics of each curve.

    The statistics a tree ensemble on light-curve features would use (see
    rnn_classifier.baselines.series_statistics, which this equals in float32
    before the squashing): the number of observations and, per feature, the
    mean, standard deviation, minimum, maximum, the QUANTILES, skewness,
    kurtosis, first and last value, the relative positions of the minimum and
    maximum, the linear trend against the step index, the mean and spread of
    step-to-step differences and the lag-1 autocorrelation, all over the real
    steps. Sequence layers learn local shapes but find global facts (how
    skewed a curve is, where its maximum falls, how correlated neighbouring
    steps are) slowly from few examples; given directly they cost nothing to
    learn. Every value goes through sign(x) log(1 + |x|), so heavy tails (a
    kurtosis of 50) reach the network on the scale of the rest; undefined
    values (a one-step curve's spread) are 0.
    """

    PER_FEATURE = 14 + len(QUANTILES)

    def call(self, inputs, real):
        # float32 throughout: fourth powers and sums of squares overflow float16.
        values = ops.cast(inputs, "float32")
        weights = _float_mask(real, "float32")
        count = ops.sum(weights, axis=1)  # (B, 1)
        safe_count = ops.maximum(count, 1.0)
        mean = ops.sum(values * weights, axis=1) / safe_count
        centred = (values - ops.expand_dims(mean, 1)) * weights
        variance = ops.sum(ops.square(centred), axis=1) / safe_count
        std = ops.sqrt(variance)
        spread = ops.where(variance > 0, std, 1.0)
        defined = ops.cast(variance > 0, "float32")
        skewness = defined * ops.sum(centred**3, axis=1) / safe_count / spread**3
        kurtosis = defined * (ops.sum(centred**4, axis=1) / safe_count / spread**4 - 3.0)

        # Padded steps filled so that they never win a minimum (low) or maximum (high).
        big = ops.cast(3e38, "float32")
        is_real = ops.expand_dims(real, -1)
        filled_low = ops.where(is_real, values, big)
        filled_high = ops.where(is_real, values, -big)
        ordered = _sort_steps(filled_low, big)
        quantiles = [self._quantile(ordered, count, q) for q in QUANTILES]
        last_index = ops.cast(ops.maximum(count - 1.0, 0.0), "int32")  # (B, 1)
        first = values[:, 0]
        last = ops.take_along_axis(values, ops.expand_dims(last_index, -1), axis=1)[:, 0]
        span = ops.maximum(count - 1.0, 1.0)
        position_min = ops.cast(ops.argmin(filled_low, axis=1), "float32") / span
        position_max = ops.cast(ops.argmax(filled_high, axis=1), "float32") / span

        steps = ops.cast(ops.arange(ops.shape(values)[1]), "float32")[None, :, None]
        step_centred = (steps - ops.expand_dims((count - 1.0) / 2.0, 1)) * weights
        step_spread = ops.sum(ops.square(step_centred), axis=1)
        trend = (ops.sum(step_centred * centred, axis=1)
                 / ops.where(step_spread > 0, step_spread, 1.0))

        pairs = weights[:, 1:] * weights[:, :-1]
        pair_count = ops.maximum(ops.sum(pairs, axis=1), 1.0)
        differences = (values[:, 1:] - values[:, :-1]) * pairs
        difference_mean = ops.sum(differences, axis=1) / pair_count
        difference_std = ops.sqrt(ops.maximum(
            ops.sum(ops.square(differences - ops.expand_dims(difference_mean, 1)) * pairs,
                    axis=1) / pair_count, 0.0))
        autocorrelation = defined * (ops.sum(centred[:, 1:] * centred[:, :-1], axis=1)
                                     / pair_count / spread**2)

        present = ops.cast(count > 0, "float32")
        minimum, maximum = ordered[:, 0], ops.max(filled_high, axis=1)
        columns = [mean, std, minimum, maximum, *quantiles, skewness, kurtosis, first, last,
                   position_min, position_max, trend, difference_mean, difference_std,
                   autocorrelation]
        statistics = ops.concatenate([count, *(column * present for column in columns)],
                                     axis=-1)
        return ops.sign(statistics) * ops.log1p(ops.abs(statistics))

    @staticmethod
    def _quantile(ordered, count, q: float):
        """numpy's default (linear) quantile of the first `count` sorted values."""
        position = q * ops.maximum(count - 1.0, 0.0)  # (B, 1)
        below = ops.floor(position)
        fraction = ops.expand_dims(position - below, 1)
        low = ops.expand_dims(ops.cast(below, "int32"), -1)
        high = ops.expand_dims(ops.cast(ops.ceil(position), "int32"), -1)
        low_value = ops.take_along_axis(ordered, low, axis=1)
        high_value = ops.take_along_axis(ordered, high, axis=1)
        return (low_value + fraction * (high_value - low_value))[:, 0]

    def compute_output_spec(self, inputs, real):
        return keras.KerasTensor((inputs.shape[0], 1 + self.PER_FEATURE * inputs.shape[-1]),
                                 "float32")


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedConvBlock(keras.layers.Layer):
    """Conv1D ('same') -> batch normalisation over real steps only -> ReLU, zero at padding.

    The input must be zero at padded steps (CurveNormalisation's is), so a
    real step near the end of a curve sees zeros beyond it however much
    padding follows; the output is zeroed at padded steps again for the next
    block.
    """

    def __init__(self, filters: int, kernel_size: int, l2: float = 0.0, dilation: int = 1,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.l2 = float(l2)
        self.dilation = int(dilation)
        regulariser = keras.regularizers.L2(self.l2) if self.l2 > 0 else None
        self.conv = keras.layers.Conv1D(self.filters, self.kernel_size, padding="same",
                                        dilation_rate=self.dilation,
                                        kernel_regularizer=regulariser, dtype=self.dtype_policy,
                                        name="conv")
        self.norm = keras.layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM,
                                                    dtype=self.dtype_policy, name="norm")

    def build(self, inputs_shape, real_shape=None):
        self.conv.build(inputs_shape)
        self.norm.build((*inputs_shape[:-1], self.filters))

    def call(self, inputs, real, training=None):
        hidden = self.norm(self.conv(inputs), training=training, mask=real)
        return ops.relu(hidden) * _float_mask(real, hidden.dtype)

    def compute_output_spec(self, inputs, real):
        return keras.KerasTensor((*inputs.shape[:-1], self.filters), self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "l2": self.l2, "dilation": self.dilation}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedDownsample(keras.layers.Layer):
    """Average non-overlapping windows of `pool` steps over real steps only.

    Returns the downsampled sequence and its mask (a window is real when any
    of its steps is). Windows start at step 0, so extra trailing padding only
    adds windows that are all padding.
    """

    def __init__(self, pool: int, **kwargs):
        super().__init__(**kwargs)
        self.pool = int(pool)

    def call(self, inputs, real):
        if self.pool == 1:
            return inputs, real
        weights = _float_mask(real, inputs.dtype)
        steps = ops.shape(inputs)[1]
        missing = (-steps) % self.pool
        values = ops.pad(inputs * weights, [[0, 0], [0, missing], [0, 0]])
        weights = ops.pad(weights, [[0, 0], [0, missing], [0, 0]])
        windows = (steps + missing) // self.pool
        features = inputs.shape[-1]
        values = ops.reshape(values, (-1, windows, self.pool, features))
        weights = ops.reshape(weights, (-1, windows, self.pool, 1))
        total = ops.sum(weights, axis=2)
        averaged = ops.sum(values, axis=2) / ops.maximum(total, 1.0)
        return averaged, ops.squeeze(total, -1) > 0

    def compute_output_spec(self, inputs, real):
        batch, steps, features = inputs.shape
        windows = None if steps is None else -(-steps // self.pool)
        return (keras.KerasTensor((batch, windows, features), inputs.dtype),
                keras.KerasTensor((batch, windows), "bool"))

    def get_config(self):
        return {**super().get_config(), "pool": self.pool}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedPooling(keras.layers.Layer):
    """(B, T, C) sequence -> (B, 2C): mean and maximum over the real steps of each curve."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # A recurrent layer's output carries Keras's mask; `real` already says the same.
        self.supports_masking = True

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def call(self, inputs, real):
        weights = _float_mask(real, inputs.dtype)
        mean = ops.sum(inputs * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)
        # Padded steps must never win the maximum: push them far below any value.
        lowest = ops.cast(-1e4, inputs.dtype)
        maximum = ops.max(ops.where(ops.expand_dims(real, -1), inputs, lowest), axis=1)
        return ops.concatenate([mean, maximum], axis=-1)

    def compute_output_spec(self, inputs, real):
        return keras.KerasTensor((inputs.shape[0], 2 * inputs.shape[-1]), inputs.dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class AttentionPooling(keras.layers.Layer):
    """(B, T, C) sequence -> (B, C): a learnt softmax weighting of the real steps."""

    def __init__(self, units: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.supports_masking = True  # as MaskedPooling
        self.hidden = keras.layers.Dense(self.units, activation="tanh", name="hidden",
                                         dtype=self.dtype_policy)
        self.score = keras.layers.Dense(1, name="score", dtype=self.dtype_policy)

    def build(self, inputs_shape, real_shape=None):
        self.hidden.build(inputs_shape)
        self.score.build((*inputs_shape[:-1], self.units))

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def call(self, inputs, real):
        scores = ops.squeeze(self.score(self.hidden(inputs)), -1)
        scores = ops.where(real, scores, ops.cast(-1e4, scores.dtype))
        weights = ops.expand_dims(ops.softmax(scores, axis=-1), -1)
        return ops.sum(inputs * weights, axis=1)

    def compute_output_spec(self, inputs, real):
        return keras.KerasTensor((inputs.shape[0], inputs.shape[-1]), inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def quantile_bin_edges(values, n_bins: int, labels=None) -> list[list[float]]:
    """Per column of (N, M) `values`: the distinct edges of `n_bins` equal-count bins.

    A value that fills several quantiles (a sentinel, a common exact value)
    collapses their edges into one edge of its own, so every bin above it
    holds values of the rest. A constant column gets one bin of width 1
    around its value.

    With (N,) integer `labels`, the bins hold equal shares of the
    class-balanced distribution (each example weighted by one over its class's
    count), so that a rare class's range gets bins of its own. Counted plainly,
    a 100:1 majority sets every edge: on the simulated survey the variable
    stars' chance hosts put the first edge after the no-host sentinel at 5.8
    arcsec, above the host separations of most AGN and supernovae, the very
    range where the two differ.
    """
    values = np.asarray(values, dtype=np.float64)
    quantiles = np.linspace(0.0, 1.0, n_bins + 1)
    weights = None
    if labels is not None:
        labels = np.asarray(labels)
        _, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
        weights = 1.0 / counts[index]
    edges = []
    for column in values.T:
        if weights is None:
            found = np.quantile(column, quantiles)
        else:
            # Weighted quantiles exist only for the inverted CDF (numpy >= 2.0), whose 0
            # and 1 quantiles are the column's extremes, as the plain quantiles' are.
            found = np.quantile(column, quantiles, weights=weights, method="inverted_cdf")
        distinct = np.unique(found)
        if distinct.size < 2:
            distinct = np.array([distinct[0] - 0.5, distinct[0] + 0.5])
        edges.append([float(edge) for edge in distinct])
    return edges


@keras.saving.register_keras_serializable(package=PACKAGE)
class PiecewiseLinearEncoding(keras.layers.Layer):
    """(B, M) numbers -> (B, M * n_bins): each one's piecewise-linear encoding (Gorishniy et al.).

    Column j with edges e_0 < ... < e_k becomes k values, bin t holding
    clip((x - e_t) / (e_t+1 - e_t), 0, 1): 1 for bins below x, the fraction
    of x's own bin, 0 above. The first bin is open below and the last open
    above, so values outside the training range extrapolate linearly.
    Columns with fewer bins are padded with zeros to n_bins. A dense layer
    after it can threshold each feature where a tree would split, which a
    dense layer on the raw value finds hard: one weight per bin, where the
    raw value needs a sharp bump made of several ReLUs.
    """

    def __init__(self, edges, **kwargs):
        super().__init__(**kwargs)
        self.edges = [[float(edge) for edge in column] for column in edges]
        if not self.edges or any(len(column) < 2 for column in self.edges):
            raise ValueError("PiecewiseLinearEncoding needs at least two edges per column")
        self.n_bins = max(len(column) - 1 for column in self.edges)
        lower, width, floor, ceiling = [], [], [], []
        for column in self.edges:
            bins = len(column) - 1
            padding = [0.0] * (self.n_bins - bins)
            lower.append(column[:-1] + padding)
            width.append([max(high - low, 1e-12)
                          for low, high in zip(column[:-1], column[1:], strict=True)]
                         + [1.0] * len(padding))
            # Bins past a column's own are pinned to 0 by floor = ceiling = 0.
            floor.append([-_OPEN] + [0.0] * (bins - 1) + padding)
            ceiling.append([1.0] * (bins - 1) + [_OPEN] + padding)
        self._lower, self._width = lower, width
        self._floor, self._ceiling = floor, ceiling

    def call(self, inputs):
        dtype = inputs.dtype
        fraction = (ops.expand_dims(inputs, -1) - ops.convert_to_tensor(self._lower, dtype)) / (
            ops.convert_to_tensor(self._width, dtype))
        encoded = ops.minimum(ops.maximum(fraction, ops.convert_to_tensor(self._floor, dtype)),
                              ops.convert_to_tensor(self._ceiling, dtype))
        return ops.reshape(encoded, (-1, len(self.edges) * self.n_bins))

    def compute_output_spec(self, inputs):
        return keras.KerasTensor((inputs.shape[0], len(self.edges) * self.n_bins), inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "edges": self.edges}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PriorShift(keras.layers.Layer):
    """Probabilities re-weighted by a class prior and softened by a temperature.

    softmax((log p + prior_weight * log_prior) / temperature). A model trained
    with the logit-adjusted loss outputs class-balanced probabilities p;
    prior_weight 1 puts the training class balance back (best accuracy),
    0 keeps them balanced (best balanced accuracy). The temperature,
    fitted on the validation split after training, calibrates the result
    without changing which class is the most probable.
    """

    def __init__(self, log_prior, prior_weight: float = 1.0, temperature: float = 1.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.log_prior = [float(value) for value in log_prior]
        self.prior_weight = float(prior_weight)
        self.temperature = float(temperature)

    def call(self, inputs):
        logits = ops.log(ops.maximum(inputs, 1e-12))
        shift = self.prior_weight * ops.convert_to_tensor(self.log_prior, dtype=inputs.dtype)
        return ops.softmax((logits + shift) / self.temperature, axis=-1)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs.shape, inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "log_prior": self.log_prior,
                "prior_weight": self.prior_weight, "temperature": self.temperature}
