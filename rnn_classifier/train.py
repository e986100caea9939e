"""Training: scaling, class weights, early stopping, checkpoints and resume.

`train()` is the one training entry point: the CLI, each Kubeflow `train`
step and each Katib trial call it. Every epoch prints one line of
`name=value` pairs after an RFC 3339 timestamp, the format Katib's StdOut
metrics collector and its early stopping parse:

    2026-11-28T22:30:05Z epoch=3 loss=0.41 accuracy=0.93 val_loss=0.44 \
        val_accuracy=0.92 val_macro_f1=0.71 val_macro_auc=0.95  (one line)

A checkpoint is written after every epoch, so a killed run continues from
its last finished epoch with `resume=True`. Nothing but the checkpoint is
written before training finishes; the model folder's final files appear
only when the run has succeeded.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rnn_classifier.config import LR_WARMUP_EPOCHS, LR_WARMUP_START, TrainConfig
from rnn_classifier.data import Dataset, Scaler, Split, load_dataset

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
SCALER_FILE = "scaler.json"
CLASSES_FILE = "classes.txt"
HISTORY_FILE = "history.csv"
TRAINING_METRICS_FILE = "training_metrics.json"
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "val_macro_f1",
                "val_macro_auc")


class TrainError(RuntimeError):
    """A training run that cannot start (e.g. an output folder in the way)."""


@dataclasses.dataclass
class TrainResult:
    """What a finished run produced."""

    model_dir: Path
    best_epoch: int
    best_metrics: dict[str, float]
    epochs_run: int


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, K) float32 one-hot targets from integer labels."""
    return np.eye(n_classes, dtype=np.float32)[labels]


