"""Training through the real CLI: Katib's metric lines, the model folder, kill and resume."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rnn_classifier.cli import main
from rnn_classifier.data import load_dataset
from rnn_classifier.layers import quantile_bin_edges
from rnn_classifier.predict import load_trained_model
from rnn_classifier.random_kernels import fit_random_kernels
from rnn_classifier.train import auc_standard_error, macro_scores, selection_tolerance

SAMPLE_DATA = Path(__file__).parent / "fixtures" / "sample_data"
# Katib's StdOut metrics collector regex, verbatim.
KATIB_REGEX = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")
EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "val_macro_f1",
                 "val_macro_auc")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")
QUICK = ["--rnn-units", "8", "--dense-units", "8", "--batch-size", "128"]


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "rnn_classifier.cli", *args]


def parse_katib(stdout: str) -> list[dict[str, float]]:
    """Per-epoch metrics as Katib's collector would read them from stdout."""
    epochs = []
    for line in stdout.splitlines():
        pairs = {name: value for name, value, *_ in KATIB_REGEX.findall(line) if value}
        if "epoch" in pairs:
            assert TIMESTAMP.match(line), f"epoch line without a leading timestamp: {line}"
            epochs.append({name: float(value) for name, value in pairs.items()})
    return epochs


def test_stdout_carries_katib_metrics_every_epoch_and_model_folder_is_complete(tmp_path):
    out = tmp_path / "model"
    result = subprocess.run(
        cli_command("train", "--data-dir", str(SAMPLE_DATA), "--output-dir", str(out),
                    "--epochs", "3", "--patience", "3", *QUICK),
        capture_output=True, text=True, timeout=300, check=True)
    epochs = parse_katib(result.stdout)
    assert [int(epoch["epoch"]) for epoch in epochs] == [1, 2, 3]
    for epoch in epochs:
        assert set(EPOCH_METRICS) <= set(epoch)
        assert 0.0 <= epoch["val_macro_auc"] <= 1.0 and epoch["loss"] > 0
    assert sorted(path.name for path in out.iterdir()) == [
        "classes.txt", "config.json", "history.csv", "model.keras", "scaler.json",
        "training_metrics.json"]
    # A fresh process that never built a model (as the evaluate step and `predict` are)
    # must accept every layer of the defaults' model, the random-kernel head's included.
    predictions = tmp_path / "predictions.csv"
    subprocess.run(cli_command("predict", "--model-dir", str(out), "--data-dir",
                               str(SAMPLE_DATA), "--split", "test", "--output", str(predictions)),
                   capture_output=True, text=True, timeout=300, check=True)
    n_test = len(np.load(SAMPLE_DATA / "test_labels.npy"))
    assert len(predictions.read_text().splitlines()) == n_test + 1  # a header and one row each
    config = json.loads((out / "config.json").read_text())
    assert config["rnn_units"] == 8 and config["epochs"] == 3
    with (out / "history.csv").open() as stream:
        history = list(csv.DictReader(stream))
    assert [float(row["val_macro_auc"]) for row in history] == pytest.approx(
        [epoch["val_macro_auc"] for epoch in epochs], rel=1e-5)
    best = json.loads((out / "training_metrics.json").read_text())
    # The kept epoch is the latest one within one standard error of the top AUC.
    aucs = [epoch["val_macro_auc"] for epoch in epochs]
    validation_labels = load_dataset(SAMPLE_DATA, splits=("validation",))["validation"].labels
    tolerance = selection_tolerance("val_macro_auc", max(aucs), validation_labels)
    assert 0 < tolerance < 0.05
    kept = max(number for number, auc in enumerate(aucs, 1) if auc >= max(aucs) - tolerance)
    assert best["best_epoch"] == kept
    assert best["validation"]["val_macro_auc"] == pytest.approx(aucs[kept - 1], rel=1e-5)
    # Training time accumulates epoch by epoch (what time-to-accuracy is read from).
    elapsed = [float(row["elapsed_seconds"]) for row in history]
    assert 0 < elapsed[0] < elapsed[1] < elapsed[2]
    assert best["training_seconds"] == elapsed[-1]


