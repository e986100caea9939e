"""predict, evaluate and grid through the CLI on a real (quickly) trained model."""

import csv
import json

import numpy as np
import pytest
import yaml

from rnn_classifier.cli import main
from rnn_classifier.data import load_dataset
from rnn_classifier.predict import load_trained_model
from tests.test_train import QUICK, SAMPLE_DATA


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "model"
    assert main(["train", "--data-dir", str(SAMPLE_DATA), "--output-dir", str(out),
                 "--epochs", "2", *QUICK]) == 0
    return out


@pytest.mark.parametrize("batch_size", [None, "7"])
def test_predict_writes_one_row_per_example(model_dir, tmp_path, batch_size):
    output = tmp_path / "predictions.csv"
    flags = [] if batch_size is None else ["--batch-size", batch_size]
    assert main(["predict", "--model-dir", str(model_dir), "--data-dir", str(SAMPLE_DATA),
                 "--split", "test", "--output", str(output), *flags]) == 0
    with output.open() as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == ["index", "p_class 0", "p_class 1", "predicted_class"]
    proba = np.array([[float(row["p_class 0"]), float(row["p_class 1"])] for row in rows])
    test = load_dataset(SAMPLE_DATA, splits=("test",))["test"]
    assert len(rows) == len(test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    expected = load_trained_model(model_dir).predict_proba(test.time_features,
                                                           test.contextual_features)
    np.testing.assert_allclose(proba, expected, atol=1e-6)
    assert [row["predicted_class"] for row in rows] == [
        f"class {label}" for label in expected.argmax(axis=1)]
    assert not output.with_name(output.name + ".partial").exists()


def test_chunked_prediction_equals_whole(model_dir):
    trained = load_trained_model(model_dir)
    test = load_dataset(SAMPLE_DATA, splits=("test",))["test"]
    chunks = list(trained.iter_proba(test.time_features, test.contextual_features, rows=7))
    assert len(chunks) == -(-len(test) // 7)
    np.testing.assert_allclose(np.concatenate(chunks),
                               trained.predict_proba(test.time_features,
                                                     test.contextual_features), atol=1e-6)


@pytest.mark.parametrize("batch_size", ["0", "-3", "many"])
def test_predict_rejects_a_bad_batch_size(model_dir, tmp_path, capsys, batch_size):
    output = tmp_path / "predictions.csv"
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--model-dir", str(model_dir), "--data-dir", str(SAMPLE_DATA),
              "--output", str(output), "--batch-size", batch_size])
    assert exit_info.value.code == 2
    assert "--batch-size" in capsys.readouterr().err
    assert not output.exists()


def test_predict_refuses_an_incomplete_model_folder(tmp_path, capsys):
    assert main(["predict", "--model-dir", str(tmp_path), "--data-dir", str(SAMPLE_DATA),
                 "--output", str(tmp_path / "p.csv")]) == 2
    assert "model.keras: missing" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_evaluate_writes_metrics_figures_and_report(model_dir, tmp_path):
    out = tmp_path / "evaluation"
    assert main(["evaluate", "--data-dir", str(SAMPLE_DATA), "--model-dir", str(model_dir),
                 "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for split, size in (("validation", 140), ("test", 300)):
        figures = metrics[split]
        assert {"accuracy", "balanced_accuracy", "macro_f1", "macro_roc_auc", "ece",
                "per_class", "confusion_matrix"} <= set(figures)
        assert np.sum(figures["confusion_matrix"]["counts"]) == size
        assert set(figures["per_class"]) == {"class 0", "class 1"}
    curve = metrics["auc_vs_observations"]
    assert curve["n_observations"] == list(range(1, 41))
    assert (out / "report.html").stat().st_size > 10_000
    assert {"confusion_matrix_test.png", "auc_vs_observations.png"} <= {
        path.name for path in out.iterdir()}


def test_evaluate_default_output_is_inside_the_model_folder(model_dir):
    assert main(["evaluate", "--data-dir", str(SAMPLE_DATA), "--model-dir",
                 str(model_dir)]) == 0
    assert (model_dir / "evaluation" / "metrics.json").exists()


def test_grid_lays_out_folders_like_the_original(tmp_path):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump({
        "batch_sizes": [128], "learning_rates": [0.001], "rnn_dims": [4, 8], "dropouts": [0.2],
        "reg_l2s": [0.0001], "final_dense_dims": [8], "gammas": [1.0, 2.0], "mask_val": -99.0,
        "epochs": 1}))
    args = ["grid", "--data-dir", str(SAMPLE_DATA), "--config", str(grid_file),
            "--output-dir", str(tmp_path / "trained_models"), "--loss", "focal,ce"]
    assert main(args) == 0
    assert main(args) == 0  # a rerun in the same minute must not crash on existing folders
    groups = sorted((tmp_path / "trained_models").iterdir())
    # Two runs, two groups each; a second run in the same minute gets a "-2" suffix.
    assert len(groups) == 4
    focal_groups = [group for group in groups if "-gru-fl" in group.name]
    ce_groups = [group for group in groups if "-gru-ce" in group.name]
    assert len(focal_groups) == len(ce_groups) == 2
    focal = focal_groups[0]
    with (focal / "training_results.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 4  # 2 rnn_dims x 2 gammas; gamma is not a grid axis for ce
    assert {"test_macro_f1", "test_accuracy", "test_macro_auc", "val_macro_f1",
            "val_accuracy", "val_macro_auc"} <= set(rows[0])
    assert rows[0]["model"] == "128_0.2_4_1.0_0.001_0.0001_8"
    assert (focal / rows[0]["model"] / "model.keras").exists()
    for row in rows:
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0
    with (ce_groups[0] / "training_results.csv").open() as stream:
        assert len(list(csv.DictReader(stream))) == 2


def test_grid_rejects_unknown_keys(tmp_path, capsys):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text("batch_size: [32]\n")
    assert main(["grid", "--data-dir", str(SAMPLE_DATA), "--config", str(grid_file),
                 "--output-dir", str(tmp_path / "out")]) == 2
    assert "batch_size" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_predictions_csv_quotes_class_names_with_commas_and_quotes(model_dir, tmp_path):
    from rnn_classifier.predict import write_predictions

    trained = load_trained_model(model_dir)
    trained.class_names = ["SN, Ia", 'AGN "radio"']
    output = tmp_path / "predictions.csv"
    assert write_predictions(trained, SAMPLE_DATA, "test", output) == 300
    with output.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == ["index", "p_SN, Ia", 'p_AGN "radio"', "predicted_class"]
    assert {row["predicted_class"] for row in rows} <= {"SN, Ia", 'AGN "radio"'}
    assert [int(row["index"]) for row in rows] == list(range(300))
