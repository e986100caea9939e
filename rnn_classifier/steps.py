"""What each Kubeflow pipeline step does, behind one call per component.

The components in `components/` are thin definitions: each imports one of
these functions and calls it with its KFP artifacts. The artifacts are only
used through their `.path`, `.metadata`, `log_metric`, `log_confusion_matrix`
and `log_roc_curve`, so this module never imports kfp and is tested with
plain stand-ins.

Metrics are also written as JSON to each metrics artifact's path: the KFP UI
reads the logged values, and `kfp.local`'s cache only reuses a step whose
output files exist.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from rnn_classifier.config import TrainConfig, field_names
from rnn_classifier.data import CLASSES_FILE, KINDS, SPLITS, DataError, load_dataset, summarise


def contract_file_names(mixed: bool) -> list[str]:
    """The data contract's file names (contextual files only when mixed)."""
    kinds = [kind for kind in KINDS if mixed or kind != "contextual_features"]
    return [f"{split}_{kind}.npy" for split in SPLITS for kind in kinds] + [CLASSES_FILE]


def _log_metrics(artifact, values: dict[str, float]) -> None:
    for name, value in values.items():
        artifact.log_metric(name, float(value))
    Path(artifact.path).parent.mkdir(parents=True, exist_ok=True)
    Path(artifact.path).write_text(json.dumps(values, indent=2, allow_nan=False))


def _markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fingerprint_step(data_uri: str) -> str:
    """The content fingerprint of a data folder's contract files (storage.fingerprint)."""
    from rnn_classifier.storage import fingerprint

    return fingerprint(data_uri, contract_file_names(mixed=True))


def validate_step(data_uri: str, mixed: bool, mask_value: float, dataset, metrics,
                  report, data_fingerprint: str = "") -> dict[str, float]:
    """Fetch the data (local or gs://), validate it, and publish it as the step's Dataset.

    `data_fingerprint` (from fingerprint_step) is recorded in the Dataset's
    metadata, so the artifact says which version of the data it holds.

    Raises DataError, with the file and the problem named, when the data is
    invalid; the Dataset artifact is then left empty.
    """
    from rnn_classifier.storage import copy_folder

    names = contract_file_names(mixed)
    with tempfile.TemporaryDirectory(prefix="rnn-validate-") as staging:
        copy_folder(data_uri, staging, names)
        try:
            loaded = load_dataset(staging, mixed=mixed, mask_value=mask_value)
        except DataError as error:
            # Name the file where the user keeps it, not the staging copy.
            raise DataError(str(error).replace(staging, str(data_uri).rstrip("/"))) from None
        summary = summarise(loaded, mask_value)
        # Only validated data reaches the Dataset artifact.
        copy_folder(staging, dataset.path, names)
    # The data files are copied even when classes.txt is absent, so downstream
    # steps always see the class names the validation used.
    Path(dataset.path, CLASSES_FILE).write_text("\n".join(loaded.class_names) + "\n")
    dataset.metadata.update({"source": data_uri, "classes": loaded.class_names,
                             "mixed": mixed, "data_fingerprint": data_fingerprint})

    values: dict[str, float] = {}
    for split, figures in summary["splits"].items():
        values[f"{split}_examples"] = figures["examples"]
        for name, count in figures["per_class"].items():
            values[f"{split}_count_{name}"] = count
        values[f"{split}_imbalance_ratio"] = figures["imbalance_ratio"]
        for quantile, length in figures["observations_quantiles"].items():
            values[f"{split}_observations_q{quantile}"] = length
    train = summary["splits"]["train"]
    values["time_feature_width"] = train["time_feature_width"]
    if train["contextual_feature_width"] is not None:
        values["contextual_feature_width"] = train["contextual_feature_width"]
    _log_metrics(metrics, values)

    rows = [[split, figures["examples"], *figures["per_class"].values(),
             f"{figures['imbalance_ratio']:.1f}", figures["observations_quantiles"]["0.5"]]
            for split, figures in summary["splits"].items()]
    Path(report.path).write_text(
        f"# Data validation: passed\n\nSource: `{data_uri}`\n\n"
        + _markdown_table(["split", "examples", *loaded.class_names, "imbalance",
                           "median observations"], rows)
        + f"\n\nTime features per observation: {train['time_feature_width']}; "
        f"contextual features: {train['contextual_feature_width']}\n")
    return values


