"""What each step of the retraining pipeline does, behind one call per component.

Like `rnn_classifier.steps` (whose conventions it follows: artifacts used
only through `.path`, `.metadata` and `log_metric`; metrics also written to
the artifact's path), this module never imports kfp.

Every read and write of the bucket goes through `rnn_classifier.storage`,
so the same code runs on gs:// (the cluster, the emulator in tests) and on
local folders.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from rnn_classifier.data import SPLITS
from rnn_classifier.steps import _fmt, _log_metrics, _markdown_table


class DriftError(RuntimeError):
    """The new batches drifted beyond the threshold; the run stops before training."""


# --------------------------------------------------------------------------
# ingest
# --------------------------------------------------------------------------

def ingest_step(bucket_uri: str, mixed: bool, mask_value: float, dataset, metrics, report
                ) -> tuple[str, dict]:
    """Merge the reference and the batches into the Dataset artifact.

    Returns the dataset's URI (validate_data reads it like any data folder)
    and the data record (see `retrain.ingest`).
    """
    from rnn_classifier.retrain import ingest

    record = ingest(bucket_uri, dataset.path, mixed=mixed, mask_value=mask_value)
    dataset.metadata.update({key: record[key] for key in
                             ("reference", "batches", "new_batches", "latest_batch",
                              "read_at")})
    values = {f"{split}_examples": record["examples"][split] for split in SPLITS}
    values.update({"batches": len(record["batches"]),
                   "new_batches": len(record["new_batches"]),
                   "duplicates_removed": record["duplicates_removed"]})
    _log_metrics(metrics, values)
    rows = [[f"`{source['name']}`", "new" if source["new"] else
             ("reference" if source["name"] == "reference" else "seen by the champion"),
             *(source["rows"][split][1] - source["rows"][split][0] for split in SPLITS),
             " ".join(f"{split} {start}-{stop - 1}" if stop > start else f"{split} -"
                      for split, (start, stop) in source["rows"].items())]
            for source in record["sources"]]
    Path(report.path).write_text(
        f"# Ingest\n\nRead `{bucket_uri}` at {record['read_at']}: the reference and "
        f"{len(record['batches'])} batch(es), {len(record['new_batches'])} of them new "
        f"(not seen by the champion). {record['duplicates_removed']} duplicate row(s) "
        "removed (an object id keeps only its latest row).\n\n"
        + _markdown_table(["source", "status", *SPLITS, "rows in the merged dataset"], rows)
        + "\n")
    return dataset.uri, {key: value for key, value in record.items() if key != "sources"}


# --------------------------------------------------------------------------
# check_drift
# --------------------------------------------------------------------------

def drift_inputs(dataset_path: str | Path, mixed: bool, mask_value: float):
    """The merged dataset cut into (reference rows, {new batch: its rows}, class names)."""
    import numpy as np

    from rnn_classifier.data import load_dataset
    from rnn_classifier.drift import DriftData
    from rnn_classifier.retrain import SOURCES_FILE

    record = json.loads(Path(dataset_path, SOURCES_FILE).read_text())
    dataset = load_dataset(dataset_path, mixed=mixed, mask_value=mask_value)

    def rows_of(source: dict) -> DriftData:
        parts = []
        for split in SPLITS:
            data = dataset[split]
            start, stop = source["rows"][split]
            parts.append((data.time_features[start:stop],
                          None if data.contextual_features is None
                          else data.contextual_features[start:stop],
                          data.labels[start:stop]))
        context = None if not mixed else np.concatenate([part[1] for part in parts])
        return DriftData(np.concatenate([part[0] for part in parts]), context,
                         np.concatenate([part[2] for part in parts]))

    reference = rows_of(record["sources"][0])
    new = {source["name"]: rows_of(source) for source in record["sources"] if source["new"]}
    return reference, new, dataset.class_names


def check_drift_step(dataset_path: str, mixed: bool, mask_value: float, time_column: int,
                     threshold: float, metrics, report) -> dict[str, dict]:
    """Measure each new batch's drift against the reference; stop the run above `threshold`.

    Each new batch is judged on its own, so the report names the batch to
    look at. Metrics hold, per measure, the largest PSI over the new
    batches. The Metrics and Markdown are written first and the Markdown is
    also printed, so the figures are in the step's log even though a failed
    step does not publish its artifacts on the cluster.

    Raises:
        DriftError: some batch has a measure whose PSI is above the threshold
            (batch, measure and value named in the message).
    """
    from rnn_classifier import drift

    reference, new, class_names = drift_inputs(dataset_path, mixed, mask_value)
    reports = {name: drift.drift_report(reference, rows, class_names, mask_value=mask_value,
                                        time_column=time_column)
               for name, rows in new.items()}
    over = {name: drift.exceeded(result, threshold) for name, result in reports.items()}
    over = {name: measures for name, measures in over.items() if measures}
    values: dict[str, float] = {
        "new_batches": len(new), "new_examples": sum(len(rows) for rows in new.values()),
        "reference_examples": len(reference), "threshold": threshold,
        "max_psi": max((drift.max_psi(result) for result in reports.values()), default=0.0),
        "drifted_batches": len(over)}
    measures = list(dict.fromkeys(name for result in reports.values()
                                  for name in result["measures"]))
    for measure in measures:
        for statistic in ("psi", "ks"):
            found = [result["measures"][measure][statistic] for result in reports.values()
                     if statistic in result["measures"].get(measure, {})]
            if found:
                values[f"{statistic}_{measure}"] = max(found)
    tvds = [result["class_balance"]["tvd"] for result in reports.values()
            if result["class_balance"]]
    if tvds:
        values["class_balance_tvd"] = max(tvds)
    _log_metrics(metrics, values)

    if not new:
        verdict = "passed: no new batch, nothing to compare with the reference"
    elif over:
        verdict = ("**DRIFT** above the threshold " f"{threshold:g}: " + "; ".join(
            f"`{name}`: " + ", ".join(f"{measure} (PSI {value:.3f})"
                                      for measure, value in measures_over.items())
            for name, measures_over in over.items()) + ". The run stops before training.")
    else:
        verdict = f"passed: every PSI of every new batch is at most {threshold:g}"
    text = (f"# Drift of the new batches against the reference\n\n{verdict}\n\n"
            f"Reference: {len(reference)} examples. New batches: "
            + (", ".join(f"`{name}` ({len(rows)} examples)" for name, rows in new.items())
               or "none") + ".\n\n")
    if reports:
        names = list(reports)
        rows = []
        for measure in measures:
            cells = []
            for name in names:
                figures = reports[name]["measures"].get(measure)
                flag = " **DRIFT**" if measure in over.get(name, {}) else ""
                cells.append("-" if figures is None else
                             f"{figures['psi']:.3f} (KS {_fmt(figures.get('ks'))}){flag}"
                             if "ks" in figures else f"{figures['psi']:.3f}{flag}")
            medians = [reports[name]["measures"].get(measure, {}).get("reference_median")
                       for name in names]
            rows.append([measure, _fmt(next((m for m in medians if m is not None), None)),
                         *cells])
        text += "PSI (and KS statistic) of each new batch against the reference:\n\n"
        text += _markdown_table(["measure", "reference median",
                                 *(f"`{name}`" for name in names)], rows) + "\n\n"
        balances = [reports[name]["class_balance"] for name in names]
        if all(balances):
            text += _markdown_table(
                ["class", "reference share", *(f"`{name}` share" for name in names)],
                [[cls, f"{balances[0]['reference'][cls]:.3f}",
                  *(f"{balance['new'][cls]:.3f}" for balance in balances)]
                 for cls in class_names])
            text += ("\n\nClass-balance total variation distance: "
                     + ", ".join(f"`{name}` {balance['tvd']:.3f}"
                                 for name, balance in zip(names, balances, strict=True))
                     + ".\n\n")
    text += ("PSI below 0.1: no shift; 0.1 to 0.25: moderate; above 0.25: significant. "
             "Measures: time_feature_i at real steps (the time column is left out), "
             "contextual_feature_j, class_balance, observations per light curve, cadence "
             "(time between observations, with a time column).\n")
    Path(report.path).write_text(text)
    print(text, flush=True)
    if over:
        raise DriftError(f"data drift above the threshold {threshold:g}: " + "; ".join(
            f"batch {name}: " + ", ".join(f"{measure} PSI {value:.3f}"
                                         for measure, value in measures_over.items())
            for name, measures_over in over.items())
            + ". Inspect the batch, then fix or remove it (or raise drift_threshold)")
    return reports


# --------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------

def compare_step(dataset_path: str, model_path: str, bucket_uri: str, metric: str,
                 min_delta: float, recall_tolerance: float, metrics, report,
                 replace_unusable_champion: bool = False) -> tuple[bool, str, str, dict]:
    """Score challenger and champion on the same test split and apply the promotion rule.

    Returns (promote, reason, champion generation read (a string: it can
    exceed what a pipeline number holds exactly), decision dict). A
    champion that cannot be used on this data at all (a damaged or missing
    model folder, other classes or feature widths) stops the step with a
    DataError naming the file, so the pointer stays as it is and a person
    looks; with `replace_unusable_champion` it is treated as absent instead
    and the decision records why. Any other storage failure fails the step.
    """
    import numpy as np

    from rnn_classifier.data import DataError, load_array
    from rnn_classifier.retrain import decide, rare_classes, read_champion, score_model, scores
    from rnn_classifier.storage import StorageNotFound, download_folder

    challenger = scores(score_model(model_path, dataset_path))
    class_names = list(challenger["recall"])
    train_labels = load_array(Path(dataset_path, "train_labels.npy"), (1, 2), "labels")
    train_labels = train_labels.argmax(axis=1) if train_labels.ndim == 2 else train_labels
    rare = rare_classes(np.asarray(train_labels), class_names)

    champion_pointer, generation = read_champion(bucket_uri)
    champion, unusable = None, None
    if champion_pointer is not None:
        with tempfile.TemporaryDirectory(prefix="rnn-champion-") as local:
            try:
                download_folder(champion_pointer["model_uri"], local)
                champion = scores(score_model(local, dataset_path))
            except (DataError, StorageNotFound) as error:
                unusable = str(error).replace(local, champion_pointer["model_uri"])
    if unusable and not replace_unusable_champion:
        raise DataError(f"the champion cannot be used: {unusable}. models/champion.json is "
                        "unchanged; repair or remove it, or run with "
                        "replace_unusable_champion=true to treat it as absent")
    decision = decide(challenger, champion, metric, min_delta, recall_tolerance, rare)
    if unusable:
        decision.promote = True
        decision.reason = (f"the champion cannot be scored on this data ({unusable}): "
                           "replace_unusable_champion is set, so the challenger replaces it")
    result = decision.to_dict()
    result["champion_unusable"] = unusable
    result["champion_run"] = champion_pointer.get("run") if champion_pointer else None
    result["champion_model_uri"] = champion_pointer["model_uri"] if champion_pointer else None
    result["champion_generation"] = str(generation)

    values: dict[str, float] = {"promote": float(decision.promote), "min_delta": min_delta,
                                "recall_tolerance": recall_tolerance}
    for who, figures in (("challenger", challenger), ("champion", champion)):
        if figures is None:
            continue
        for name in (metric, *(m for m in ("accuracy", "balanced_accuracy", "macro_f1",
                                           "macro_roc_auc", "ece") if m != metric)):
            if figures[name] is not None:
                values[f"{who}_{name}"] = figures[name]
        for name, recall in figures["recall"].items():
            if recall is not None:
                values[f"{who}_recall_{name}"] = recall
    if decision.improvement is not None:
        values["improvement"] = decision.improvement
    _log_metrics(metrics, values)
    Path(report.path).write_text(decision_markdown(result))
    return decision.promote, decision.reason, str(generation), without_none(result)


def without_none(value: Any) -> Any:
    """`value` with every None (and the key holding it) removed.

    A dict output parameter travels as a protobuf Struct, and kfp.local
    cannot build a Struct holding null: an absent key means "none" instead.
    """
    if isinstance(value, dict):
        return {key: without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_none(item) for item in value if item is not None]
    return value


def decision_markdown(result: dict) -> str:
    """The decision and the figures behind it, as Markdown."""
    challenger, champion = result["challenger"], result["champion"]
    metric = result["metric"]
    verdict = "PROMOTE" if result["promote"] else "KEEP THE CHAMPION"
    lines = [f"# Challenger against champion: {verdict}", "", result["reason"], ""]
    if champion is None:
        lines += ["No champion to compare with. Challenger on the test split:", ""]
    else:
        lines += [f"Both models scored on the same test split (champion: "
                  f"`{result['champion_run']}`).", ""]

    def cell(figures, name, recall=False):
        if figures is None:
            return "-"
        return _fmt(figures["recall"].get(name) if recall else figures[name])

    rows = []
    for name in ("accuracy", "balanced_accuracy", "macro_f1", "macro_roc_auc", "ece"):
        change = "-"
        if champion is not None and challenger[name] is not None and champion[name] is not None:
            change = f"{challenger[name] - champion[name]:+.4f}"
        rule = f"must improve by >= {result['min_delta']:g}" if name == metric else ""
        rows.append([f"**{name}**" if name == metric else name, cell(champion, name),
                     cell(challenger, name), change, rule])
    for name in challenger["recall"]:
        change = "-"
        if champion is not None and None not in (champion["recall"].get(name),
                                                 challenger["recall"].get(name)):
            change = f"{challenger['recall'][name] - champion['recall'][name]:+.4f}"
        rule = (f"may drop by <= {result['recall_tolerance']:g}"
                if name in result["rare_classes"] else "")
        rows.append([f"recall {name} (support {challenger['support'][name]})",
                     cell(champion, name, True), cell(challenger, name, True), change, rule])
    lines.append(_markdown_table(["figure", "champion", "challenger", "change", "rule"], rows))
    lines += ["", f"Rare classes (every class but the most frequent in train): "
              f"{', '.join(result['rare_classes']) or 'none'}."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# publish_model, promote, record_decision
# --------------------------------------------------------------------------

def run_folder_name(read_at: str, run_id: str) -> str:
    """`models/<run>` folder name: the time the data was read, then the run id's start."""
    stamp = read_at.replace("-", "").replace(":", "")
    return f"{stamp}-{run_id.replace('-', '')[:8]}"


