"""Load a trained model folder and predict class probabilities in batches.

The input arrays are memory-mapped and read a chunk at a time, so a survey
larger than memory is classified with bounded memory.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from rnn_classifier.config import TrainConfig
from rnn_classifier.data import (
    DataError,
    Scaler,
    data_path,
    iter_chunks,
    load_array,
)
from rnn_classifier.train import CLASSES_FILE, CONFIG_FILE, MODEL_FILE, SCALER_FILE

PREDICT_BATCH = 1024


@dataclasses.dataclass
class TrainedModel:
    """A model folder loaded back: the Keras model and everything to feed it."""

    model: object
    config: TrainConfig
    scaler: Scaler
    class_names: list[str]

    def predict_proba(self, time_features: np.ndarray,
                      contextual_features: np.ndarray | None) -> np.ndarray:
        """(N, K) probabilities for raw (unscaled) arrays, computed chunk by chunk."""
        return np.concatenate(list(self.iter_proba(time_features, contextual_features)))

    def iter_proba(self, time_features: np.ndarray, contextual_features: np.ndarray | None,
                   rows: int = PREDICT_BATCH * 4) -> Iterator[np.ndarray]:
        """Probabilities of successive chunks of `rows` examples."""
        from rnn_classifier.model import model_inputs

        if len(time_features) == 0:
            yield np.zeros((0, len(self.class_names)), dtype=np.float32)
        for chunk in iter_chunks(len(time_features), rows):
            context = None if contextual_features is None else np.asarray(
                contextual_features[chunk])
            inputs = model_inputs(*self.scaler.transform(np.asarray(time_features[chunk]),
                                                         context))
            yield self.model.predict(inputs, batch_size=PREDICT_BATCH, verbose=0)


def load_trained_model(model_dir: str | Path) -> TrainedModel:
    """Load model.keras (safe mode), config.json, scaler.json and classes.txt."""
    import keras

    import rnn_classifier.losses  # noqa: F401 - registers the custom losses for loading

    model_dir = Path(model_dir)
    for name in (MODEL_FILE, CONFIG_FILE, SCALER_FILE, CLASSES_FILE):
        if not (model_dir / name).is_file():
            raise DataError(f"{model_dir / name}: missing; {model_dir} is not a complete "
                            "model folder (train writes it)")
    model = keras.models.load_model(model_dir / MODEL_FILE, safe_mode=True)
    class_names = [line for line in (model_dir / CLASSES_FILE).read_text().splitlines() if line]
    return TrainedModel(model, TrainConfig.load(model_dir / CONFIG_FILE),
                        Scaler.load(model_dir / SCALER_FILE), class_names)


def load_split_for_prediction(trained: TrainedModel, data_dir: str | Path, split: str
                              ) -> tuple[np.ndarray, np.ndarray | None]:
    """Memory-mapped time (and contextual) features of one split, checked against the model."""
    time_path = data_path(data_dir, split, "time_features")
    time = load_array(time_path, (3,), "time features (N, T, F)", mmap=True)
    expected = len(trained.scaler.time.center)
    if time.shape[2] != expected:
        raise DataError(f"{time_path}: has {time.shape[2]} features per step; the model was "
                        f"trained on {expected}")
    context = None
    if trained.config.mixed:
        context_path = data_path(data_dir, split, "contextual_features")
        context = load_array(context_path, (2,), "contextual features (N, M)", mmap=True)
        expected = len(trained.scaler.context.center)
        if context.shape[1] != expected or len(context) != len(time):
            raise DataError(f"{context_path}: has shape {context.shape}; expected "
                            f"({len(time)}, {expected}) to match {time_path.name} and the model")
    return time, context


def write_predictions(trained: TrainedModel, data_dir: str | Path, split: str,
                      output: str | Path, progress: Callable[[int, int], None] | None = None
                      ) -> int:
    """Write one CSV row per example: index, a probability column per class, predicted class.

    The CSV is written under a temporary name and renamed when complete.
    Returns the number of rows written.
    """
    time, context = load_split_for_prediction(trained, data_dir, split)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(output.name + ".partial")
    done = 0
    with temporary.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["index", *[f"p_{name}" for name in trained.class_names],
                         "predicted_class"])
        for proba in trained.iter_proba(time, context):
            predicted = proba.argmax(axis=1)
            for offset, (row, label) in enumerate(zip(proba, predicted, strict=True)):
                writer.writerow([done + offset, *(f"{value:.6f}" for value in row),
                                 trained.class_names[label]])
            done += len(proba)
            if progress:
                progress(done, len(time))
    os.replace(temporary, output)
    return done
