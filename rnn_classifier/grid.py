"""The original project's grid workflow: train every combination, tabulate results.

The grid file keeps the original `mixed_input_train_config.yaml` keys
(`batch_sizes`, `learning_rates`, `rnn_dims`, `dropouts`, `reg_l2s`,
`final_dense_dims`, `gammas`, `mask_val`); any `TrainConfig` field may be
given too, as a fixed setting for every model. Folders are laid out as the
original README describes:

    trained_models/2021-8-5-1103-gru-fl/32_0.2_25_1.0_0.0001_0.01_50/
    trained_models/2021-8-5-1103-gru-fl/training_results.csv

(batch size, dropout, RNN units, gamma, learning rate, L2, dense units).
"""

from __future__ import annotations

import csv
import datetime
import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from rnn_classifier.config import DEFAULTS, ConfigError, TrainConfig, check_known_keys
from rnn_classifier.config import preset as config_preset

# Original grid key -> TrainConfig field, in the order of the folder name.
GRID_KEYS = {
    "batch_sizes": "batch_size",
    "dropouts": "dropout",
    "rnn_dims": "rnn_units",
    "gammas": "gamma",
    "learning_rates": "learning_rate",
    "reg_l2s": "l2",
    "final_dense_dims": "dense_units",
}
LOSS_ABBREVIATIONS = {"focal": "fl", "wce": "wce", "ce": "ce", "logit_adjusted": "la"}
RESULT_METRICS = ("val_macro_f1", "val_accuracy", "val_macro_auc",
                  "test_macro_f1", "test_accuracy", "test_macro_auc")


def read_grid(path: str | Path) -> tuple[dict[str, list], dict]:
    """Parse a grid YAML: ({config field: [values]}, {fixed config field: value})."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read grid file ({error})") from error
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of grid keys")
    values = dict(values)
    fixed = {}
    if "mask_val" in values:
        fixed["mask_value"] = float(values.pop("mask_val"))
    grid = {}
    for key, field in GRID_KEYS.items():
        if key in values:
            options = values.pop(key)
            options = options if isinstance(options, list) else [options]
            if not options:
                raise ConfigError(f"{path}: {key} is an empty list")
            grid[field] = options
    check_known_keys(values, f"{path} (grid keys are {sorted(GRID_KEYS)} and mask_val)")
    fixed.update(values)
    return grid, fixed


def parameter_folder_name(config: TrainConfig) -> str:
    """e.g. `32_0.2_25_1.0_0.0001_0.01_50`, the original's folder naming."""
    return "_".join(str(getattr(config, field)) for field in GRID_KEYS.values())


def _unique_folder(path: Path) -> Path:
    """`path`, or `path-2`, `path-3`... when a rerun in the same minute finds it taken."""
    candidate, suffix = path, 1
    while candidate.exists():
        suffix += 1
        candidate = path.with_name(f"{path.name}-{suffix}")
    return candidate


def run_grid(data_dir: str | Path, grid_file: str | Path, output_dir: str | Path,
             rnn_types: list[str], losses: list[str], mixed: bool = True,
             preset: str | None = None, log: Callable[[str], None] = print) -> list[Path]:
    """Train every combination for each RNN type and loss; return the result CSV paths.

    Every model starts from the defaults, or from config.PRESETS[preset]
    ("original" trains the original project's models), with the grid file's
    fixed settings applied.
    """
    from rnn_classifier.data import load_dataset
    from rnn_classifier.predict import load_trained_model
    from rnn_classifier.train import macro_scores, train

    grid, fixed = read_grid(grid_file)
    base = (config_preset(preset) if preset else DEFAULTS).replace(**fixed, mixed=mixed)
    for rnn_type, loss in itertools.product(rnn_types, losses):
        base.replace(rnn_type=rnn_type, loss=loss)  # fail fast on a bad name
    # Validate the data once, before any folder is created.
    test = load_dataset(data_dir, mixed=mixed, mask_value=base.mask_value)["test"]
    stamp = datetime.datetime.now()
    stamp = f"{stamp.year}-{stamp.month}-{stamp.day}-{stamp:%H%M}"
    results = []
    for rnn_type, loss in itertools.product(rnn_types, losses):
        group = _unique_folder(Path(output_dir) / f"{stamp}-{rnn_type}-{LOSS_ABBREVIATIONS[loss]}")
        group.mkdir(parents=True)
        fields = list(grid)
        # Gamma only matters to the focal loss: do not train duplicates for the others.
        options = [grid[f] if (f != "gamma" or loss == "focal") else [base.gamma] for f in fields]
        combinations = list(itertools.product(*options))
        rows = []
        for number, values in enumerate(combinations, 1):
            settings = dict(zip(fields, values, strict=True))
            config = base.replace(rnn_type=rnn_type, loss=loss, **settings)
            model_dir = group / parameter_folder_name(config)
            log(f"[{group.name} {number}/{len(combinations)}] {model_dir.name}")
            result = train(config, data_dir, model_dir, log=log)
            trained = load_trained_model(model_dir)
            proba = trained.predict_proba(test.time_features, test.contextual_features)
            test_scores = macro_scores(test.labels, proba)
            rows.append({
                **{field: getattr(config, field) for field in GRID_KEYS.values()},
                "model": model_dir.name, "best_epoch": result.best_epoch,
                "val_macro_f1": result.best_metrics["val_macro_f1"],
                "val_accuracy": result.best_metrics["val_accuracy"],
                "val_macro_auc": result.best_metrics["val_macro_auc"],
                "test_macro_f1": test_scores["macro_f1"],
                "test_accuracy": float(np.mean(proba.argmax(axis=1) == test.labels)),
                "test_macro_auc": test_scores["macro_auc"],
            })
        results_path = group / "training_results.csv"
        with results_path.open("w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        log(f"wrote {results_path}")
        results.append(results_path)
    return results