def _counts_as_ints(record: dict) -> dict:
    """Counts back to ints: a dict parameter carries every number as a float."""
    record = json.loads(json.dumps(record))
    for key in ("examples", "support"):
        if isinstance(record.get(key), dict):
            record[key] = {name: int(value) for name, value in record[key].items()}
    if "duplicates_removed" in record:
        record["duplicates_removed"] = int(record["duplicates_removed"])
    for key in ("challenger", "champion"):
        if isinstance(record.get(key), dict):
            record[key] = _counts_as_ints(record[key])
    return record


def publish_step(model_path: str, bucket_uri: str, run_id: str, data_record: dict,
                 decision: dict) -> tuple[str, str]:
    """Copy the challenger's model folder and its figures to models/<run>/.

    Every challenger is published, promoted or not: models/<run>/model/,
    metrics.json (its test scores) and decision.json (the comparison and the
    data it was trained on). Returns (model URI, run folder name).
    """
    from rnn_classifier.retrain import MODELS, join, now_utc
    from rnn_classifier.storage import upload_folder, write_json

    data_record, decision = _counts_as_ints(data_record), _counts_as_ints(decision)
    name = run_folder_name(data_record["read_at"], run_id)
    folder = join(bucket_uri, MODELS, name)
    model_uri = join(folder, "model")
    # model.keras last: its presence marks a complete model folder (promote checks it).
    upload_folder(model_path, model_uri, last=["model.keras"])
    write_json(join(folder, "metrics.json"), decision["challenger"])
    write_json(join(folder, "decision.json"), {
        "run": name, "run_id": run_id, "published_at": now_utc(), "model_uri": model_uri,
        "decision": decision, "data": data_record})
    return model_uri, name


