"""Evaluating a grid folder: every model in it, one results table, one comparison page.

The original project's `model_evaluation.py -m trained_models/2021-9-20-1037-gru-fl`
evaluated every model of a grid folder (laid out as `rnn_classifier.grid`
writes it: one sub-folder per model, named by its hyperparameters) and
tabulated them in `experiment_results.csv`. `evaluate_grid` does the same by
calling `evaluate.evaluate_model` on each model, so every row holds exactly
the numbers `rnn-classifier evaluate` gives for that model alone, and each
model gets the usual evaluation folder (metrics.json, the validation and test
confusion matrices, report.html). A self-contained `comparison.html` puts the
models side by side: the table, sortable, and AUC against number of
observations of all of them on one axes, as the paper's figure does.

A model that cannot be evaluated (a half-copied or damaged folder, refused by
`rnn_classifier.model_folder`) is listed with its reason and the others are
still evaluated; the CLI then exits with status 2.
"""

from __future__ import annotations

import csv
import html
import io
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rnn_classifier import config as config_module
from rnn_classifier.config import TrainConfig
from rnn_classifier.data import DataError, load_dataset
from rnn_classifier.evaluate import (
    _REPORT_STYLE,
    _cell,
    _figure_html,
    evaluate_model,
    plot_auc_vs_observations,
)
from rnn_classifier.grid import GRID_KEYS
from rnn_classifier.model_folder import (
    REQUIRED_FILES,
    override_class_names,
    read_class_names,
    read_config,
)
from rnn_classifier.storage import write_text
from rnn_classifier.train import (
    CHECKPOINT_DIR,
    CLASSES_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    TRAINING_METRICS_FILE,
)

RESULTS_FILE = "experiment_results.csv"
COMPARISON_FILE = "comparison.html"
COMPARISON_FIGURE = "auc_vs_observations.png"
# Where `evaluate` writes inside a model folder when no --output-dir is given.
EVALUATION_DIR = "evaluation"
EVALUATED_SPLITS = (("validation", "val"), ("test", "test"))
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "macro_roc_auc")
METRIC_COLUMNS = tuple(f"{prefix}_{metric}" for _, prefix in EVALUATED_SPLITS
                       for metric in METRICS)
# Shown even when every model shares them: they are what a grid folder's name says.
ALWAYS_SHOWN_FIELDS = ("rnn_type", "loss")
# Files only a model folder holds, finished (what train writes) or interrupted (its checkpoint).
MODEL_MARKERS = (*REQUIRED_FILES, HISTORY_FILE, TRAINING_METRICS_FILE, CHECKPOINT_DIR)
_NUMBER = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
# grid.parameter_folder_name: one number per GRID_KEYS field, joined by "_".
PARAMETER_FOLDER = re.compile(rf"{_NUMBER}(?:_{_NUMBER}){{{len(GRID_KEYS) - 1}}}")
EXPECTED_FOLDER = ("expected a model folder written by train, or a grid folder written by grid "
                   "(one sub-folder per model, e.g. 32_0.2_25_1.0_0.0001_0.01_50/)")

# Twenty columns: the page takes the window's width, and headers wrap at their underscores.
_COMPARISON_STYLE = """
body { max-width: none; }
table.sortable th, table.sortable td { padding: .25em .5em; font-size: .9em; }
th[tabindex] { cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
tr.failed td { background: #fdecea; }
td.reason { text-align: left; min-width: 24em; }
"""

# Sorts a table by the clicked (or Enter-pressed) header; a second click reverses.
# Cells sort by data-sort when they have one (a score's full value), else by
# their text; numbers as numbers; blanks (a failed model's scores) always last.
_SORT_SCRIPT = """
(function () {
  function key(row, column) {
    const cell = row.cells[column];
    return cell.hasAttribute('data-sort') ? cell.getAttribute('data-sort')
                                          : cell.textContent.trim();
  }
  function order(a, b) {
    if (a === '' || b === '') return 0;
    return !isNaN(a) && !isNaN(b) ? Number(a) - Number(b) : a.localeCompare(b);
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    const headers = Array.from(table.tHead.rows[0].cells);
    headers.forEach(function (header, column) {
      function sort() {
        const ascending = header.getAttribute('aria-sort') !== 'ascending';
        headers.forEach(function (other) { other.removeAttribute('aria-sort'); });
        header.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
        const body = table.tBodies[0];
        Array.from(body.rows).sort(function (x, y) {
          const a = key(x, column), b = key(y, column);
          const blanks = (a === '') - (b === '');
          return blanks || (ascending ? order(a, b) : order(b, a));
        }).forEach(function (row) { body.appendChild(row); });
      }
      header.addEventListener('click', sort);
      header.addEventListener('keydown', function (event) {
        if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); sort(); }
      });
    });
  });
})();
"""


