"""Input pipelines: light curves batched with others of similar length.

Survey light curves range from one observation to the padded maximum. A
batch padded to the longest curve in the dataset spends most of its
recurrent steps on padding; a batch of curves of similar length does not.
Both directions use that:

- training: `training_dataset` is a `tf.data` pipeline that shuffles every
  epoch, cuts each curve to its real length and batches it with curves from
  the same length bucket (`bucket_by_sequence_length`), each batch padded
  only to its own longest curve;
- inference: `BucketedPredictor` sorts a chunk of curves by length, cuts
  each batch to its bucket's length and runs the model in a compiled
  `tf.function`, with XLA on CPU when the input is large enough for the
  compilation to pay (measured in benchmarks/performance.py).

Padding is trailing (the data contract), so a curve cut to its real length
or padded further with the mask value gives the same prediction.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rnn_classifier.config import LENGTH_BUCKET_WIDTH, PREDICT_BATCH_SIZE, XLA_MIN_ROWS
from rnn_classifier.data import iter_chunks, observation_counts

# A transform from raw (time, contextual) arrays to the model's scaled arrays.
Transform = Callable[[np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray | None]]


def bucket_length(length: int, max_length: int, width: int = LENGTH_BUCKET_WIDTH) -> int:
    """`length` rounded up to a multiple of `width`, at most `max_length` (never 0)."""
    return int(min(max_length, max(width, -(-length // width) * width)))


def training_dataset(time_features: np.ndarray, contextual_features: np.ndarray | None,
                     targets: np.ndarray, mask_value: float, batch_size: int,
                     shuffle_seed: int | None, width: int = LENGTH_BUCKET_WIDTH):
    """A `tf.data.Dataset` of length-bucketed batches for `model.fit`.

    Args:
        time_features: (N, T, F) scaled, trailing padding at `mask_value`.
        contextual_features: (N, M) scaled, or None when the model has none.
        targets: (N, K) one-hot targets.
        mask_value: the padding value (also what batches are padded with).
        batch_size: curves per batch (the last batch of a bucket may be smaller).
        shuffle_seed: reshuffle every epoch from this seed; None keeps the
            order (validation).
        width: bucket width in steps: curves of 1..width observations share
            a bucket, then width+1..2*width, and so on.

    Returns:
        A dataset of ({"time_features": (B, T_batch, F)[, "contextual_features":
        (B, M)]}, (B, K)) batches, T_batch the longest curve in the batch.
    """
    import tensorflow as tf

    from rnn_classifier.model import model_inputs

    lengths = np.maximum(observation_counts(time_features, mask_value), 1).astype(np.int64)
    columns = (time_features, lengths, targets) if contextual_features is None else (
        time_features, lengths, targets, contextual_features)
    dataset = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(targets), seed=shuffle_seed, reshuffle_each_iteration=True)

    def cut_to_length(time, length, target, context=None):
        return model_inputs(time[:length], context), target

    dataset = dataset.map(cut_to_length, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    max_length = time_features.shape[1]
    boundaries = list(range(width + 1, max_length + 1, width))
    padding = model_inputs(np.float32(mask_value),
                           None if contextual_features is None else np.float32(0))
    dataset = dataset.bucket_by_sequence_length(
        lambda inputs, _: tf.shape(inputs["time_features"])[0],
        bucket_boundaries=boundaries, bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padding_values=(padding, np.float32(0)))
    # Bucket membership depends on length only, so the batch count is known; telling
    # tf.data lets Keras size its epochs (and not warn that the input "ran out").
    bucket_sizes = np.bincount(np.searchsorted(boundaries, lengths, side="right"))
    n_batches = int(np.sum(-(-bucket_sizes // batch_size)))
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(n_batches))
    return dataset.prefetch(tf.data.AUTOTUNE)


def release_pages(array, start: int, stop: int) -> None:
    """Drop rows start:stop of a read-only memory-mapped array from this process's memory.

    Pages of a file mapping that have been read stay in the process's
    resident set until the kernel needs them back; releasing each chunk once
    it is classified keeps the resident memory of a pass over a survey
    bounded by one chunk. A no-op for arrays that are not memory maps.
    """
    if not isinstance(array, np.memmap) or getattr(array, "_mmap", None) is None:
        return
    row_bytes = int(np.prod(array.shape[1:])) * array.dtype.itemsize
    # np.memmap maps the file from the allocation boundary at or below its offset.
    base = array.offset % mmap.ALLOCATIONGRANULARITY
    first = (base + start * row_bytes) // mmap.PAGESIZE * mmap.PAGESIZE
    last = base + stop * row_bytes
    if last > first:
        array._mmap.madvise(mmap.MADV_DONTNEED, first, last - first)


class BucketedPredictor:
    """Class probabilities from a Keras model, a batch of similar-length curves at a time.

    Each chunk of curves is sorted by length; each batch of `batch_size`
    curves is cut to its longest curve rounded up to a multiple of the bucket
    width (so only a few shapes are ever compiled), scaled by `transform`,
    and run through the model in a `tf.function`. The next batch is cut and
    scaled in a background thread while the current one runs. Results come
    back in the input order.

    With XLA (`jit_compile`), every batch is padded to exactly `batch_size`
    rows so that each bucket compiles once; XLA is used on CPU for inputs of
    at least XLA_MIN_ROWS curves, where its compilation (well under a second
    per bucket on 2 cores, each bucket once per process) is repaid. On GPU,
    Keras's cuDNN kernels are faster than XLA's loops, so it is off there.
    """

    def __init__(self, model, mask_value: float, transform: Transform | None = None,
                 batch_size: int = PREDICT_BATCH_SIZE, width: int = LENGTH_BUCKET_WIDTH,
                 jit_compile: bool | None = None):
        self.model = model
        self.mask_value = float(mask_value)
        self.transform = transform
        self.batch_size = int(batch_size)
        self.width = int(width)
        self.jit_compile = jit_compile
        self._functions: dict[bool, Callable] = {}

    def _function(self, jit: bool) -> Callable:
        if jit not in self._functions:
            import tensorflow as tf

            from rnn_classifier.layers import xla_sorting

            model = self.model

            def classify(inputs):
                if not jit:
                    return model(inputs, training=False)
                with xla_sorting():
                    return model(inputs, training=False)

            # Under XLA every bucket is traced at its exact shape (XLA compiles one program
            # per shape anyway), so that layers see static lengths (see xla_sorting).
            self._functions[jit] = tf.function(classify, jit_compile=jit,
                                               reduce_retracing=not jit)
        return self._functions[jit]

    def _use_xla(self, rows: int) -> bool:
        if self.jit_compile is not None:
            return self.jit_compile
        import tensorflow as tf

        return rows >= XLA_MIN_ROWS and not tf.config.list_physical_devices("GPU")

    def predict(self, time_features: np.ndarray, contextual_features: np.ndarray | None,
                chunk_rows: int | None = None) -> np.ndarray:
        """(N, K) probabilities, computed chunk by chunk (see `iter_predict`)."""
        chunks = list(self.iter_predict(time_features, contextual_features, chunk_rows))
        return np.concatenate(chunks) if chunks else np.zeros(
            (0, self.model.output_shape[-1]), dtype=np.float32)

    def iter_predict(self, time_features: np.ndarray, contextual_features: np.ndarray | None,
                     chunk_rows: int | None = None) -> Iterator[np.ndarray]:
        """Probabilities of successive chunks, in input order.

        Only one chunk of `chunk_rows` curves (default 16 batches) is read
        from `time_features` at a time, so a memory-mapped input larger
        than memory is classified with bounded memory.
        """
        total = len(time_features)
        use_xla = self._use_xla(total)
        with ThreadPoolExecutor(max_workers=1) as preparer:
            for rows in iter_chunks(total, int(chunk_rows or 16 * self.batch_size)):
                time_chunk = np.asarray(time_features[rows])
                context_chunk = None if contextual_features is None else np.asarray(
                    contextual_features[rows])
                yield self._predict_chunk(time_chunk, context_chunk, use_xla, preparer)
                for array in (time_features, contextual_features):
                    release_pages(array, rows.start, rows.stop)

    def _predict_chunk(self, time_chunk: np.ndarray, context_chunk: np.ndarray | None,
                       use_xla: bool, preparer: ThreadPoolExecutor) -> np.ndarray:
        lengths = observation_counts(time_chunk, self.mask_value)
        order = np.argsort(lengths, kind="stable")
        batches = [order[start:start + self.batch_size]
                   for start in range(0, len(order), self.batch_size)]
        function = self._function(use_xla)
        output = None
        pending = preparer.submit(self._prepare, time_chunk, context_chunk, lengths,
                                  batches[0], use_xla)
        for index, rows in enumerate(batches):
            inputs = pending.result()
            if index + 1 < len(batches):
                pending = preparer.submit(self._prepare, time_chunk, context_chunk, lengths,
                                          batches[index + 1], use_xla)
            proba = np.asarray(function(inputs))[:len(rows)]
            if output is None:
                output = np.empty((len(time_chunk), proba.shape[1]), dtype=np.float32)
            output[rows] = proba
        return output

    def _prepare(self, time_chunk: np.ndarray, context_chunk: np.ndarray | None,
                 lengths: np.ndarray, rows: np.ndarray, pad_rows: bool) -> dict:
        """One batch's model inputs: cut to its bucket length, scaled, optionally padded."""
        from rnn_classifier.model import model_inputs

        steps = bucket_length(int(lengths[rows].max()), time_chunk.shape[1], self.width)
        time = time_chunk[rows, :steps]
        context = None if context_chunk is None else context_chunk[rows]
        if self.transform is not None:
            time, context = self.transform(time, context)
        missing = self.batch_size - len(rows) if pad_rows else 0
        if missing > 0:
            # Whole-padding rows: the masked layers return zeros for them and
            # their outputs are dropped; they only keep the compiled shape.
            time = np.concatenate([time, np.full((missing, *time.shape[1:]), self.mask_value,
                                                 dtype=time.dtype)])
            if context is not None:
                context = np.concatenate([context, np.zeros((missing, context.shape[1]),
                                                            dtype=context.dtype)])
        return model_inputs(np.ascontiguousarray(time, dtype=np.float32),
                            None if context is None else np.ascontiguousarray(
                                context, dtype=np.float32))