def _last_decision(run_name: str, decision: dict) -> dict[str, Any]:
    from rnn_classifier.retrain import now_utc

    return {"run": run_name, "promoted": decision["promote"], "reason": decision["reason"],
            "at": now_utc(), "metric": decision["metric"],
            "min_delta": decision["min_delta"], "recall_tolerance": decision["recall_tolerance"],
            "challenger": _figures(decision["challenger"]),
            "champion": _figures(decision.get("champion")),
            "champion_run": decision.get("champion_run")}


def _figures(scores: dict | None) -> dict | None:
    if scores is None:
        return None
    return {**{name: value for name, value in scores.items() if name != "support"}}


def promote_step(bucket_uri: str, model_uri: str, run_name: str, run_id: str,
                 champion_generation: str, decision: dict, data_record: dict) -> dict:
    """Point models/champion.json at the published challenger (compare-and-swap).

    Raises:
        StorageConflict: the pointer changed since compare read it.
        StorageError: the published model is missing.
    """
    from rnn_classifier.retrain import join, now_utc, write_champion
    from rnn_classifier.storage import StorageError, exists

    data_record, decision = _counts_as_ints(data_record), _counts_as_ints(decision)
    if not exists(join(model_uri, "model.keras")):
        raise StorageError(f"{model_uri}/model.keras: the published model is missing; the "
                           "pointer was left as it is")
    pointer = {
        "model_uri": model_uri,
        "run": run_name,
        "run_id": run_id,
        "promoted_at": now_utc(),
        "reason": decision["reason"],
        "metric": decision["metric"],
        "metrics": _figures(decision["challenger"]),
        "data": data_record,
        "replaced": None if decision.get("champion_run") is None else {
            "run": decision["champion_run"], "model_uri": decision["champion_model_uri"],
            "metrics_on_the_same_test_split": _figures(decision.get("champion"))},
        "last_decision": _last_decision(run_name, decision),
    }
    write_champion(bucket_uri, pointer, int(champion_generation))
    print(f"champion is now {model_uri}: {decision['reason']}", flush=True)
    return pointer


def record_decision_step(bucket_uri: str, run_name: str, champion_generation: str,
                         decision: dict) -> dict:
    """Record a refused challenger in the pointer's `last_decision` (compare-and-swap).

    The champion itself (model, metrics, data) is unchanged.
    """
    from rnn_classifier.retrain import read_champion, write_champion
    from rnn_classifier.storage import StorageConflict

    pointer, generation = read_champion(bucket_uri)
    if pointer is None or generation != int(champion_generation):
        raise StorageConflict(f"the champion pointer changed since compare read it (generation "
                              f"{champion_generation}, now {generation}); nothing was recorded")
    pointer["last_decision"] = _last_decision(run_name, decision)
    write_champion(bucket_uri, pointer, generation)
    print(f"champion kept: {decision['reason']}", flush=True)
    return pointer