@dataclass
class ModelResult:
    """One model of a grid: its config, and its metrics or why it could not be evaluated."""

    name: str
    output_dir: Path
    config: TrainConfig | None
    metrics: dict | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        """True when the model was evaluated."""
        return self.metrics is not None


@dataclass
class GridEvaluation:
    """What `evaluate_grid` did: one result per model and the files it wrote."""

    results: list[ModelResult]
    results_path: Path
    comparison_path: Path

    @property
    def failed(self) -> list[ModelResult]:
        """The models that could not be evaluated."""
        return [result for result in self.results if not result.ok]


# --------------------------------------------------------------------------
# What --model-dir is
# --------------------------------------------------------------------------


def _holds_model_files(path: Path) -> bool:
    return any((path / name).exists() for name in MODEL_MARKERS)


def _looks_like_model_folder(path: Path) -> bool:
    """A model folder, or one meant to be: some of its files, or a grid parameter name."""
    return _holds_model_files(path) or PARAMETER_FOLDER.fullmatch(path.name) is not None


def model_folders(grid_dir: Path) -> list[Path]:
    """The sub-folders of a grid folder that are, or were meant to be, model folders.

    One that fails the model-folder checks is still listed (it is a damaged
    model); evaluation output, hidden folders and other folders are not
    models and are left out.
    """
    return sorted(path for path in grid_dir.iterdir()
                  if path.is_dir() and not path.name.startswith(".")
                  and path.name != EVALUATION_DIR and _looks_like_model_folder(path))


def folder_kind(path: Path) -> str:
    """"model" or "grid": which kind of folder `evaluate --model-dir` was given.

    A model folder holds a model's files (or is named like grid's parameter
    folders); a damaged one is still a model folder, for the model-folder
    checks to explain. A grid folder has no model of its own but sub-folders
    that are model folders.

    Raises:
        DataError: `path` is neither, naming what it holds and what was expected.
    """
    if not path.is_dir():
        raise DataError(f"{path}: not a folder; {EXPECTED_FOLDER}")
    if _looks_like_model_folder(path):
        return "model"
    if model_folders(path):
        return "grid"
    grids = [sub for sub in sorted(path.iterdir())
             if sub.is_dir() and not sub.name.startswith(".") and model_folders(sub)]
    if grids:
        raise DataError(f"{path}: a folder of grid folders ({', '.join(g.name for g in grids)}), "
                        f"not a grid folder; pass one of them, e.g. --model-dir {grids[0]}")
    raise DataError(f"{path}: neither a model folder nor a grid folder (no "
                    f"{', '.join(REQUIRED_FILES)} in it or in any sub-folder); {EXPECTED_FOLDER}")


def gcs_download_names(listing: Sequence[str]) -> list[str] | None:
    """Which files of a gs:// --model-dir (`listing`: storage.list_files) to download.

    None for a model folder (its own files, as for any model); for a grid
    folder, the files one level down: each model's, not earlier evaluations.
    """
    top_level = {name.split("/", 1)[0] for name in listing}
    if top_level & set(MODEL_MARKERS):
        return None
    return [name for name in listing if name.count("/") == 1]


# --------------------------------------------------------------------------
# Evaluating every model
# --------------------------------------------------------------------------


def _readable_config(model_dir: Path) -> TrainConfig | None:
    """The model's config.json, or None when it is missing or damaged (evaluation says why)."""
    try:
        return read_config(model_dir / CONFIG_FILE)
    except (DataError, OSError):
        return None


def _check_labels(folders: Iterable[Path], labels: Sequence[str] | None) -> None:
    """Fail before anything is written when `labels` does not fit a model's classes.txt."""
    if labels is None:
        return
    for folder in folders:
        try:
            class_names = read_class_names(folder / CLASSES_FILE)
        except (DataError, OSError):
            continue  # a damaged classes.txt is that model's failure, reported in its row
        override_class_names(class_names, labels, folder)