def train_step(dataset_path: str, hyperparameters: dict[str, Any], model, metrics
               ) -> dict[str, float]:
    """Train on the validated dataset; the model folder becomes the Model artifact.

    `hyperparameters` may hold other names too (a component passes its
    `locals()`); only TrainConfig fields are used.
    """
    from rnn_classifier.train import HISTORY_KEYS, train

    started = time.monotonic()
    config = TrainConfig(**{name: hyperparameters[name] for name in field_names()})
    result = train(config, dataset_path, model.path)
    model.metadata.update({"framework": "keras", "best_epoch": result.best_epoch,
                           **{name: value for name, value in config.to_dict().items()}})
    values = {name: result.best_metrics[name] for name in HISTORY_KEYS}
    values["best_epoch"] = result.best_epoch
    values["epochs_run"] = result.epochs_run
    # Whole step (loading, scaling, training, saving): benchmarks/performance.py
    # subtracts it from the pipeline's wall time to measure the pipeline's overhead.
    values["step_seconds"] = round(time.monotonic() - started, 3)
    _log_metrics(metrics, values)
    return values


def _roc_class(test_metrics: dict, class_names: list[str]) -> str:
    """The class whose ROC curve the KFP widget shows: positive class, else the rarest."""
    if len(class_names) == 2:
        return class_names[1]
    supports = {name: test_metrics["per_class"][name]["support"] for name in class_names}
    return min((name for name in class_names if supports[name] > 0), key=supports.get)