def macro_scores(labels: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Macro-F1 and macro one-vs-rest ROC-AUC (binary: AUC of the positive column).

    A class absent from `labels` is left out of the AUC average (its AUC is
    undefined); NaN is returned only when no class has a defined AUC.
    """
    from sklearn.metrics import f1_score, roc_auc_score

    n_classes = proba.shape[1]
    predicted = proba.argmax(axis=1)
    macro_f1 = f1_score(labels, predicted, labels=np.unique(labels), average="macro",
                        zero_division=0)
    aucs = [roc_auc_score(labels == c, proba[:, c]) for c in range(n_classes)
            if 0 < (labels == c).sum() < len(labels)]
    if n_classes == 2 and aucs:
        aucs = [roc_auc_score(labels == 1, proba[:, 1])]
    return {"macro_f1": float(macro_f1),
            "macro_auc": float(np.mean(aucs)) if aucs else float("nan")}


def format_metrics(values: dict[str, float]) -> str:
    """One `name=value` line as Katib's StdOut collector expects."""
    return " ".join(f"{name}={value:.6g}" if isinstance(value, float) else f"{name}={value}"
                    for name, value in values.items())


@dataclasses.dataclass
class OutputShift:
    """The prior shift of the output probabilities (rnn_classifier.calibration)."""

    log_prior: np.ndarray
    weight: float

    def apply(self, proba: np.ndarray) -> np.ndarray:
        """Probabilities with the shift applied (temperature 1)."""
        from rnn_classifier.calibration import shifted_logits, softmax

        if not self.weight:
            return proba
        return softmax(shifted_logits(proba, self.log_prior, self.weight)).astype(np.float32)


def auc_standard_error(auc: float, n_positive: int, n_negative: int) -> float:
    """Standard error of a ROC-AUC estimated from n_positive and n_negative examples.

    Hanley & McNeil (1982). An AUC from n positives cannot be trusted closer to 1
    than 1 / (2 n), so it is evaluated there at most (its formula gives 0 at 1).
    """
    auc = min(auc, 1.0 - 0.5 / max(min(n_positive, n_negative), 1))
    q1, q2 = auc / (2.0 - auc), 2.0 * auc**2 / (1.0 + auc)
    variance = (auc * (1.0 - auc) + (n_positive - 1) * (q1 - auc**2)
                + (n_negative - 1) * (q2 - auc**2)) / (n_positive * n_negative)
    return float(np.sqrt(max(variance, 0.0)))


def selection_tolerance(monitor: str, value: float, labels: np.ndarray) -> float:
    """How much worse than the top value an epoch may score and still be kept.

    One standard error of the validation macro ROC-AUC (the mean of the
    classes' AUCs, each with the Hanley-McNeil error at the macro value);
    0 for the other monitors, which are compared exactly.
    """
    if monitor != "val_macro_auc":
        return 0.0
    counts = np.bincount(labels)
    present = [int(count) for count in counts if 0 < count < len(labels)]
    if len(counts) == 2:
        present = present[1:]  # binary: the AUC of the positive column
    errors = [auc_standard_error(value, count, len(labels) - count) for count in present]
    return float(np.sqrt(np.sum(np.square(errors))) / len(errors)) if errors else 0.0


def warmup_epochs(config: TrainConfig) -> int:
    """Epochs of the learning-rate warm-up (0 for a constant rate)."""
    return 0 if config.lr_schedule == "constant" else min(LR_WARMUP_EPOCHS, config.epochs // 2)


def effective_monitor(config: TrainConfig, validation_labels: np.ndarray) -> str:
    """config.monitor, or val_loss where the validation split makes the AUC undefined.

    A validation split of a rare-class dataset may hold a single class; its
    ROC-AUC is then undefined on every epoch, while the loss still ranks them.
    """
    if config.monitor == "val_macro_auc" and len(np.unique(validation_labels)) < 2:
        return "val_loss"
    return config.monitor


def _ema_swapper(model):
    """A SwapEMAWeights bound to `model`, or None when its optimiser keeps no average.

    Its swap exchanges the model's weights with their moving averages in place
    (no new variables), so validating on the averaged weights and swapping back
    leaves training untouched.
    """
    import keras

    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    if not getattr(optimizer, "use_ema", False):
        return None
    swapper = keras.callbacks.SwapEMAWeights()
    swapper.set_model(model)
    return swapper


class _EpochRecorder:
    """Keras callback: validation macro scores, early stopping, checkpoint, the log line.

    One callback rather than four, because their order matters (the stopping
    decision needs the macro scores; the checkpoint needs the stopping state)
    and their state must be saved and restored together for an exact resume.
    """

    def __init__(self, config: TrainConfig, validation_inputs: dict, validation_labels,
                 checkpoint_dir: Path, state: dict, log: Callable[[str], None],
                 output_shift: OutputShift):
        import keras

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(callback, epoch, logs=None):  # noqa: N805 - closure over self
                self.on_epoch_begin()

            def on_epoch_end(callback, epoch, logs=None):  # noqa: N805 - closure over self
                self.on_epoch_end(callback.model, epoch, logs or {})

        self.callback = Callback()
        self.config = config
        self.validation_inputs = validation_inputs
        self.validation_labels = validation_labels
        self.checkpoint_dir = checkpoint_dir
        self.state = state
        self.log = log
        self.output_shift = output_shift
        self.predictor = None
        self.epoch_started = time.monotonic()
        self.monitor = effective_monitor(config, validation_labels)
        self.warmup_epochs = warmup_epochs(config)
        if self.monitor != config.monitor:
            log(f"the validation split holds a single class, so {config.monitor} is undefined: "
                f"early stopping and the best epoch follow {self.monitor} instead")

    def on_epoch_begin(self) -> None:
        self.epoch_started = time.monotonic()

    def improved(self, value: float, val_loss: float) -> bool:
        """Better than the top monitor value so far; on a tie, lower validation loss."""
        top = self.state["top_value"]
        if not np.isfinite(value):
            return False
        if top is None or self.state["top_epoch"] <= self.warmup_epochs:
            # Weights still warming up (the moving average barely trained) set no standard.
            return True
        if value == top:
            return np.isfinite(val_loss) and val_loss < self.state["top_loss"]
        return value < top if self.monitor == "val_loss" else value > top

    def as_good(self, value: float) -> bool:
        """Within one standard error of the top monitor value (see selection_tolerance)."""
        top = self.state["top_value"]
        if not np.isfinite(value) or top is None:
            return False
        tolerance = selection_tolerance(self.monitor, top, self.validation_labels)
        return value >= top - tolerance if self.monitor != "val_loss" else value <= top

    def predict(self, model) -> np.ndarray:
        """The model's own (unshifted) probabilities on the validation split."""
        from rnn_classifier.batching import BucketedPredictor
        from rnn_classifier.model import CONTEXT_INPUT, TIME_INPUT

        if self.predictor is None or self.predictor.model is not model:
            self.predictor = BucketedPredictor(model, self.config.mask_value)
        return self.predictor.predict(self.validation_inputs[TIME_INPUT],
                                      self.validation_inputs.get(CONTEXT_INPUT))

    def on_epoch_end(self, model, epoch: int, logs: dict) -> None:
        # Validation, and the best weights kept, use the weights' moving average.
        swapper = _ema_swapper(model)
        if swapper:
            swapper._swap_variables()
        proba = self.predict(model)
        # One validation pass gives every validation figure. Keras's own (fit's
        # validation_data) would predict the split a second time: its loss is the
        # mean per-example loss plus the regularisation terms, as here.
        targets = one_hot(self.validation_labels, proba.shape[1])
        logs["val_loss"] = float(model.loss(targets, proba)) + float(
            sum(np.asarray(term) for term in model.losses))
        # Accuracy and the macro scores judge the probabilities the model folder outputs.
        proba = self.output_shift.apply(proba)
        logs["val_accuracy"] = float(np.mean(proba.argmax(axis=1) == self.validation_labels))
        scores = macro_scores(self.validation_labels, proba)
        logs["val_macro_f1"] = scores["macro_f1"]
        logs["val_macro_auc"] = scores["macro_auc"]
        improved = self._record(model, epoch, logs)
        if swapper:
            swapper._swap_variables()
        self._save_checkpoint(model, epoch + 1, improved)
        # Katib's early stopping orders observations by the timestamp leading the line.
        self.log(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
                 f"{format_metrics(self.state['history'][-1])}")

    def _record(self, model, epoch: int, logs: dict) -> bool:
        """Append the epoch's row, update the stopping state; True when it is the best."""
        previous = self.state["history"][-1]["elapsed_seconds"] if self.state["history"] else 0.0
        row = {"epoch": epoch + 1, **{key: float(logs.get(key, float("nan")))
                                      for key in HISTORY_KEYS},
               # Training time only: a resumed run does not count the time it was stopped.
               "elapsed_seconds": round(previous + time.monotonic() - self.epoch_started, 3)}
        self.state["history"].append(row)
        value = row[self.monitor]
        warming_up = epoch + 1 <= self.warmup_epochs
        improved = self.improved(value, row["val_loss"])
        if improved:
            self.state.update(top_value=value, top_loss=row["val_loss"], top_epoch=epoch + 1,
                              wait=0)
        elif not warming_up:
            self.state["wait"] += 1
        # The kept epoch is the latest one as good as the top (the one-standard-error
        # rule): on a small validation split, ranking epochs by a few curves is noise,
        # and the later epoch has trained longer at a lower learning rate.
        chosen = improved or self.as_good(value)
        if chosen:
            self.state["best_epoch"] = epoch + 1
            model.save_weights(self.checkpoint_dir / f"best-{epoch + 1}.weights.h5")
        if self.state["wait"] >= self.config.patience:
            model.stop_training = True
            self.state["stopped_early"] = True
        self.state["epoch"] = epoch + 1
        return chosen

    def _save_checkpoint(self, model, epoch: int, improved: bool) -> None:
        # Each epoch's files get new names and state.json, replaced atomically,
        # names the current ones: a kill at any instant leaves a consistent
        # checkpoint (the previous one, or this one).
        model_file = f"last-{epoch}.keras"
        model.save(self.checkpoint_dir / model_file)
        self.state["model_file"] = model_file
        if improved:
            self.state["best_weights_file"] = f"best-{epoch}.weights.h5"
        temporary = self.checkpoint_dir / (STATE_FILE + ".tmp")
        temporary.write_text(json.dumps(self.state, indent=1))
        os.replace(temporary, self.checkpoint_dir / STATE_FILE)
        keep = {self.state["model_file"], self.state.get("best_weights_file"), STATE_FILE}
        for path in self.checkpoint_dir.iterdir():
            if path.name not in keep:
                path.unlink()


def _prepare_output(output_dir: Path, config: TrainConfig, resume: bool,
                    overwrite: bool) -> dict | None:
    """Check the output folder; return the checkpoint state to resume from, if any."""
    checkpoint = output_dir / CHECKPOINT_DIR / STATE_FILE
    if (output_dir / MODEL_FILE).exists() and not overwrite:
        raise TrainError(f"{output_dir}: already holds a trained model; choose another "
                         "--output-dir or pass --overwrite")
    if checkpoint.exists() and not overwrite:
        if not resume:
            raise TrainError(f"{output_dir}: holds an unfinished run; pass --resume to "
                             "continue it or --overwrite to start again")
        state = json.loads(checkpoint.read_text())
        if state["config"] != config.to_dict():
            changed = sorted(key for key, value in config.to_dict().items()
                             if state["config"].get(key) != value)
            raise TrainError(f"{checkpoint}: was written with a different config (differs in "
                             f"{changed}); resume with the same settings or --overwrite")
        return state
    return None


def prepare_arrays(split: Split, scaler: Scaler) -> dict:
    """Scaled model inputs of one split."""
    from rnn_classifier.model import model_inputs

    return model_inputs(*scaler.transform(split.time_features, split.contextual_features))


def epoch_repeats(config: TrainConfig, n_train: int, batch_size: int) -> int:
    """How many passes over the training split make one epoch (min_steps_per_epoch)."""
    steps_per_pass = -(-n_train // batch_size)
    return max(1, -(-config.min_steps_per_epoch // steps_per_pass))


def _learning_rate(config: TrainConfig, steps_per_epoch: int):
    """The learning rate, or its schedule over the whole run (in gradient steps)."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    import keras

    total = config.epochs * steps_per_epoch
    warmup = warmup_epochs(config) * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate * LR_WARMUP_START, decay_steps=total - warmup,
        warmup_target=config.learning_rate, warmup_steps=warmup)


def _new_model(config: TrainConfig, dataset: Dataset, loss, steps_per_epoch: int,
               context_edges: list[list[float]] | None, kernel_config: dict | None = None):
    """The model of `config`, compiled with its optimiser and `loss`."""
    import keras

    from rnn_classifier.model import build_model

    train_split = dataset["train"]
    model = build_model(config, train_split.time_features.shape[2],
                        0 if train_split.contextual_features is None
                        else train_split.contextual_features.shape[1],
                        dataset.n_classes, max_steps=train_split.time_features.shape[1],
                        context_edges=context_edges, kernel_config=kernel_config)
    optimizer = keras.optimizers.Adam(_learning_rate(config, steps_per_epoch),
                                      use_ema=config.ema_momentum > 0,
                                      ema_momentum=config.ema_momentum or 0.99)
    if config.precision == "mixed_float16":
        # float16 gradients underflow without loss scaling (bfloat16 has float32's range).
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    # No jit_compile: on CPU, XLA made each epoch slower and cost ~45 s of compilation
    # for the length buckets (benchmarks/performance.py); inference uses it instead.
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=False)
    return model


def train(config: TrainConfig, data_dir: str | Path, output_dir: str | Path,
          resume: bool = False, overwrite: bool = False,
          log: Callable[[str], None] | None = None) -> TrainResult:
    """Train one model and write its folder.

    Args:
        config: every hyperparameter.
        data_dir: folder holding the data contract files.
        output_dir: model folder to write: model.keras, config.json,
            scaler.json, classes.txt, history.csv, training_metrics.json.
        resume: continue an interrupted run from its last checkpoint.
        overwrite: replace an existing model or checkpoint in output_dir.
        log: where progress lines go (default: stdout, flushed per line).

    Returns:
        TrainResult with the best epoch's validation figures.

    Raises:
        DataError: the data is invalid (nothing is written).
        TrainError: output_dir is in the way (nothing is written).
    """
    log = log or (lambda line: print(line, flush=True))
    output_dir = Path(output_dir)
    state = _prepare_output(output_dir, config, resume, overwrite)
    dataset = load_dataset(data_dir, mixed=config.mixed, mask_value=config.mask_value)
    scaler = Scaler.fit(dataset["train"], config.scaling, config.mask_value,
                        config.time_column)

    import keras

    from rnn_classifier.layers import quantile_bin_edges
    from rnn_classifier.losses import class_weights, log_prior, make_loss
    from rnn_classifier.model import CONTEXT_INPUT, TIME_INPUT
    from rnn_classifier.random_kernels import fit_random_kernels

    train_split, validation_split = dataset["train"], dataset["validation"]
    train_inputs = prepare_arrays(train_split, scaler)
    validation_inputs = prepare_arrays(validation_split, scaler)
    weights = class_weights(train_split.labels, dataset.n_classes, config.class_weighting,
                            config.effective_beta)
    prior = log_prior(train_split.labels, dataset.n_classes)
    n_train = len(train_split)
    batch_size = config.resolved_batch_size(n_train)
    repeats = epoch_repeats(config, n_train, batch_size)

    checkpoint_dir = output_dir / CHECKPOINT_DIR
    if overwrite and output_dir.exists():
        shutil.rmtree(output_dir)
    # Offset by the epoch so a resumed run does not replay epoch 1's shuffles.
    keras.utils.set_random_seed(config.seed + (state["epoch"] if state else 0))
    if state is None:
        loss = make_loss(config.loss, weights, config.gamma, prior, config.label_smoothing)
        context = train_inputs.get(CONTEXT_INPUT)
        context_edges = (quantile_bin_edges(context, config.context_bins, train_split.labels)
                         if context is not None and config.context_bins > 0 else None)
        kernel_config = (fit_random_kernels(train_inputs[TIME_INPUT], config.mask_value,
                                            config.kernel_features(), config.seed)
                         if config.kernel_features() > 0 else None)
        model = _new_model(config, dataset, loss, repeats * -(-n_train // batch_size),
                           context_edges, kernel_config)
        state = {"config": config.to_dict(), "epoch": 0, "top_value": None, "top_loss": None,
                 "top_epoch": 0, "best_epoch": 0, "wait": 0, "stopped_early": False,
                 "history": []}
    else:
        model = keras.models.load_model(checkpoint_dir / state["model_file"])
        log(f"resuming from epoch {state['epoch']} (best {config.monitor}="
            f"{state['top_value']} at epoch {state['top_epoch']})")
    checkpoint_dir.mkdir(parents=True, exist_ok=True)

    balance = (f"log prior {np.round(prior, 2).tolist()}" if config.loss == "logit_adjusted"
               else f"weights {np.round(weights, 3).tolist()}")
    log(f"training {config.rnn_type}/{config.loss} on {n_train} examples in batches of "
        f"{batch_size}{f' ({repeats} passes an epoch)' if repeats > 1 else ''}, validating on "
        f"{len(validation_split)}; classes {dataset.class_names} with {balance}")
    if config.random_kernels and not config.kernel_features():
        log("no random-kernel head: the time column makes these irregularly sampled light "
            "curves, and kernels laid on their steps would mix hours and seasons")
    output_shift = OutputShift(prior, config.prior_weight if config.loss == "logit_adjusted"
                               else 0.0)
    recorder = _EpochRecorder(config, validation_inputs, validation_split.labels,
                              checkpoint_dir, state, log, output_shift)
    if state["epoch"] < config.epochs and not state["stopped_early"]:
        fit_data = _fit_data(config, train_inputs, one_hot(train_split.labels, dataset.n_classes),
                             batch_size, repeats, state["epoch"])
        # Validation figures come from the recorder's one pass over the split.
        model.fit(**fit_data, epochs=config.epochs, initial_epoch=state["epoch"], verbose=0,
                  callbacks=[recorder.callback])
    if state["best_epoch"] == 0:
        raise TrainError(f"no epoch produced a finite {recorder.monitor}; the run diverged "
                         "(try a lower learning rate)")
    model.load_weights(checkpoint_dir / state["best_weights_file"])
    best = next(row for row in state["history"] if row["epoch"] == state["best_epoch"])
    state["batch_size"] = batch_size
    model, state["calibration"] = _calibrated(model, config, output_shift, recorder)
    _write_model_folder(output_dir, model, config, scaler, dataset, state, best)
    shutil.rmtree(checkpoint_dir)
    log(f"best epoch {state['best_epoch']}: " + format_metrics(
        {key: value for key, value in best.items() if key != "epoch"}))
    return TrainResult(output_dir, state["best_epoch"], best, state["epoch"])


def _fit_data(config: TrainConfig, train_inputs: dict, train_targets: np.ndarray,
              batch_size: int, repeats: int, epoch: int) -> dict:
    """model.fit's data arguments: arrays (repeated `repeats` times) or length buckets."""
    from rnn_classifier.model import CONTEXT_INPUT, TIME_INPUT

    if repeats > 1:
        train_inputs = {name: np.concatenate([array] * repeats)
                        for name, array in train_inputs.items()}
        train_targets = np.concatenate([train_targets] * repeats)
    if config.bucket_by_length:
        from rnn_classifier.batching import training_dataset

        return {"x": training_dataset(
            train_inputs[TIME_INPUT], train_inputs.get(CONTEXT_INPUT), train_targets,
            config.mask_value, batch_size, shuffle_seed=config.seed + epoch),
            # The dataset reshuffles itself every epoch.
            "shuffle": False}
    return {"x": train_inputs, "y": train_targets, "batch_size": batch_size, "shuffle": True}


def _calibrated(model, config: TrainConfig, output_shift: OutputShift,
                recorder: _EpochRecorder) -> tuple[object, dict | None]:
    """The model with its output prior shift and fitted temperature, and what was fitted.

    The original configuration (no shift, no calibration) keeps its softmax
    as the output, exactly as it was trained.
    """
    from rnn_classifier.calibration import fit_temperature, shifted_logits, softmax
    from rnn_classifier.evaluate import expected_calibration_error
    from rnn_classifier.model import with_prior_shift

    if config.calibration == "none" and not output_shift.weight:
        return model, None
    labels = recorder.validation_labels
    logits = shifted_logits(recorder.predict(model), output_shift.log_prior, output_shift.weight)
    temperature = (fit_temperature(logits, labels) if config.calibration == "temperature"
                   else 1.0)
    summary = {"prior_weight": output_shift.weight, "temperature": temperature,
               "validation_ece_before": expected_calibration_error(labels, softmax(logits)),
               "validation_ece_after": expected_calibration_error(
                   labels, softmax(logits / temperature))}
    recorder.log("calibration: " + format_metrics(summary))
    return with_prior_shift(model, output_shift.log_prior, output_shift.weight,
                            temperature), summary


def _write_model_folder(output_dir: Path, model, config: TrainConfig, scaler: Scaler,
                        dataset: Dataset, state: dict, best: dict) -> None:
    """Write every file `predict` needs, each appearing whole (write, then rename)."""
    staging = output_dir / ".staging"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    model.save(staging / MODEL_FILE)
    config.save(staging / CONFIG_FILE)
    scaler.save(staging / SCALER_FILE)
    (staging / CLASSES_FILE).write_text("\n".join(dataset.class_names) + "\n")
    with (staging / HISTORY_FILE).open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=["epoch", *HISTORY_KEYS, "elapsed_seconds"])
        writer.writeheader()
        writer.writerows(state["history"])
    (staging / TRAINING_METRICS_FILE).write_text(json.dumps({
        "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
        "stopped_early": state["stopped_early"],
        "monitor": effective_monitor(config, dataset["validation"].labels),
        "training_seconds": state["history"][-1]["elapsed_seconds"],
        "batch_size": state["batch_size"],
        "validation": {key: best[key] for key in HISTORY_KEYS},
        # The output's prior shift and fitted temperature (null: the plain softmax).
        "calibration": state["calibration"],
    }, indent=2) + "\n")
    # model.keras goes last: its presence marks a complete model folder.
    names = sorted(path.name for path in staging.iterdir())
    names.remove(MODEL_FILE)
    for name in [*names, MODEL_FILE]:
        os.replace(staging / name, output_dir / name)
    staging.rmdir()

