"""`evaluate` on a grid folder: every model, experiment_results.csv, comparison.html, --label.

A two-model grid is trained once on the sample data with the real `grid`
command; each test copies it before changing anything. The numbers in the
CSV are checked against `evaluate` run on each model alone, and the
comparison page is opened in headless Chromium.
"""

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml
from matplotlib.image import imread

from rnn_classifier.cli import main
from rnn_classifier.grid_evaluation import (
    COMPARISON_FILE,
    METRIC_COLUMNS,
    RESULTS_FILE,
    ModelResult,
    write_comparison,
)
from tests.browser import require_chromium
from tests.test_train import SAMPLE_DATA

LABELS = ["Class 0", "Class 1"]
LABEL_FLAGS = [flag for label in LABELS for flag in ("--label", label)]
# Two values of one grid key; everything else as small and short as training allows.
GRID = {"batch_sizes": [256], "dropouts": [0.2], "rnn_dims": [4, 8], "final_dense_dims": [4],
        "epochs": 1, "min_steps_per_epoch": 1, "conv_filters": 4}
SETTING_COLUMNS = ["batch_size", "dropout", "rnn_units", "gamma", "learning_rate", "l2",
                   "dense_units", "rnn_type", "loss"]
SPLITS = {"val": "validation", "test": "test"}


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory) -> Path:
    """A grid folder as `grid` writes it: two model folders and training_results.csv."""
    root = tmp_path_factory.mktemp("grid")
    (root / "grid.yaml").write_text(yaml.safe_dump(GRID))
    assert main(["grid", "--data-dir", str(SAMPLE_DATA), "--config", str(root / "grid.yaml"),
                 "--output-dir", str(root / "trained_models")]) == 0
    (group,) = (root / "trained_models").iterdir()
    return group


@pytest.fixture(scope="module")
def models(grid_dir) -> list[str]:
    """The grid's model folder names, sorted: RNN units 4, then 8."""
    names = sorted(path.name for path in grid_dir.iterdir() if path.is_dir())
    assert [name.split("_")[:3] for name in names] == [["256", "0.2", "4"], ["256", "0.2", "8"]]
    return names


