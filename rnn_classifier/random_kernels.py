"""Random convolutional kernel features (MiniRocket, Dempster et al. 2021), masked, as a layer.

MiniRocket convolves each series with 84 fixed kernels of length 9 (weight
-1 everywhere and +2 at three of the nine positions) at several dilations,
and describes each output by the proportion of steps above a bias (PPV). The
biases are quantiles of the outputs on the training data. The model's
second head (`random_kernels`, built for series without a time column) reads
these features; on the small shape sets of the real-data suite it lifted the
classifier above MiniRocket (README "Quality on real data").

Here padded steps are zeroed before the convolution and left out of the
proportions, so padding changes no feature; each kernel of a multivariate
series sums a random subset of its channels. Everything fitted (channel
subsets, dilations, biases, the features' mean and spread) is saved in the
layer config, so a model folder needs no extra file.
"""

from __future__ import annotations

import itertools
import math

import keras
import numpy as np
from keras import ops

from rnn_classifier.layers import PACKAGE

KERNEL_LENGTH = 9
# The 84 kernels: +2 at three of the nine positions, -1 elsewhere (each sums to 0).
KERNEL_POSITIONS = tuple(itertools.combinations(range(KERNEL_LENGTH), 3))
N_KERNELS = len(KERNEL_POSITIONS)
MAX_DILATIONS = 8
# Curves the biases are fitted on: quantiles need hundreds of curves, not all of them.
FIT_SAMPLE = 1024
GOLDEN_RATIO = (1 + 5**0.5) / 2
MIN_SCALE = 1e-3
_BELOW_ANY_BIAS = 3e38


def base_kernels() -> np.ndarray:
    """(KERNEL_LENGTH, N_KERNELS) weights of the 84 kernels."""
    weights = -np.ones((KERNEL_LENGTH, N_KERNELS), dtype=np.float32)
    for kernel, positions in enumerate(KERNEL_POSITIONS):
        weights[list(positions), kernel] = 2.0
    return weights


def dilations_for(length: int, max_dilations: int = MAX_DILATIONS) -> list[int]:
    """Dilations spaced exponentially from 1 until the kernel spans the series."""
    top = math.log2(max(length - 1, 1) / (KERNEL_LENGTH - 1)) if length > KERNEL_LENGTH else 0.0
    exponents = np.linspace(0.0, max(top, 0.0), max_dilations)
    return sorted({int(2**exponent) for exponent in exponents})


def channel_masks(n_channels: int, seed: int) -> np.ndarray:
    """(n_channels, N_KERNELS) 0/1: the channels each kernel sums (MiniRocket's rule)."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_channels, N_KERNELS), dtype=np.float32)
    top = math.log2(min(n_channels, KERNEL_LENGTH) + 1)
    for kernel in range(N_KERNELS):
        size = min(n_channels, max(1, int(2 ** rng.uniform(0.0, top))))
        masks[rng.choice(n_channels, size, replace=False), kernel] = 1.0
    return masks


def _convolutions(curves, real, masks, dilations):
    """Per dilation, (B, T, N_KERNELS) outputs of the kernels on the zero-padded curves.

    Written as one matrix product of the nine shifted copies of the curves
    (B, T, 9 C) with the (9 C, 84) weights: on CPU this ran faster than a
    dilated convolution, and it is the same sum.
    """
    values = ops.where(ops.expand_dims(real, -1), ops.cast(curves, "float32"), 0.0)
    n_channels = len(masks)
    # weights[j, c, k]: kernel k's weight at tap j, on channel c if the kernel sums it.
    weights = ops.convert_to_tensor(np.reshape(
        base_kernels()[:, None, :] * np.asarray(masks, dtype=np.float32)[None],
        (KERNEL_LENGTH * n_channels, N_KERNELS)), "float32")
    length = ops.shape(values)[1]
    outputs = []
    for dilation in dilations:
        half = (KERNEL_LENGTH // 2) * dilation
        padded = ops.pad(values, [[0, 0], [half, half], [0, 0]])
        shifted = ops.concatenate([padded[:, tap * dilation:tap * dilation + length]
                                   for tap in range(KERNEL_LENGTH)], axis=-1)
        outputs.append(ops.matmul(shifted, weights))
    return outputs


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomKernelFeatures(keras.layers.Layer):
    """(B, T, C) curves and their (B, T) real-step mask -> (B, F) standardised PPV features.

    Args:
        channel_masks: (C, 84) 0/1 channels of each kernel (channel_masks()).
        dilations: the dilations, one set of biases each.
        biases: per dilation, (84, n_biases) thresholds.
        mean, scale: (F,) the training features' mean and spread, F = 84 *
            n_biases * len(dilations).
    """

    def __init__(self, channel_masks, dilations, biases, mean, scale, **kwargs):
        super().__init__(**kwargs)
        self.channel_masks = np.asarray(channel_masks, dtype=np.float32).tolist()
        self.dilations = [int(dilation) for dilation in dilations]
        self.biases = [np.asarray(bias, dtype=np.float32).tolist() for bias in biases]
        self.mean = [float(value) for value in mean]
        self.scale = [float(value) for value in scale]
        if len(self.biases) != len(self.dilations):
            raise ValueError("RandomKernelFeatures needs one set of biases per dilation")
        if len(self.mean) != self.n_features or len(self.scale) != self.n_features:
            raise ValueError(f"mean and scale need {self.n_features} values")

    @property
    def n_features(self) -> int:
        return sum(N_KERNELS * len(bias[0]) for bias in self.biases)

    def proportions(self, inputs, real):
        """The unstandardised features: each kernel's share of real steps above each bias."""
        is_real = ops.expand_dims(real, -1)  # (B, T, 1)
        count = ops.maximum(ops.sum(ops.cast(is_real, "float32"), axis=1), 1.0)  # (B, 1)
        features = []
        for output, bias in zip(_convolutions(inputs, real, self.channel_masks, self.dilations),
                                self.biases, strict=True):
            # Padded steps below every bias: masked once here, not once per bias.
            output = ops.where(is_real, output, -_BELOW_ANY_BIAS)
            above = ops.cast(ops.expand_dims(output, -1) > ops.convert_to_tensor(bias, "float32"),
                             "float32")  # (B, T, 84, n_biases)
            share = ops.sum(above, axis=1) / ops.expand_dims(count, -1)
            features.append(ops.reshape(share, (-1, N_KERNELS * len(bias[0]))))
        return ops.concatenate(features, axis=-1)

    def call(self, inputs, real):
        features = self.proportions(inputs, real)
        return (features - ops.convert_to_tensor(self.mean, "float32")) / ops.convert_to_tensor(
            self.scale, "float32")

    def compute_output_spec(self, inputs, real):
        return keras.KerasTensor((inputs.shape[0], self.n_features), "float32")

    def get_config(self):
        return {**super().get_config(), "channel_masks": self.channel_masks,
                "dilations": self.dilations, "biases": self.biases, "mean": self.mean,
                "scale": self.scale}


