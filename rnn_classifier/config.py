"""Every hyperparameter of a training run, with its default, in ONE place.

`TrainConfig` is the single source of truth: the `train` CLI flags, the
`--config` YAML keys, the Kubeflow pipeline parameters and the Katib search
space are all derived from (or tested against) its fields. The resolved
config is saved as `config.json` beside every trained model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

RNN_TYPES = ("gru", "lstm")
LOSSES = ("logit_adjusted", "focal", "wce", "ce")
POOLINGS = ("mean_max", "attention", "last")
CALIBRATIONS = ("temperature", "none")
LR_SCHEDULES = ("cosine", "constant")
AUGMENTATIONS = ("auto", "on", "off")
# Training-time augmentation (rnn_classifier.layers.CurveAugmentation): the smallest
# share of a curve's observations kept, the log-normal sigma of the amplitude factor
# and the standard deviation of the noise, both in units of the scaled features.
# Windows down to 30% of a curve, not 80% as before 2026-12-07: on the full survey
# (3 seeds) macro-F1 rose from 0.832 to 0.855 and supernova recall at the GOTO operating
# point from 0.856 to 0.906 (README "Performance"); a survey first sees a transient
# through a few observations.
AUGMENTATION = (0.3, 0.1, 0.05)
AUGMENTATION_MIN_KEPT = AUGMENTATION[0]
# Kernel sizes of the convolutional blocks, in turn (FCN, Wang et al. 2017).
CONV_KERNEL_SIZES = (8, 5, 3)
CLASS_WEIGHTINGS = ("balanced", "effective", "none")
# Most quantile bins per contextual feature: each bin is a column of the head's input.
MAX_CONTEXT_BINS = 256
MAX_RANDOM_KERNEL_FEATURES = 10000
SCALINGS = ("asinh", "standard", "robust", "none")
MONITORS = ("val_macro_auc", "val_macro_f1", "val_loss", "val_accuracy")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")  # Keras dtype policies

# The automatic batch size (batch_size=0) gives about this many steps an epoch,
# within this range of batch sizes.
AUTO_BATCH_STEPS = 64
AUTO_BATCH_RANGE = (16, 256)

# The cosine schedule warms up linearly from this fraction of the learning rate over
# this many epochs (at most half the run): Adam's early steps are large and noisy.
LR_WARMUP_START = 0.1
LR_WARMUP_EPOCHS = 3

# Input pipeline and inference (not hyperparameters: they change speed; the bucket
# width also shapes the training batches when bucket_by_length is on).
# Curves of 1-8, 9-16, ... observations share a length bucket.
LENGTH_BUCKET_WIDTH = 8
# Curves per inference batch: the fastest of 1024-16384 in benchmarks/performance.py
# on 2 CPU cores.
PREDICT_BATCH_SIZE = 16384
# XLA compiles one program per length bucket (about 0.6 s each on 2 cores) and then
# runs ~1.7x faster than the plain tf.function in the steady state (README
# "Performance"): it pays from a few hundred thousand curves.
XLA_MIN_ROWS = 250_000


class ConfigError(ValueError):
    """A config value, YAML file or flag that does not fit `TrainConfig`."""


def _field(default: Any, help: str, choices: tuple | None = None, minimum: float | None = None,
           maximum: float | None = None):
    return dataclasses.field(default=default, metadata={
        "help": help, "choices": choices, "minimum": minimum, "maximum": maximum})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run; PRESETS["original"] is the original project's."""

    # Data and preprocessing.
    mixed: bool = _field(True, "use the contextual (static) features beside the time series")
    mask_value: float = _field(-99.0, "value that pads sequences after their last observation")
    scaling: str = _field(
        "asinh", "per-feature transform fitted on the training split's real steps: asinh = "
        "asinh((x - median) / MAD) then standardise (robust to heavy tails); standard = "
        "z-score; robust = (x - median) / IQR; none", SCALINGS)
    time_column: int = _field(
        -1, "index of a time feature to turn into time since the previous observation "
        "(-1: the data has no time column)", minimum=-1)

    # Model.
    rnn_type: str = _field("gru", "recurrent layer type", RNN_TYPES)
    rnn_layers: int = _field(1, "number of stacked recurrent layers", minimum=1, maximum=8)
    rnn_units: int = _field(32, "units per recurrent layer", minimum=1)
    bidirectional: bool = _field(False, "wrap each recurrent layer in Bidirectional")
    pooling: str = _field(
        "mean_max", "how the recurrent branch summarises a curve: mean_max = mean and maximum "
        "of its outputs over every real step; attention = a learnt weighting of the steps; "
        "last = its state after the last observation (the original)", POOLINGS)
    max_rnn_steps: int = _field(
        64, "longest sequence the recurrent branch reads: longer training curves are read "
        "as windows of averaged steps (0: every step)", minimum=0)
    conv_filters: int = _field(
        64, "filters of each block of a convolutional branch beside the recurrent one "
        "(LSTM-FCN; 0: no convolutional branch)", minimum=0)
    conv_layers: int = _field(
        3, f"convolutional blocks, with kernel sizes {list(CONV_KERNEL_SIZES)} in turn",
        minimum=1, maximum=len(CONV_KERNEL_SIZES))
    # Auto: on the simulated survey (irregular light curves with a time column) augmentation
    # raised macro-F1 from 0.855 to 0.894 (3 seeds), while it lowered the equally sampled
    # aeon sets', whose classes live in the whole outline of a series (README "Quality on
    # real data").
    augmentation: str = _field(
        "auto", "training only: each curve cut to a random window keeping a fraction of at "
        f"least {AUGMENTATION_MIN_KEPT:g} of its observations, its values scaled and jittered; "
        "auto = on for light curves with a time column (time_column >= 0: a window of an "
        "irregularly sampled curve is the same object seen for part of its life), off for "
        "equally sampled series", AUGMENTATIONS)
    conv_dilation: int = _field(
        2, "dilation growth of the convolutional blocks: block i looks at every "
        "conv_dilation**i-th step (1: adjacent steps)", minimum=1, maximum=8)
    curve_normalisation: bool = _field(
        True, "also give the model each curve standardised over its own observations, with "
        "its per-feature mean, log spread and log observation count (brightness-independent "
        "shapes)")
    summary_statistics: bool = _field(
        True, "also give the model each curve's order-free summary statistics (quantiles, "
        "skewness, trend, autocorrelation and more: what a tree ensemble on light-curve "
        "features would see)")
    # 500: on the real-data suite it raised macro-F1 by up to 0.17 (ArrowHead-imbalanced)
    # and the suite mean from 0.793 to 0.832, above MiniRocket's 0.802; on the survey's
    # irregular light curves it lowered macro-F1 from 0.894 to 0.873, hence none for data
    # with a time column (README "Quality on real data").
    random_kernels: int = _field(
        500, "about this many features of random convolutional kernels (MiniRocket's, masked, "
        "fitted on the training split) feed a second head whose probabilities are averaged "
        "with the main head's; equally sampled series only: the kernels are laid on the "
        "step grid, so light curves with a time column (time_column >= 0) get no second "
        "head (0: none for any data)",
        minimum=0, maximum=MAX_RANDOM_KERNEL_FEATURES)
    dropout: float = _field(0.2, "dropout after each recurrent and the hidden dense layer",
                            minimum=0.0, maximum=0.9)
    l2: float = _field(1e-4, "L2 regularisation on every kernel", minimum=0.0)
    dense_units: int = _field(64, "units of the hidden dense layer before the softmax", minimum=1)
    context_units: int = _field(
        0, "units of a small dense branch for the contextual features (0: hand them to the "
        "head as they are, scaled and encoded over context_bins)", minimum=0)
    # 32 bins of the class-balanced split, not 16 of the plain one as before 2026-12-08: on
    # the full survey (3 seeds) AGN recall at the GOTO operating point rose from 0.812 to
    # 0.860 and macro-F1 from 0.855 to 0.900 (README "Performance", docs/model.md).
    context_bins: int = _field(
        32, "each contextual feature reaches the head piecewise-linearly encoded over this "
        "many quantile bins of the class-balanced training split (Gorishniy et al. 2022), so "
        "that it can threshold it as a tree would: a sentinel such as a missing host or a "
        "redshift of 0 becomes a bin edge of its own, and a rare class's range gets bins of "
        "its own (0: the scaled features alone, as the original)",
        minimum=0, maximum=MAX_CONTEXT_BINS)

    # Loss and class imbalance.
    loss: str = _field(
        "logit_adjusted", "logit_adjusted = cross-entropy on logits shifted by the log class "
        "prior (Menon et al. 2021: learns class-balanced probabilities); focal loss; "
        "class-weighted (wce) or unweighted (ce) cross-entropy", LOSSES)
    prior_weight: float = _field(
        0.5, "logit_adjusted only: how much of the training class balance the output "
        "probabilities put back (1: as frequent as in training, best accuracy; 0: all "
        "classes equal, best balanced accuracy, over-predicts rare classes)",
        minimum=0.0, maximum=1.0)
    gamma: float = _field(2.0, "focal-loss focusing parameter", minimum=0.0, maximum=10.0)
    class_weighting: str = _field(
        "balanced", "per-class weights (focal alpha, wce weights): balanced = N / (K n_c); "
        "effective = effective number of samples (Cui et al. 2019)", CLASS_WEIGHTINGS)
    effective_beta: float = _field(0.999, "beta of effective-number weighting",
                                   minimum=0.0, maximum=0.999999)
    label_smoothing: float = _field(
        0.1, "share of each target spread evenly over the classes", minimum=0.0, maximum=0.5)
    calibration: str = _field(
        "temperature", "temperature = divide the logits by a temperature fitted on the "
        "validation split (saved with the model, applied by predict); none", CALIBRATIONS)

    # Optimisation.
    # On the simulated survey, batches of 256 at 3e-3 ran an epoch ~2.5x faster than the
    # earlier default of 64 at 1e-3 and ended at as good a test macro AUC (0.985 +- 0.006
    # against 0.981 +- 0.008 over three seeds; README "Performance"); make bench times
    # the defaults to a target AUC. A training set of a few hundred curves, though, then
    # gets two or three steps an epoch and stops early, badly (test accuracy 0.85 on the
    # original sample data, against 1.00 with batches of 32): hence the automatic size.
    learning_rate: float = _field(3e-3, "Adam learning rate", minimum=1e-7, maximum=1.0)
    batch_size: int = _field(
        0, f"examples per gradient step; 0 = automatic: the training set size / "
        f"{AUTO_BATCH_STEPS} rounded to a power of two, from {AUTO_BATCH_RANGE[0]} to "
        f"{AUTO_BATCH_RANGE[1]} (256 for the simulated survey)", minimum=0)
    lr_schedule: str = _field(
        "cosine", "cosine = linear warm-up over the first epochs, then cosine decay to zero at "
        "`epochs`; constant", LR_SCHEDULES)
    ema_momentum: float = _field(
        0.99, "momentum of an exponential moving average of the weights, used for validation "
        "and kept as the model (0: the raw weights)", minimum=0.0, maximum=0.9999)
    min_steps_per_epoch: int = _field(
        32, "small training sets are repeated within an epoch to give at least this many "
        "gradient steps, so that patience and the schedule count real training",
        minimum=1)
    epochs: int = _field(60, "maximum number of epochs", minimum=1)
    patience: int = _field(20, "epochs without improvement of `monitor` before stopping",
                           minimum=1)
    monitor: str = _field("val_macro_auc", "validation metric for early stopping and the "
                          "best epoch", MONITORS)
    seed: int = _field(42, "seed of every random generator (weights, shuffling, dropout)")

    # Speed.
    # Off by default: on the simulated survey, length buckets made epochs 1.2x faster
    # but every seed ended lower (test macro AUC 0.978 +- 0.002 against 0.985 +- 0.006,
    # three seeds each; README "Performance"), most likely because a batch of curves of
    # one length gives a gradient biased towards that length.
    bucket_by_length: bool = _field(
        False, "batch light curves of similar length together, each batch padded only to "
        "its longest curve: faster epochs, slightly lower final quality (false: every batch "
        "padded to the longest curve in the data, as the original)")
    precision: str = _field(
        "float32", "Keras dtype policy: mixed_float16 (GPU, with loss scaling) or "
        "mixed_bfloat16 compute in 16 bits and keep float32 weights and probabilities",
        PRECISIONS)

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            expected = _FIELD_TYPES[field.name]
            # bool is an int subclass; an int where a float is expected is fine.
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, field.name, float(value))
                value = float(value)
            is_bool_for_number = expected is not bool and isinstance(value, bool)
            if not isinstance(value, expected) or is_bool_for_number:
                raise ConfigError(f"{field.name}: expected {expected.__name__}, got {value!r}")
            meta = field.metadata
            if meta["choices"] and value not in meta["choices"]:
                raise ConfigError(f"{field.name}: {value!r} is not one of {list(meta['choices'])}")
            if meta["minimum"] is not None and value < meta["minimum"]:
                raise ConfigError(f"{field.name}: {value!r} is below the minimum {meta['minimum']}")
            if meta["maximum"] is not None and value > meta["maximum"]:
                raise ConfigError(f"{field.name}: {value!r} is above the maximum {meta['maximum']}")

    def augments(self) -> bool:
        """Whether training augments the curves (augmentation, with "auto" resolved)."""
        if self.augmentation == "auto":
            return self.time_column >= 0
        return self.augmentation == "on"

    def kernel_features(self) -> int:
        """Features of the random-kernel head, or 0 where it is not built.

        Kernels laid on the step grid mean nothing when the steps of an
        irregularly sampled light curve are days or months apart.
        """
        return self.random_kernels if self.time_column < 0 else 0

    def resolved_batch_size(self, n_train: int) -> int:
        """batch_size, or the automatic one for a training set of `n_train` examples."""
        if self.batch_size:
            return self.batch_size
        low, high = AUTO_BATCH_RANGE
        target = max(n_train / AUTO_BATCH_STEPS, 1.0)
        return int(min(high, max(low, 2 ** int(np.round(np.log2(target))))))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (JSON- and YAML-serialisable)."""
        return dataclasses.asdict(self)

    def replace(self, **overrides: Any) -> TrainConfig:
        """A copy with `overrides` applied; unknown names raise ConfigError."""
        check_known_keys(overrides, "overrides")
        return dataclasses.replace(self, **overrides)

    def save(self, path: str | Path) -> None:
        """Write the resolved config as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, base: TrainConfig | None = None) -> TrainConfig:
        """Read a config from a JSON or YAML file (unknown keys are an error).

        Fields the file does not set keep their value in `base` (default: the
        defaults).
        """
        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text())
        except OSError as error:
            raise ConfigError(f"{path}: cannot read config file ({error.strerror})") from error
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML/JSON ({error})") from error
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of config fields, got "
                              f"{type(values).__name__}")
        check_known_keys(values, str(path))
        if isinstance(values.get("augmentation"), bool):
            # Model folders and config files from before "auto" hold a boolean.
            values["augmentation"] = "on" if values["augmentation"] else "off"
        try:
            return dataclasses.replace(base, **values) if base else cls(**values)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from error