def evaluate_step(dataset_path: str, model_path: str, metrics, classification_metrics,
                  html, markdown) -> dict[str, float]:
    """Evaluate on the test split; publish scalars, confusion matrix, ROC, HTML and Markdown."""
    from rnn_classifier.evaluate import evaluate_model

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rnn-evaluate-") as output_dir:
        result = evaluate_model(model_path, dataset_path, output_dir)
        Path(html.path).parent.mkdir(parents=True, exist_ok=True)
        Path(html.path).write_text(Path(output_dir, "report.html").read_text())
    test = result["test"]
    class_names = test["confusion_matrix"]["labels"]

    values = {f"test_{name}": test[name] for name in
              ("accuracy", "balanced_accuracy", "macro_f1", "macro_roc_auc", "ece")}
    for name in class_names:
        recall = test["per_class"][name]["recall"]
        if recall is not None:
            values[f"test_recall_{name}"] = recall
    values = {name: value for name, value in values.items() if value is not None}
    values["step_seconds"] = round(time.monotonic() - started, 3)
    _log_metrics(metrics, values)

    classification_metrics.log_confusion_matrix(class_names, test["confusion_matrix"]["counts"])
    roc_class = _roc_class(test, class_names)
    roc = test["roc_curves"][roc_class]
    classification_metrics.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
    classification_metrics.metadata["roc_class"] = roc_class
    Path(classification_metrics.path).write_text(json.dumps(
        {"confusion_matrix": test["confusion_matrix"], "roc_class": roc_class, "roc": roc}))

    per_class = [[name, test["per_class"][name]["support"],
                  _fmt(test["per_class"][name]["precision"]),
                  _fmt(test["per_class"][name]["recall"]),
                  _fmt(test["per_class"][name]["roc_auc"])] for name in class_names]
    Path(markdown.path).write_text(
        "# Test-set evaluation\n\n"
        + _markdown_table(["accuracy", "balanced accuracy", "macro-F1", "macro ROC-AUC", "ECE"],
                          [[_fmt(test[name]) for name in ("accuracy", "balanced_accuracy",
                                                          "macro_f1", "macro_roc_auc", "ece")]])
        + "\n\n" + _markdown_table(["class", "support", "precision", "recall", "ROC-AUC"],
                                   per_class)
        + f"\n\nROC curve shown in the UI: {roc_class} against the rest. "
        "The full report (confusion matrices, AUC against number of observations, PR curves, "
        "reliability) is the HTML artifact.\n")
    return values


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def tune_step(dataset_uri: str, dataset_path: str, arguments: dict[str, Any], experiment,
              metrics) -> tuple:
    """Sweep the search space; return the best values in SEARCH_SPACE order.

    `arguments` holds the component's inputs: every TrainConfig field (the
    values held fixed; the searched ones are returned as they are when
    `sweep` is off) and the sweep settings (sweep, on_cluster, namespace,
    algorithm, max_trials, parallel_trials, timeout_hours, trial_image,
    trial_gpu, and optionally trial_scheduling (katib.build_experiment's
    `scheduling`) and delete_experiment). The Experiment's name comes from
    these inputs, so a retried step adopts the Experiment it created.

    Raises:
        TuningError: the Experiment failed or timed out (Katib's reason is in
            the message), or no trial succeeded.
    """
    from rnn_classifier.katib import build_experiment, validate_experiment, write_manifest
    from rnn_classifier.search_space import DEFAULT_MAX_FAILED_TRIALS, SEARCH_SPACE
    from rnn_classifier.tuning import (
        TuningError,
        current_namespace,
        custom_objects_api,
        experiment_name,
        run_experiment,
        typed_assignments,
    )

    config = TrainConfig(**{name: arguments[name] for name in field_names()})
    given = tuple(getattr(config, parameter.name) for parameter in SEARCH_SPACE)
    if not arguments["sweep"]:
        Path(experiment.path).write_text("# sweep off: no Katib Experiment was run\n")
        _log_metrics(metrics, {})
        return given
    on_cluster = arguments["on_cluster"]
    manifest = build_experiment(
        name=experiment_name(dataset_uri, {key: value for key, value in arguments.items()
                                           if key != "api_server"}),
        namespace=current_namespace(arguments["namespace"]) if on_cluster else "local",
        image=arguments["trial_image"], data_uri=dataset_uri,
        algorithm=arguments["algorithm"], max_trials=arguments["max_trials"],
        parallel_trials=arguments["parallel_trials"], gpu=arguments["trial_gpu"],
        max_failed_trials=min(DEFAULT_MAX_FAILED_TRIALS, arguments["max_trials"]),
        fixed=config.to_dict(), scheduling=arguments.get("trial_scheduling"))
    # Trials on the cluster read the data from Cloud Storage, so there the
    # project rules (a gs:// --data-dir among them) must hold; a local sweep
    # reads the local dataset folder instead.
    problems = validate_experiment(manifest, project_rules=on_cluster)
    if problems:
        raise TuningError("the generated Katib Experiment is invalid:\n" + "\n".join(problems))
    write_manifest(manifest, experiment.path)
    experiment.metadata.update({"name": manifest["metadata"]["name"], "on_cluster": on_cluster})

    if on_cluster:
        best = run_experiment(manifest, manifest["metadata"]["namespace"],
                              custom_objects_api(arguments.get("api_server", "")),
                              timeout_s=arguments["timeout_hours"] * 3600,
                              delete_when_done=arguments.get("delete_experiment", True))
        parameters, values = best["parameters"], best["metrics"]
    else:
        from rnn_classifier.sweep import parse_experiment, run_sweep

        with tempfile.TemporaryDirectory(prefix="rnn-sweep-") as output_dir:
            result = run_sweep(parse_experiment(manifest), dataset_path,
                               Path(output_dir) / "sweep")
        if result.best is None:
            raise TuningError(f"no local trial succeeded ({result.stopped_because})")
        parameters = typed_assignments([{"name": name, "value": value} for name, value
                                        in result.best.parameters.items()])
        values = dict(result.best.metrics)
        values["trials"] = len(result.trials)
    _log_metrics(metrics, {f"best_{name}" if not name.startswith("best_") and name != "trials"
                           else name: value for name, value in values.items()})
    best_values = {**{p.name: getattr(config, p.name) for p in SEARCH_SPACE}, **parameters}
    return tuple(best_values[p.name] for p in SEARCH_SPACE)