def test_contextual_bins_are_the_class_balanced_training_split_quantiles(tmp_path):
    out = tmp_path / "model"
    main(["train", "--data-dir", str(SAMPLE_DATA), "--output-dir", str(out), "--epochs", "1",
          "--context-bins", "8", *QUICK])
    trained = load_trained_model(out)
    train_split = load_dataset(SAMPLE_DATA, splits=("train",))["train"]
    _, scaled_context = trained.scaler.transform(train_split.time_features,
                                                 train_split.contextual_features)
    layer = trained.model.get_layer("context_encoding")
    # Quantiles of the class-balanced training split.
    expected = quantile_bin_edges(scaled_context, 8, train_split.labels)
    assert len(layer.edges) == train_split.contextual_features.shape[1] == len(expected)
    for column, expected_column in zip(layer.edges, expected, strict=True):
        assert column == pytest.approx(expected_column, rel=1e-6)


def test_random_kernel_head_is_fitted_on_the_scaled_training_split(tmp_path):
    out = tmp_path / "model"
    main(["train", "--data-dir", str(SAMPLE_DATA), "--output-dir", str(out), "--epochs", "1",
          "--random-kernels", "300", "--seed", "5", *QUICK])
    trained = load_trained_model(out)  # safe mode: the fitted layer reloads from its config
    train_split = load_dataset(SAMPLE_DATA, splits=("train",))["train"]
    scaled, _ = trained.scaler.transform(train_split.time_features, None)
    expected = fit_random_kernels(scaled, trained.config.mask_value, 300, 5)
    layer = trained.model.get_layer("random_kernel_features")
    assert layer.dilations == expected["dilations"]
    for fitted, wanted in zip(layer.biases, expected["biases"], strict=True):
        np.testing.assert_allclose(fitted, wanted, rtol=1e-5, atol=1e-5)
    # The saved model averages the two heads' probabilities.
    assert {"main_probabilities", "kernel_probabilities"} <= {
        layer.name for layer in trained.model.layers}
    proba = trained.predict_proba(train_split.time_features, train_split.contextual_features)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_killed_run_resumes_from_last_finished_epoch(tmp_path):
    out = tmp_path / "model"
    args = ["train", "--data-dir", str(SAMPLE_DATA), "--output-dir", str(out),
            "--epochs", "8", "--patience", "8", *QUICK]
    process = subprocess.Popen(cli_command(*args), stdout=subprocess.PIPE, text=True)
    seen = []
    deadline = time.monotonic() + 240
    for line in process.stdout:
        seen.append(line)
        if " epoch=3 " in line:
            break
        assert time.monotonic() < deadline, "training did not reach epoch 3"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert not (out / "model.keras").exists(), "a killed run must not look finished"
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["epoch"] >= 3

    refused = subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = subprocess.run(cli_command(*args, "--resume"), capture_output=True, text=True,
                             timeout=300, check=True)
    assert f"resuming from epoch {state['epoch']}" in resumed.stdout
    epochs = [int(epoch["epoch"]) for epoch in parse_katib(resumed.stdout)]
    assert epochs == list(range(state["epoch"] + 1, 9))
    with (out / "history.csv").open() as stream:
        assert [int(row["epoch"]) for row in csv.DictReader(stream)] == list(range(1, 9))
    assert not (out / "checkpoint").exists()


def test_finished_model_is_not_overwritten_without_flag(tmp_path, capsys):
    out = tmp_path / "model"
    args = ["train", "--data-dir", str(SAMPLE_DATA), "--output-dir", str(out),
            "--epochs", "1", *QUICK]
    assert main(args) == 0
    before = (out / "model.keras").read_bytes()
    assert main(args) == 2
    assert "already holds a trained model" in capsys.readouterr().err
    assert (out / "model.keras").read_bytes() == before
    assert main([*args, "--overwrite"]) == 0


def test_same_seed_same_history(tmp_path):
    histories = []
    for run in ("a", "b"):
        main(["train", "--data-dir", str(SAMPLE_DATA), "--output-dir", str(tmp_path / run),
              "--epochs", "2", "--seed", "7", *QUICK])
        with (tmp_path / run / "history.csv").open() as stream:
            # Everything but the wall-clock column is reproduced exactly.
            histories.append([{key: value for key, value in row.items()
                               if key != "elapsed_seconds"} for row in csv.DictReader(stream)])
    assert len(histories[0]) == 2
    assert histories[0] == histories[1]


