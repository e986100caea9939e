"""Load a trained model folder and predict class probabilities in bulk.

The input arrays are memory-mapped and read a chunk at a time, so a survey
larger than memory is classified with bounded memory; within a chunk, curves
of similar length are batched together (rnn_classifier.batching).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from rnn_classifier.batching import BucketedPredictor
from rnn_classifier.config import PREDICT_BATCH_SIZE, TrainConfig
from rnn_classifier.data import (
    DataError,
    Scaler,
    data_path,
    load_array,
)
from rnn_classifier.model_folder import load_model_folder


@dataclasses.dataclass
class TrainedModel:
    """A model folder loaded back: the Keras model and everything to feed it."""

    model: object
    config: TrainConfig
    scaler: Scaler
    class_names: list[str]
    batch_size: int = PREDICT_BATCH_SIZE
    # Kept between calls: its compiled functions are reused for every chunk.
    _predictor: BucketedPredictor | None = dataclasses.field(default=None, repr=False)

    def predictor(self) -> BucketedPredictor:
        """The bucketed predictor of this model, scaling raw arrays batch by batch."""
        if self._predictor is None or self._predictor.batch_size != self.batch_size:
            self._predictor = BucketedPredictor(self.model, self.config.mask_value,
                                                self.scaler.transform, self.batch_size)
        return self._predictor

    def predict_proba(self, time_features: np.ndarray,
                      contextual_features: np.ndarray | None) -> np.ndarray:
        """(N, K) probabilities for raw (unscaled) arrays, computed chunk by chunk."""
        return self.predictor().predict(time_features, contextual_features)

    def iter_proba(self, time_features: np.ndarray, contextual_features: np.ndarray | None,
                   rows: int | None = None) -> Iterator[np.ndarray]:
        """Probabilities of successive chunks of `rows` examples (default 16 batches)."""
        if len(time_features) == 0:
            yield np.zeros((0, len(self.class_names)), dtype=np.float32)
        yield from self.predictor().iter_predict(time_features, contextual_features, rows)


def load_trained_model(model_dir: str | Path) -> TrainedModel:
    """Check the whole model folder, then load it (rnn_classifier.model_folder).

    Raises:
        DataError: one line naming the damaged file, what is wrong and what
            was expected.
    """
    folder = load_model_folder(model_dir)
    return TrainedModel(folder.model, folder.config, folder.scaler, folder.class_names)


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


def _csv_field(text: str) -> str:
    """`text` as one CSV field (quoted when it holds a comma, quote or newline)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([text])
    return buffer.getvalue()


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
    # One %-template per row: ~10x faster than csv.writer with a format per value.
    # Class names are CSV-quoted once (a name may hold a comma or a quote).
    row_format = "%d," + "%.6f," * len(trained.class_names) + "%s\n"
    class_names = np.asarray([_csv_field(name) for name in trained.class_names], dtype=object)

    def write_chunk(stream, proba: np.ndarray, first_row: int) -> None:
        rows = zip(range(first_row, first_row + len(proba)), *proba.T.tolist(),
                   class_names[proba.argmax(axis=1)], strict=True)
        stream.write("".join(row_format % row for row in rows))

    done = 0
    with temporary.open("w", newline="") as stream, ThreadPoolExecutor(max_workers=1) as writer:
        stream.write(",".join(["index", *[_csv_field(f"p_{name}") for name in
                                          trained.class_names], "predicted_class"]) + "\n")
        # Each chunk is written while the next one is classified.
        pending = None
        for proba in trained.iter_proba(time, context):
            if pending is not None:
                pending.result()
            pending = writer.submit(write_chunk, stream, proba, done)
            done += len(proba)
            if progress:
                progress(done, len(time))
        if pending is not None:
            pending.result()
    os.replace(temporary, output)
    return done