def copy_of(grid_dir: Path, parent: Path) -> Path:
    return Path(shutil.copytree(grid_dir, parent / grid_dir.name))


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def evaluated(grid_dir, tmp_path_factory) -> tuple[Path, str]:
    """A copy of the grid evaluated in place with --label, and what the command printed."""
    folder = copy_of(grid_dir, tmp_path_factory.mktemp("evaluated"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["evaluate", "--data-dir", str(SAMPLE_DATA), "--model-dir", str(folder),
                       *LABEL_FLAGS])
    assert status == 0
    return folder, printed.getvalue()


def test_results_csv_holds_each_model_with_the_numbers_of_evaluate_alone(evaluated, models,
                                                                         tmp_path):
    folder, printed = evaluated
    rows = read_rows(folder / RESULTS_FILE)
    with (folder / RESULTS_FILE).open() as stream:
        header = next(csv.reader(stream))
    assert header == ["model", *SETTING_COLUMNS, *METRIC_COLUMNS, "status", "reason"]
    assert [row["model"] for row in rows] == models
    assert [row["rnn_units"] for row in rows] == ["4", "8"]
    for row in rows:
        assert (row["batch_size"], row["dropout"], row["rnn_type"], row["loss"]) == (
            "256", "0.2", "gru", "focal")
        assert (row["status"], row["reason"]) == ("ok", "")
        alone = tmp_path / row["model"]
        assert main(["evaluate", "--data-dir", str(SAMPLE_DATA), "--model-dir",
                     str(folder / row["model"]), "--output-dir", str(alone), *LABEL_FLAGS]) == 0
        metrics = json.loads((alone / "metrics.json").read_text())
        for column in METRIC_COLUMNS:
            prefix, metric = column.split("_", 1)
            assert float(row[column]) == metrics[SPLITS[prefix]][metric], column
        # The grid's own evaluation of the model is that same evaluation, whole.
        assert json.loads((folder / row["model"] / "evaluation" / "metrics.json").read_text()
                          ) == metrics
    # One progress line per model.
    progress = [line for line in printed.splitlines() if line.startswith("[")]
    assert [line.split()[:2] for line in progress] == [["[1/2]", models[0]],
                                                       ["[2/2]", models[1]]]
    assert all("test macro-F1" in line for line in progress)


def test_each_model_gets_labelled_confusion_matrices_and_report(evaluated, models):
    folder, _ = evaluated
    for model in models:
        evaluation = folder / model / "evaluation"
        for split in ("validation", "test"):
            image = imread(evaluation / f"confusion_matrix_{split}.png")
            assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
            assert image.std() > 0  # drawn, not blank
        metrics = json.loads((evaluation / "metrics.json").read_text())
        for split in ("validation", "test"):
            assert metrics[split]["confusion_matrix"]["labels"] == LABELS
            assert list(metrics[split]["per_class"]) == LABELS
        assert list(metrics["auc_vs_observations"]["per_class"]) == LABELS
        report = (evaluation / "report.html").read_text()
        assert all(f'<td class="name">{label}</td>' in report for label in LABELS)
        assert "class 0" not in report  # classes.txt's names were replaced


def test_comparison_page_sorts_and_shows_the_figure_in_chromium(evaluated, models):
    require_chromium()
    from selenium.webdriver.common.by import By

    from tests.browser import chromium

    folder, _ = evaluated
    page = folder / COMPARISON_FILE
    with chromium() as driver:
        driver.get(page.resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map((img) => [img.complete, img.naturalWidth]);")
        assert len(images) == 1 and images[0][0] and images[0][1] > 300
        header = next(th for th in driver.find_elements(By.CSS_SELECTOR, "thead th")
                      if th.text.strip() == "rnn_units")
        column = [th.text.strip() for th in driver.find_elements(By.CSS_SELECTOR, "thead th")
                  ].index("rnn_units") + 1

        def rnn_units() -> list[str]:
            cells = driver.find_elements(By.CSS_SELECTOR, f"tbody tr td:nth-child({column})")
            return [cell.text for cell in cells]

        header.click()
        assert header.get_attribute("aria-sort") == "ascending"
        assert rnn_units() == ["4", "8"]
        header.click()
        assert header.get_attribute("aria-sort") == "descending"
        assert rnn_units() == ["8", "4"]
        links = [link.get_attribute("href") for link in
                 driver.find_elements(By.CSS_SELECTOR, "tbody td.name a")]
    assert sorted(links) == [(folder / model / "evaluation" / "report.html").resolve().as_uri()
                             for model in models]
    assert "Class 0, Class 1" in page.read_text()


def fake_result(name: str, test_macro_f1: float | None, tmp_path: Path) -> ModelResult:
    """A ModelResult as evaluate_grid makes it, without training (None: a failed model)."""
    if test_macro_f1 is None:
        return ModelResult(name, tmp_path / name, None, reason="config.json: missing")
    split = {"accuracy": 0.5, "balanced_accuracy": 0.5, "macro_f1": test_macro_f1,
             "macro_roc_auc": None, "confusion_matrix": {"labels": LABELS}}
    return ModelResult(name, tmp_path / name, None,
                       metrics={"validation": split, "test": split, "auc_vs_observations": None})


def test_comparison_sorts_numbers_as_numbers_with_failed_models_last(tmp_path):
    require_chromium()
    from selenium.webdriver.common.by import By

    from tests.browser import chromium

    results = [fake_result("32_0.2_16_1.0_0.001_0.0001_8", 0.9, tmp_path),
               fake_result("32_0.2_4_1.0_0.001_0.0001_8", None, tmp_path),
               fake_result("32_0.2_8_1.0_0.001_0.0001_8", 0.7, tmp_path)]
    page = write_comparison(tmp_path, "<grid & co>", results, SETTING_COLUMNS[:7])
    assert "&lt;grid &amp; co&gt;" in page.read_text()
    with chromium() as driver:
        driver.get(page.resolve().as_uri())
        headers = {th.text.strip(): th for th in driver.find_elements(By.CSS_SELECTOR, "thead th")}

        def models() -> list[str]:
            return [cell.text.split("_")[2] for cell in
                    driver.find_elements(By.CSS_SELECTOR, "tbody td.name")]

        headers["rnn_units"].click()
        assert models() == ["4", "8", "16"]  # as numbers: text would put 16 first
        headers["test_macro_f1"].click()
        assert models() == ["8", "16", "4"]  # the failed model (blank) last
        headers["test_macro_f1"].click()
        assert models() == ["16", "8", "4"]  # last both ways
        failed = driver.find_element(By.CSS_SELECTOR, "tbody tr.failed td.reason")
        assert failed.text == "config.json: missing"


def test_a_damaged_model_is_listed_with_its_reason_and_the_others_evaluated(
        grid_dir, models, tmp_path, capsys):
    folder = copy_of(grid_dir, tmp_path)
    damaged, intact = models
    archive = folder / damaged / "model.keras"
    archive.write_bytes(archive.read_bytes()[:200])  # a partial copy
    missing = "64_0.2_4_2.0_0.003_0.0001_4"  # named like a model, nothing in it
    (folder / missing).mkdir()
    for not_a_model in (".cache", "notes", "evaluation"):
        (folder / not_a_model).mkdir()
    output = tmp_path / "out"
    capsys.readouterr()
    assert main(["evaluate", "--data-dir", str(SAMPLE_DATA), "--model-dir", str(folder),
                 "--output-dir", str(output)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert f"2 of 3 models in {folder} could not be evaluated ({damaged}, {missing})" in error

    rows = {row["model"]: row for row in read_rows(output / RESULTS_FILE)}
    assert list(rows) == sorted([damaged, intact, missing])
    assert rows[intact]["status"] == "ok" and rows[intact]["reason"] == ""
    assert 0.0 <= float(rows[intact]["test_macro_f1"]) <= 1.0
    assert rows[damaged]["status"] == "failed"
    assert rows[damaged]["reason"].startswith(f"{archive}: not a zip archive")
    assert rows[damaged]["rnn_units"] == "4"  # its config is still readable
    assert rows[missing]["status"] == "failed"
    assert rows[missing]["reason"].startswith(f"{folder / missing / 'model.keras'}: missing")
    assert rows[missing]["batch_size"] == "64"  # from the folder name
    assert all(rows[name][column] == "" for name in (damaged, missing)
               for column in METRIC_COLUMNS)

    assert (output / intact / "metrics.json").exists()
    assert (output / intact / "confusion_matrix_test.png").exists()
    assert not (output / damaged / "metrics.json").exists()
    comparison = (output / COMPARISON_FILE).read_text()
    assert "not a zip archive" in comparison


def test_a_damaged_grid_on_gs_is_evaluated_and_uploaded(grid_dir, models, tmp_path, gcs_bucket,
                                                       capsys):
    from rnn_classifier.storage import list_files, read_text, upload_folder

    folder = copy_of(grid_dir, tmp_path)
    damaged, intact = models
    (folder / damaged / "config.json").unlink()
    uri = f"{gcs_bucket}/trained_models/{folder.name}"
    upload_folder(folder, uri)
    assert main(["evaluate", "--data-dir", str(SAMPLE_DATA), "--model-dir", uri]) == 2
    assert f"1 of 2 models in {uri} could not be evaluated ({damaged})" in capsys.readouterr().err
    uploaded = list_files(uri)
    assert {RESULTS_FILE, COMPARISON_FILE, f"{intact}/evaluation/metrics.json",
            f"{intact}/evaluation/confusion_matrix_validation.png"} <= set(uploaded)
    assert not any(name.startswith(f"{damaged}/evaluation/") for name in uploaded)
    rows = {row["model"]: row for row in csv.DictReader(io.StringIO(
        read_text(f"{uri}/{RESULTS_FILE}")))}
    # The reason names the bucket, not the temporary download.
    assert rows[damaged]["reason"].startswith(f"{uri}/{damaged}/config.json: missing")
    assert rows[intact]["status"] == "ok"


@pytest.mark.parametrize("target, labels", [("grid", ["only one"]),
                                            ("model", ["a", "b", "c"])])
def test_a_label_count_that_does_not_fit_is_one_error_and_writes_nothing(
        grid_dir, models, tmp_path, capsys, target, labels):
    folder = copy_of(grid_dir, tmp_path)
    model_dir = folder if target == "grid" else folder / models[0]
    before = sorted(folder.rglob("*"))
    capsys.readouterr()
    assert main(["evaluate", "--data-dir", str(SAMPLE_DATA), "--model-dir", str(model_dir),
                 *[flag for label in labels for flag in ("--label", label)]]) == 2
    error = capsys.readouterr().err
    names = "name" if len(labels) == 1 else "names"
    assert f"--label was given {len(labels)} {names} but the model in " in error
    assert "has 2 classes (classes.txt: class 0, class 1)" in error
    assert sorted(folder.rglob("*")) == before


def test_a_folder_that_is_neither_a_model_nor_a_grid_is_one_error(tmp_path, capsys):
    plain = tmp_path / "plain"
    (plain / "notes").mkdir(parents=True)
    (plain / "readme.txt").write_text("not a model\n")
    assert main(["evaluate", "--data-dir", str(SAMPLE_DATA), "--model-dir", str(plain)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {plain}: neither a model folder nor a grid folder")
    assert "expected a model folder written by train, or a grid folder written by grid" in error
    assert sorted(path.name for path in plain.iterdir()) == ["notes", "readme.txt"]

    # One level too high: the folder `grid --output-dir` writes, holding grid folders.
    grid = tmp_path / "trained_models" / "2021-9-20-1037-gru-fl"
    (grid / "32_0.2_25_1.0_0.0001_0.01_50").mkdir(parents=True)
    assert main(["evaluate", "--data-dir", str(SAMPLE_DATA), "--model-dir",
                 str(grid.parent)]) == 2
    error = capsys.readouterr().err
    assert f"a folder of grid folders ({grid.name}), not a grid folder" in error
    assert f"--model-dir {grid}" in error