def test_auc_standard_error_by_hand_and_near_one():
    # Hanley & McNeil (1982), table values: AUC 0.9 from 50 positives and 50 negatives.
    auc = 0.9
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    expected = np.sqrt((auc * (1 - auc) + 49 * (q1 - auc**2) + 49 * (q2 - auc**2)) / 2500)
    assert auc_standard_error(0.9, 50, 50) == pytest.approx(expected)
    assert 0.02 < expected < 0.04
    # A perfect AUC from 2 positives is far from certain; from 500 it nearly is.
    assert auc_standard_error(1.0, 2, 3) > 0.1
    assert auc_standard_error(1.0, 500, 500) < 0.002
    # Every class counts for the macro AUC; a split of one class gives no tolerance.
    labels = np.array([0] * 90 + [1] * 5 + [2] * 5)
    assert selection_tolerance("val_macro_auc", 0.95, labels) > selection_tolerance(
        "val_macro_auc", 0.95, np.repeat([0, 1, 2], 100))
    assert selection_tolerance("val_loss", 0.3, labels) == 0.0


def test_macro_scores_use_the_positive_column_for_binary():
    labels = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    assert macro_scores(labels, proba) == {"macro_f1": 1.0, "macro_auc": 1.0}


@pytest.mark.parametrize("flags", [["--bucket-by-length"], ["--precision", "mixed_float16"],
                                   ["--precision", "mixed_bfloat16"]])
def test_speed_options_train_a_model_that_reloads_and_predicts(tmp_path, flags):
    out = tmp_path / "model"
    assert main(["train", "--data-dir", str(SAMPLE_DATA), "--output-dir", str(out),
                 "--epochs", "2", *QUICK, *flags]) == 0
    trained = load_trained_model(out)
    assert trained.config.bucket_by_length is ("--bucket-by-length" in flags)
    test = load_dataset(SAMPLE_DATA)["test"]
    proba = trained.predict_proba(test.time_features, test.contextual_features)
    assert proba.dtype == np.float32 and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-3)


def test_small_training_sets_are_repeated_to_a_minimum_of_steps_an_epoch():
    from rnn_classifier.config import DEFAULTS
    from rnn_classifier.train import epoch_repeats

    config = DEFAULTS.replace(min_steps_per_epoch=32)
    assert epoch_repeats(config, 30, 16) == 16  # 2 steps a pass
    assert epoch_repeats(config, 216, 16) == 3  # 14 steps a pass
    assert epoch_repeats(config, 15294, 256) == 1
    assert epoch_repeats(config.replace(min_steps_per_epoch=1), 30, 32) == 1


def test_cosine_schedule_warms_up_then_decays_to_zero():
    from rnn_classifier.config import DEFAULTS, LR_WARMUP_EPOCHS, LR_WARMUP_START
    from rnn_classifier.train import _learning_rate

    config = DEFAULTS.replace(learning_rate=0.01, epochs=20)
    schedule = _learning_rate(config, steps_per_epoch=10)
    warmup = LR_WARMUP_EPOCHS * 10
    assert float(schedule(0)) == pytest.approx(0.01 * LR_WARMUP_START)
    assert float(schedule(warmup)) == pytest.approx(0.01)
    values = [float(schedule(step)) for step in range(warmup, 201, 10)]
    assert values == sorted(values, reverse=True) and values[-1] == pytest.approx(0, abs=1e-6)
    assert _learning_rate(config.replace(lr_schedule="constant"), 10) == 0.01