def unfitted_random_kernels(n_channels: int, length: int | None, n_features: int,
                            seed: int) -> dict:
    """A RandomKernelFeatures config without data (biases 0, features unscaled): the
    layout (channel subsets, dilations, biases per kernel) that fitting fills in, and
    what a model is built with before its weights and config are loaded."""
    dilations = dilations_for(length or KERNEL_LENGTH)
    n_biases = max(1, round(n_features / (N_KERNELS * len(dilations))))
    total = N_KERNELS * n_biases * len(dilations)
    return {"channel_masks": channel_masks(n_channels, seed).tolist(), "dilations": dilations,
            "biases": [np.zeros((N_KERNELS, n_biases)).tolist() for _ in dilations],
            "mean": [0.0] * total, "scale": [1.0] * total}


def fit_random_kernels(time_features: np.ndarray, mask_value: float, n_features: int,
                       seed: int) -> dict:
    """The RandomKernelFeatures config for (N, T, C) scaled, padded training curves.

    Biases are quantiles of each kernel's outputs over the real steps of up to
    FIT_SAMPLE curves, at levels spread by the golden ratio (as MiniRocket's);
    mean and scale standardise the resulting features on those curves.
    """
    rng = np.random.default_rng(seed)
    sample = time_features[rng.permutation(len(time_features))[:FIT_SAMPLE]]
    real = np.any(sample != mask_value, axis=-1)
    layout = unfitted_random_kernels(sample.shape[2], sample.shape[1], n_features, seed)
    n_biases = len(layout["biases"][0][0])
    biases = []
    for index, output in enumerate(_convolutions(sample, real, layout["channel_masks"],
                                                 layout["dilations"])):
        values = ops.convert_to_numpy(output)[real]  # (real steps, 84)
        first = index * N_KERNELS * n_biases
        levels = np.mod((first + np.arange(N_KERNELS * n_biases) + 1) * GOLDEN_RATIO,
                        1.0).reshape(N_KERNELS, n_biases)
        biases.append(np.stack([np.quantile(values[:, kernel], levels[kernel])
                                for kernel in range(N_KERNELS)]).tolist())
    unscaled = RandomKernelFeatures(**{**layout, "biases": biases})
    features = ops.convert_to_numpy(unscaled.proportions(sample, real))
    return {**layout, "biases": biases, "mean": features.mean(axis=0).tolist(),
            "scale": np.maximum(features.std(axis=0), MIN_SCALE).tolist()}
