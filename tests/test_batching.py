"""Length-bucketed input pipelines: what each batch holds, and predictions they leave unchanged."""

import importlib

import numpy as np
import pytest
import tensorflow as tf

from rnn_classifier.batching import BucketedPredictor, bucket_length, training_dataset
from rnn_classifier.config import DEFAULTS
from rnn_classifier.model import build_model, model_inputs

MASK = DEFAULTS.mask_value
STEPS = 30


def padded_curves(n: int, seed: int = 0, features: int = 2):
    """(time, context, one-hot labels, lengths); context column 0 holds the row index."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, STEPS + 1, n)
    time = rng.normal(size=(n, STEPS, features)).astype(np.float32)
    time[np.arange(STEPS)[None, :] >= lengths[:, None]] = MASK
    context = np.stack([np.arange(n), rng.normal(size=n)], axis=1).astype(np.float32)
    labels = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    return time, context, labels, lengths


def real_lengths(batch_time: np.ndarray) -> np.ndarray:
    return (batch_time != MASK).any(axis=-1).sum(axis=1)


def epoch_batches(dataset):
    return [(inputs["time_features"].numpy(), inputs["contextual_features"].numpy(),
             targets.numpy()) for inputs, targets in dataset]


@pytest.mark.parametrize("length, expected", [(1, 8), (8, 8), (9, 16), (29, 30), (0, 8)])
def test_bucket_length_rounds_up_to_the_width_within_the_maximum(length, expected):
    assert bucket_length(length, STEPS, 8) == expected


def test_training_batches_hold_one_bucket_padded_to_their_longest_curve():
    time, context, labels, lengths = padded_curves(500)
    dataset = training_dataset(time, context, labels, MASK, batch_size=32, shuffle_seed=1)
    batches = epoch_batches(dataset)
    assert len(batches) == int(dataset.cardinality())
    seen = []
    for batch_time, batch_context, batch_labels in batches:
        batch_lengths = real_lengths(batch_time)
        assert len(batch_time) <= 32
        assert batch_time.shape[1] == batch_lengths.max()  # padded only to its longest
        assert len(set((batch_lengths - 1) // 8)) == 1  # one length bucket per batch
        rows = batch_context[:, 0].astype(int)
        seen.extend(rows)
        # Each curve arrives whole, with its own context and label, padded with the mask.
        for row, curve, label in zip(rows, batch_time, batch_labels, strict=True):
            np.testing.assert_array_equal(curve[:lengths[row]], time[row, :lengths[row]])
            assert (curve[lengths[row]:] == MASK).all()
            np.testing.assert_array_equal(label, labels[row])
    assert sorted(seen) == list(range(500))  # every curve exactly once per epoch


def test_training_batches_are_reshuffled_each_epoch_and_reproducible():
    time, context, labels, _ = padded_curves(300)

    def order(dataset):
        return np.concatenate([batch[1][:, 0] for batch in epoch_batches(dataset)])

    dataset = training_dataset(time, context, labels, MASK, batch_size=16, shuffle_seed=3)
    first, second = order(dataset), order(dataset)
    assert not np.array_equal(first, second)
    again = training_dataset(time, context, labels, MASK, batch_size=16, shuffle_seed=3)
    np.testing.assert_array_equal(order(again), first)
    unshuffled = training_dataset(time, context, labels, MASK, batch_size=16, shuffle_seed=None)
    np.testing.assert_array_equal(order(unshuffled), order(unshuffled))


def test_time_only_training_dataset_has_no_context_input():
    time, _, labels, _ = padded_curves(50)
    inputs, _ = next(iter(training_dataset(time, None, labels, MASK, 8, shuffle_seed=0)))
    assert set(inputs) == {"time_features"}


# The defaults have the random-kernel head; with a time column they have none.
@pytest.mark.parametrize("overrides", [{}, {"time_column": 0}, {"rnn_type": "lstm"},
                                       {"bidirectional": True}])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_bucketed_prediction_equals_model_predict_in_input_order(overrides, jit_compile):
    time, context, _, _ = padded_curves(333, seed=2)
    time[5] = MASK  # a curve with no observation at all
    model = build_model(DEFAULTS.replace(**overrides), 2, 2, 3)
    expected = model.predict(model_inputs(time, context), verbose=0)
    predictor = BucketedPredictor(model, MASK, batch_size=64, jit_compile=jit_compile)
    # Chunks of 100 rows: several chunks, each with a partial last batch.
    actual = predictor.predict(time, context, chunk_rows=100)
    np.testing.assert_allclose(actual, expected, atol=2e-5)


def test_bucketed_prediction_scales_each_batch_with_the_transform():
    time, context, _, _ = padded_curves(120, seed=4)
    model = build_model(DEFAULTS, 2, 2, 3)

    def transform(batch_time, batch_context):
        real = (batch_time != MASK).any(axis=-1, keepdims=True)
        return np.where(real, batch_time * 3.0 + 1.0, MASK), batch_context * 0.5

    expected = model.predict(model_inputs(*transform(time, context)), verbose=0)
    actual = BucketedPredictor(model, MASK, transform, batch_size=32).predict(time, context)
    np.testing.assert_allclose(actual, expected, atol=2e-5)


def test_bucketed_prediction_reads_a_memory_map_a_chunk_at_a_time(tmp_path):
    time, context, _, _ = padded_curves(200, seed=5)
    np.save(tmp_path / "time.npy", time)
    mapped = np.load(tmp_path / "time.npy", mmap_mode="r")
    model = build_model(DEFAULTS, 2, 2, 3)
    predictor = BucketedPredictor(model, MASK, batch_size=16)
    chunks = list(predictor.iter_predict(mapped, context, chunk_rows=64))
    assert [len(chunk) for chunk in chunks] == [64, 64, 64, 8]
    np.testing.assert_allclose(np.concatenate(chunks), predictor.predict(time, context),
                               atol=1e-6)
    assert predictor.predict(time[:0], context[:0]).shape == (0, 3)


def test_xla_is_chosen_for_large_inputs_on_cpu_only():
    predictor = BucketedPredictor(build_model(DEFAULTS, 2, 2, 3), MASK)
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    assert predictor._use_xla(10**6) is (not on_gpu)
    assert predictor._use_xla(1000) is False
    assert BucketedPredictor(predictor.model, MASK, jit_compile=True)._use_xla(10) is True


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_default_recurrent_layers_meet_cudnn_conditions(rnn_type):
    """Keras's own checks: on a GPU these layers run the cuDNN kernel."""
    # The module, not the `rnn` function the package re-exports under the same name.
    tf_rnn = importlib.import_module("keras.src.backend.tensorflow.rnn")

    model = build_model(DEFAULTS.replace(rnn_type=rnn_type), 2, 2, 3)
    layers = [layer for layer in model.layers if type(layer).__name__ == rnn_type.upper()]
    assert len(layers) == DEFAULTS.rnn_layers
    for layer in layers:
        cell = layer.cell
        assert layer.use_cudnn == "auto" and not layer.unroll
        assert cell.recurrent_dropout == 0
        if rnn_type == "gru":
            assert tf_rnn._do_gru_arguments_support_cudnn(
                cell.activation, cell.recurrent_activation, layer.unroll, cell.use_bias,
                cell.reset_after)
        else:
            assert tf_rnn._do_lstm_arguments_support_cudnn(
                cell.activation, cell.recurrent_activation, layer.unroll, cell.use_bias)
    # The masks our padding gives are right-padded, as cuDNN requires.
    time, context, labels, _ = padded_curves(64)
    for inputs, _ in training_dataset(time, context, labels, MASK, 16, shuffle_seed=0):
        mask = model.get_layer("padding_mask")(inputs["time_features"])
        assert bool(tf_rnn._is_sequence_right_padded(mask))


def test_released_pages_of_a_memory_map_read_back_unchanged(tmp_path):
    from rnn_classifier.batching import release_pages

    time, _, _, _ = padded_curves(300, seed=6)
    np.save(tmp_path / "time.npy", time)
    mapped = np.load(tmp_path / "time.npy", mmap_mode="r")
    assert mapped[:200].sum() == pytest.approx(float(time[:200].sum()), rel=1e-6)
    release_pages(mapped, 0, 200)  # what iter_predict does after each chunk
    np.testing.assert_array_equal(mapped, time)
    release_pages(time, 0, 200)  # an in-memory array is left alone
    np.testing.assert_array_equal(mapped, time)
