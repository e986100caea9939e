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
from rnn_classifier.train import macro_scores

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
    config = json.loads((out / "config.json").read_text())
    assert config["rnn_units"] == 8 and config["epochs"] == 3
    with (out / "history.csv").open() as stream:
        history = list(csv.DictReader(stream))
    assert [float(row["val_macro_auc"]) for row in history] == pytest.approx(
        [epoch["val_macro_auc"] for epoch in epochs], rel=1e-5)
    best = json.loads((out / "training_metrics.json").read_text())
    assert best["validation"]["val_macro_auc"] == pytest.approx(
        max(epoch["val_macro_auc"] for epoch in epochs), rel=1e-5)
    # Training time accumulates epoch by epoch (what time-to-accuracy is read from).
    elapsed = [float(row["elapsed_seconds"]) for row in history]
    assert 0 < elapsed[0] < elapsed[1] < elapsed[2]
    assert best["training_seconds"] == elapsed[-1]


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


def test_macro_scores_use_the_positive_column_for_binary():
    labels = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    assert macro_scores(labels, proba) == {"macro_f1": 1.0, "macro_auc": 1.0}


@pytest.mark.parametrize("flags", [["--bucket-by-length"], ["--precision", "mixed_float16"],
                                   ["--precision", "mixed_bfloat16"]])
def test_speed_options_train_a_model_that_reloads_and_predicts(tmp_path, flags):
    import keras

    from rnn_classifier.data import load_dataset
    from rnn_classifier.predict import load_trained_model

    out = tmp_path / "model"
    assert main(["train", "--data-dir", str(SAMPLE_DATA), "--output-dir", str(out),
                 "--epochs", "2", *QUICK, *flags]) == 0
    trained = load_trained_model(out)
    assert trained.config.bucket_by_length is ("--bucket-by-length" in flags)
    if "mixed_float16" in flags:
        # float16 training needs loss scaling; the saved optimizer keeps it.
        assert isinstance(trained.model.optimizer, keras.optimizers.LossScaleOptimizer)
    test = load_dataset(SAMPLE_DATA)["test"]
    proba = trained.predict_proba(test.time_features, test.contextual_features)
    assert proba.dtype == np.float32 and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-3)