def _check_data(data_dir: Path, configs: Iterable[TrainConfig]) -> None:
    """Fail before anything is written when the data fits none of the models.

    Data that fits some models but not others is those others' failure,
    reported in their rows.
    """
    settings = sorted({(config.mixed, config.mask_value) for config in configs})
    errors = []
    for mixed, mask_value in settings:
        try:
            load_dataset(data_dir, mixed=mixed, mask_value=mask_value,
                         splits=("validation", "test"))
        except DataError as error:
            errors.append(error)
    if settings and len(errors) == len(settings):
        raise errors[0]


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def evaluate_grid(grid_dir: str | Path, data_dir: str | Path, output_dir: str | Path,
                  model_subfolder: str = "", labels: Sequence[str] | None = None,
                  grid_name: str | None = None,
                  log: Callable[[str], None] = lambda line: print(line, flush=True)
                  ) -> GridEvaluation:
    """Evaluate every model of a grid folder; write the results CSV and comparison page.

    Each model is evaluated by `evaluate.evaluate_model` into
    `output_dir/MODEL/model_subfolder`; `experiment_results.csv`,
    `comparison.html` and its figure go in `output_dir`. One line per model
    goes to `log`.

    Args:
        grid_dir: A grid folder (`folder_kind` "grid").
        data_dir: The data folder (validation and test splits).
        output_dir: Where the outputs go; the grid folder itself by default in the CLI.
        model_subfolder: Sub-folder of each model's output ("evaluation" when
            `output_dir` is the grid folder, as single-model evaluate does).
        labels: Class names in label order, in place of each classes.txt.
        grid_name: How reasons name the grid folder (its gs:// URI when
            `grid_dir` is a download); default `grid_dir`.
        log: Receives the progress lines.

    Returns:
        The results (failed models included) and the paths written.

    Raises:
        DataError: `labels` does not fit a model's classes, or the data fits
            no model; nothing is written then.
    """
    grid_dir, data_dir, output_dir = Path(grid_dir), Path(data_dir), Path(output_dir)
    folders = model_folders(grid_dir)
    configs = {folder.name: _readable_config(folder) for folder in folders}
    _check_labels(folders, labels)
    _check_data(data_dir, [config for config in configs.values() if config is not None])
    results = []
    for number, folder in enumerate(folders, 1):
        result = ModelResult(folder.name, output_dir / folder.name / model_subfolder,
                             configs[folder.name])
        try:
            result.metrics = evaluate_model(folder, data_dir, result.output_dir,
                                            progress=lambda _line: None, labels=labels)
        # DataError and ConfigError (a refused folder) are ValueErrors, as are the
        # metrics' own checks (e.g. a model whose weights give NaN probabilities);
        # OSError: a file that cannot be read. Either way, one model's problem.
        except (ValueError, OSError) as error:
            reason = " ".join(str(error).split())
            result.reason = reason.replace(str(grid_dir), grid_name or str(grid_dir))
        if result.ok:
            test = result.metrics["test"]
            outcome = (f"test macro-F1 {_score(test['macro_f1'])} "
                       f"macro ROC-AUC {_score(test['macro_roc_auc'])}")
        else:
            outcome = f"failed: {result.reason}"
        log(f"[{number}/{len(folders)}] {folder.name} {outcome}")
        results.append(result)
    columns = setting_columns(config for config in configs.values() if config is not None)
    results_path = write_results_csv(output_dir / RESULTS_FILE, results, columns)
    comparison_path = write_comparison(output_dir, grid_dir.name, results, columns)
    return GridEvaluation(results, results_path, comparison_path)


# --------------------------------------------------------------------------
# The results table
# --------------------------------------------------------------------------


def setting_columns(configs: Iterable[TrainConfig]) -> list[str]:
    """Config fields to tabulate: the folder name's, rnn_type and loss, and any that differ."""
    configs = list(configs)
    grid_fields = list(GRID_KEYS.values())
    differing = [field for field in config_module.field_names()
                 if field not in grid_fields and len({getattr(c, field) for c in configs}) > 1]
    shown = [field for field in config_module.field_names()
             if field in ALWAYS_SHOWN_FIELDS or field in differing]
    return grid_fields + shown


def _settings(result: ModelResult, columns: Sequence[str]) -> dict[str, str]:
    """The model's value of each column: from its config, else from its folder name."""
    if result.config is not None:
        return {column: str(getattr(result.config, column)) for column in columns}
    from_name = (dict(zip(GRID_KEYS.values(), result.name.split("_"), strict=True))
                 if PARAMETER_FOLDER.fullmatch(result.name) else {})
    return {column: from_name.get(column, "") for column in columns}


def _metric_values(result: ModelResult) -> dict[str, float | None]:
    """The val_/test_ scores, exactly as evaluate_model returned them (None: undefined)."""
    if not result.ok:
        return dict.fromkeys(METRIC_COLUMNS)
    return {f"{prefix}_{metric}": result.metrics[split][metric]
            for split, prefix in EVALUATED_SPLITS for metric in METRICS}