def test_moving_average_swap_exchanges_weights_and_averages_in_place():
    import keras

    from rnn_classifier.config import DEFAULTS
    from rnn_classifier.model import build_model
    from rnn_classifier.train import _ema_swapper

    model = build_model(DEFAULTS.replace(rnn_units=4, conv_filters=4, dense_units=4), 3, 2, 3)
    model.compile(optimizer=keras.optimizers.Adam(0.1, use_ema=True, ema_momentum=0.9),
                  loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit({"time_features": rng.normal(size=(8, 5, 3)),
               "contextual_features": rng.normal(size=(8, 2))},
              np.eye(3)[rng.integers(0, 3, 8)], epochs=1, verbose=0)
    raw = [np.array(weight) for weight in model.trainable_weights]
    averages = [np.array(average) for average in model.optimizer._model_variables_moving_average]
    swapper = _ema_swapper(model)
    swapper._swap_variables()
    for weight, average in zip(model.trainable_weights, averages, strict=True):
        np.testing.assert_array_equal(np.array(weight), average)
    swapper._swap_variables()
    for weight, before in zip(model.trainable_weights, raw, strict=True):
        np.testing.assert_array_equal(np.array(weight), before)
    plain = build_model(DEFAULTS.replace(rnn_units=4, conv_filters=4), 3, 2, 3)
    plain.compile(optimizer="adam", loss="categorical_crossentropy")
    assert _ema_swapper(plain) is None


def test_single_class_validation_split_selects_epochs_by_loss(tmp_path):
    from rnn_classifier.data import load_dataset, write_dataset

    dataset = load_dataset(SAMPLE_DATA)
    arrays = {name: {"time_features": split.time_features,
                     "contextual_features": split.contextual_features,
                     "labels": split.labels} for name, split in dataset.splits.items()}
    only_zeros = arrays["validation"]["labels"] == 0
    arrays["validation"] = {kind: array[only_zeros] for kind, array in
                            arrays["validation"].items()}
    data_dir = write_dataset(tmp_path / "data", arrays)
    out = tmp_path / "model"
    assert main(["train", "--data-dir", str(data_dir), "--output-dir", str(out),
                 "--epochs", "5", "--patience", "5", *QUICK]) == 0
    metrics = json.loads((out / "training_metrics.json").read_text())
    assert metrics["monitor"] == "val_loss"
    with (out / "history.csv").open() as stream:
        losses = [float(row["val_loss"]) for row in csv.DictReader(stream)]
    # The warm-up's two epochs set no standard; after it, the lowest loss is kept.
    assert metrics["best_epoch"] == 3 + int(np.argmin(losses[2:]))


@pytest.mark.slow
def test_temperature_fitted_on_validation_lowers_the_test_calibration_error(tmp_path, capsys):
    import keras

    from rnn_classifier.batching import BucketedPredictor
    from rnn_classifier.evaluate import expected_calibration_error
    from rnn_classifier.predict import load_trained_model
    from rnn_classifier.simulate import simulate_survey, write_survey

    # Heavy label smoothing makes the network under-confident on purpose; the
    # temperature fitted on the validation split must undo it on the test split.
    # Without augmentation: training on short windows of the curves makes the model
    # more confident on the whole curves it is validated on, which hides the effect.
    data_dir = tmp_path / "survey"
    write_survey(data_dir, simulate_survey(n_vs=1500, n_sn=150, n_agn=150, seed=3))
    out = tmp_path / "model"
    assert main(["train", "--data-dir", str(data_dir), "--output-dir", str(out),
                 "--time-column", "0", "--epochs", "4", "--label-smoothing", "0.4",
                 "--prior-weight", "0", "--augmentation", "off", *QUICK]) == 0
    # Light curves with a time column: no random-kernel head, and the log says why.
    assert "no random-kernel head: the time column" in capsys.readouterr().out
    fitted = json.loads((out / "training_metrics.json").read_text())["calibration"]
    assert fitted["temperature"] < 1.0  # sharpened
    trained = load_trained_model(out)
    assert "random_kernel_features" not in {layer.name for layer in trained.model.layers}
    assert trained.model.get_layer("calibrated_probabilities").temperature == pytest.approx(
        fitted["temperature"])
    test = load_dataset(data_dir)["test"]
    calibrated = trained.predict_proba(test.time_features, test.contextual_features)
    # The same model without its last layer: the probabilities before calibration.
    uncalibrated_model = keras.Model(trained.model.inputs,
                                     trained.model.get_layer("probabilities").output)
    uncalibrated = BucketedPredictor(uncalibrated_model, trained.config.mask_value,
                                     trained.scaler.transform).predict(
        test.time_features, test.contextual_features)
    before = expected_calibration_error(test.labels, uncalibrated)
    after = expected_calibration_error(test.labels, calibrated)
    assert after < before
    np.testing.assert_array_equal(calibrated.argmax(axis=1), uncalibrated.argmax(axis=1))