# The original project's model and training (Burhanudin et al. 2021): the recurrent
# branch alone, read at its last state, focal loss with balanced class weights, batches
# of 32 at a learning rate of 1e-4 for 50 epochs without early stopping. Its known
# faults (no scaling, no seeds, an inverted AUC) are not reproduced.
PRESETS = {
    "original": {
        "rnn_layers": 2, "rnn_units": 32, "pooling": "last", "max_rnn_steps": 0,
        "conv_filters": 0, "curve_normalisation": False, "summary_statistics": False,
        "random_kernels": 0, "context_bins": 0, "augmentation": "off",
        "loss": "focal", "gamma": 2.0,
        "class_weighting": "balanced", "label_smoothing": 0.0, "calibration": "none",
        "lr_schedule": "constant", "ema_momentum": 0.0, "min_steps_per_epoch": 1,
        "batch_size": 32, "learning_rate": 1e-4, "epochs": 50, "patience": 50,
    },
}

_FIELD_TYPES = {"bool": bool, "int": int, "float": float, "str": str}
_FIELD_TYPES = {f.name: _FIELD_TYPES[f.type] for f in dataclasses.fields(TrainConfig)}
DEFAULTS = TrainConfig()


def preset(name: str) -> TrainConfig:
    """The defaults with preset `name` applied (see PRESETS)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}")
    return DEFAULTS.replace(**PRESETS[name])


def field_names() -> list[str]:
    """Names of every config field, in declaration order."""
    return [field.name for field in dataclasses.fields(TrainConfig)]


def field_type(name: str) -> type:
    """Python type (bool, int, float or str) of config field `name`."""
    return _FIELD_TYPES[name]


def field_metadata(name: str) -> dict[str, Any]:
    """help, choices, minimum and maximum of config field `name`."""
    return dict(next(f for f in dataclasses.fields(TrainConfig) if f.name == name).metadata)


def check_known_keys(values: dict[str, Any], source: str) -> None:
    """Raise ConfigError naming `source` when `values` holds a key that is not a field."""
    unknown = sorted(set(values) - set(_FIELD_TYPES))
    if unknown:
        raise ConfigError(f"{source}: unknown config key(s) {unknown}; known keys: "
                          f"{field_names()}")