def write_results_csv(path: Path, results: Sequence[ModelResult], columns: Sequence[str]) -> Path:
    """`experiment_results.csv`: one row per model, written whole (atomically).

    Columns: model, the settings `columns`, val_/test_ accuracy, balanced
    accuracy, macro-F1 and macro ROC-AUC (full precision; blank when
    undefined or the model failed), status (ok / failed) and reason.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", *columns, *METRIC_COLUMNS, "status", "reason"])
    for result in results:
        scores = _metric_values(result)
        writer.writerow([result.name, *_settings(result, columns).values(),
                         *("" if value is None else repr(value) for value in scores.values()),
                         "ok" if result.ok else "failed", result.reason])
    write_text(path, buffer.getvalue())
    return path


# --------------------------------------------------------------------------
# The comparison page
# --------------------------------------------------------------------------


def _model_cell(result: ModelResult, page_dir: Path) -> str:
    name = html.escape(result.name)
    if not result.ok:
        return f'<td class="name">{name}</td>'
    report = Path(os.path.relpath(result.output_dir / "report.html", page_dir)).as_posix()
    return f'<td class="name"><a href="{html.escape(report, quote=True)}">{name}</a></td>'


def _comparison_table(results: Sequence[ModelResult], columns: Sequence[str],
                      page_dir: Path) -> str:
    # The CSV's columns, scores first: twenty columns overflow a window, and the
    # scores are what the page is read for.
    header = ["model", *METRIC_COLUMNS, *columns, "status", "reason"]
    name_class = ' class="name"'
    head = "".join(
        f'<th scope="col" tabindex="0"{name_class if index == 0 else ""} '
        f'title="sort by {html.escape(title, quote=True)}">'
        f'{html.escape(title).replace("_", "_<wbr>")}</th>'
        for index, title in enumerate(header))
    rows = []
    for result in results:
        cells = [_model_cell(result, page_dir)]
        cells += [f'<td data-sort="{"" if value is None else repr(value)}">'
                  f'{"" if not result.ok else _cell(value)}</td>'
                  for value in _metric_values(result).values()]
        cells += [f"<td>{html.escape(value)}</td>" for value in _settings(result, columns).values()]
        cells.append(f"<td>{'ok' if result.ok else 'failed'}</td>")
        cells.append(f'<td class="reason">{html.escape(result.reason)}</td>')
        row_class = "" if result.ok else ' class="failed"'
        rows.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    return (f'<div class="table-scroll"><table class="sortable"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def write_comparison(output_dir: Path, grid_name: str, results: Sequence[ModelResult],
                     columns: Sequence[str]) -> Path:
    """`comparison.html`: the models side by side, self-contained (no network, inline JS).

    The table of `write_results_csv` (scores before settings), sortable by
    clicking a header, each evaluated model linking to its report; then the macro ROC-AUC against
    number of observations of every evaluated model on one axes (a PNG,
    embedded). All text is escaped: model and class names come from files.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    evaluated = [result for result in results if result.ok]
    title = f"rnn-classifier grid evaluation: {grid_name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_REPORT_STYLE}{_COMPARISON_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{len(evaluated)} of {len(results)} models evaluated on the validation '
        "and test splits"
        + (f"; {len(results) - len(evaluated)} could not be, for the reason in their row"
           if len(evaluated) < len(results) else "")
        + ".</p>",
    ]
    if evaluated:
        class_names = evaluated[0].metrics["test"]["confusion_matrix"]["labels"]
        parts.append(f'<p class="note">Classes: {html.escape(", ".join(class_names))}.</p>')
    parts += [
        "<h2>Models</h2>",
        '<p class="note">Click a column header to sort by it; click again to reverse. '
        "Each model's name links to its report.</p>",
        _comparison_table(results, columns, output_dir),
    ]
    curves = {result.name: result.metrics["auc_vs_observations"] for result in evaluated
              if result.metrics.get("auc_vs_observations")}
    if curves:
        figure = plot_auc_vs_observations(curves, output_dir / COMPARISON_FIGURE)
        parts += ["<h2>Early classification</h2>",
                  '<p class="note">Macro ROC-AUC of each model when every test light curve is '
                  "cut to its first n observations.</p>",
                  _figure_html("auc_vs_observations", figure)]
    parts.append(f"<script>{_SORT_SCRIPT}</script></body></html>")
    path = output_dir / COMPARISON_FILE
    write_text(path, "\n".join(parts))
    return path
