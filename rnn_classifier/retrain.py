"""Retraining on new labelled batches: bucket layout, ingest, the promotion rule, the champion.

Bucket layout (every path below `bucket_uri`, a `gs://BUCKET` or a local folder)::

    survey/reference/            the reference training set (nine-file contract)
    survey/batches/<date>/       new labelled batches, same contract, optional ids.npy
    models/<run>/model/          every trained challenger's model folder
    models/<run>/metrics.json    its test metrics
    models/<run>/decision.json   the comparison with the champion and the data it saw
    models/champion.json         the pointer: the model in use, its metrics, why, from which data

A batch folder is named by the date it was labelled, `YYYY-MM-DD`, optionally
followed by a suffix (`2026-11-01-north`); names sort in time order. Its
optional `ids.npy` holds one object id per row, train rows first, then
validation, then test; an object that occurs again in a later batch (or in a
batch after the reference) is kept only where it occurs last, so the same
light curve can never sit in train and in test at once.

The training set is the reference plus every batch (de-duplicated). The
batches the champion has not seen are the *new* ones: drift is measured on
them, and the pointer records which batches each champion was trained on.

The champion pointer is one JSON object, replaced with a generation
precondition (compare-and-swap): a promotion computed against one version of
the pointer never overwrites another, it fails with StorageConflict.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from rnn_classifier.data import (
    CLASSES_FILE,
    SPLITS,
    DataError,
    data_path,
    load_array,
    write_dataset,
)

REFERENCE = "survey/reference"
BATCHES = "survey/batches"
MODELS = "models"
CHAMPION = "models/champion.json"
IDS_FILE = "ids.npy"
SOURCES_FILE = "sources.json"
BATCH_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})([-_.T][A-Za-z0-9_.-]*)?$")

# The scores a promotion can be judged on, and whether higher is better.
PROMOTION_METRICS = {"accuracy": True, "balanced_accuracy": True, "macro_f1": True,
                     "macro_roc_auc": True, "ece": False}
DEFAULT_PROMOTION_METRIC = "macro_roc_auc"
DEFAULT_MIN_DELTA = 0.005
DEFAULT_RECALL_TOLERANCE = 0.05


def join(base: str, *parts: str) -> str:
    """`base/part/...` for a gs:// URI or a local path."""
    from rnn_classifier.storage import join_uri

    return join_uri(base, *parts)


def now_utc() -> str:
    """The current UTC time, ISO 8601 to the second (`2026-11-01T06:00:12Z`)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _last_name(entry: str) -> str:
    return str(entry).rstrip("/").rsplit("/", 1)[-1]


# --------------------------------------------------------------------------
# The champion pointer
# --------------------------------------------------------------------------

def read_champion(bucket_uri: str) -> tuple[dict | None, int]:
    """The champion pointer and its generation ((None, 0) when there is none yet)."""
    from rnn_classifier.storage import read_json

    return read_json(join(bucket_uri, CHAMPION))


def write_champion(bucket_uri: str, pointer: dict, generation: int) -> None:
    """Replace the pointer only if it is still at `generation` (0: only if absent).

    Raises:
        StorageConflict: someone changed the pointer since it was read; the
            message says so and nothing is written.
    """
    from rnn_classifier.storage import StorageConflict, write_json

    uri = join(bucket_uri, CHAMPION)
    try:
        write_json(uri, pointer, if_generation_match=generation)
    except StorageConflict as error:
        raise StorageConflict(
            f"{uri} changed since this run compared its challenger with it (read at "
            f"generation {generation}); the pointer was left as it is. Rerun to compare "
            f"with the current champion. ({error})") from error


# --------------------------------------------------------------------------
# Ingest
# --------------------------------------------------------------------------

def list_batches(bucket_uri: str) -> list[str]:
    """Batch folder names under survey/batches/, oldest first.

    Raises DataError for a folder that is not named by date, rather than
    silently leaving out data someone meant to add.
    """
    from rnn_classifier.storage import list_folders

    batches_uri = join(bucket_uri, BATCHES)
    names = sorted(_last_name(entry) for entry in list_folders(batches_uri))
    for name in names:
        match = BATCH_NAME.match(name)
        try:
            valid = match is not None and datetime.strptime(match.group(1), "%Y-%m-%d")
        except ValueError:
            valid = False
        if not valid:
            raise DataError(f"{join(batches_uri, name)}/: a batch folder must be named by "
                            "date, YYYY-MM-DD with an optional suffix (e.g. 2026-11-01 or "
                            "2026-11-01-north); rename it so it is ingested in date order")
    return names


def new_batches(batches: list[str], champion: dict | None) -> list[str]:
    """The batches the champion was not trained on (all of them without a champion)."""
    if champion is None:
        return list(batches)
    data = champion.get("data") or {}
    if "batches" in data:
        seen = set(data["batches"])
        return [name for name in batches if name not in seen]
    latest = data.get("latest_batch") or ""
    return [name for name in batches if name > latest]


@dataclasses.dataclass
class Source:
    """One data folder read for merging: arrays per split, optional ids and class names."""

    name: str
    uri: str
    arrays: dict[str, dict[str, np.ndarray]]
    ids: np.ndarray | None
    class_names: list[str] | None
    new: bool = False

    def rows(self, split: str) -> int:
        return len(self.arrays[split]["labels"])


def _kinds(mixed: bool) -> tuple[str, ...]:
    return ("time_features", "contextual_features", "labels") if mixed else (
        "time_features", "labels")


def _load_ids(path: Path, n_rows: int) -> np.ndarray:
    try:
        ids = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError) as error:
        reason = " ".join(str(error).split())
        raise DataError(f"{path}: not a readable .npy array of ids ({reason})") from error
    if ids.ndim != 1 or ids.dtype.kind not in "iuUS":
        raise DataError(f"{path}: has shape {ids.shape} and dtype {ids.dtype}; expected a 1-D "
                        "array of integer or string object ids")
    if len(ids) != n_rows:
        raise DataError(f"{path}: holds {len(ids)} ids but the folder has {n_rows} rows; "
                        "expected one id per row, train rows first, then validation, then test")
    return np.asarray(ids)


def read_source(local_dir: Path, name: str, uri: str, mixed: bool) -> Source:
    """Read a downloaded contract folder with the header-checked loader (never unpickles).

    Only what merging needs is checked here (readable arrays, one row count
    per split); the contract itself is checked on the merged dataset by
    validate_data. Messages name `uri`, not the local copy.
    """
    try:
        arrays: dict[str, dict[str, np.ndarray]] = {}
        for split in SPLITS:
            arrays[split] = {}
            for kind in _kinds(mixed):
                ndim = {"time_features": (3,), "contextual_features": (2,),
                        "labels": (1, 2)}[kind]
                arrays[split][kind] = load_array(data_path(local_dir, split, kind), ndim,
                                                 kind.replace("_", " "))
            lengths = {kind: len(array) for kind, array in arrays[split].items()}
            if len(set(lengths.values())) > 1:
                raise DataError(f"{data_path(local_dir, split, 'labels')}: the {split} files "
                                f"have different row counts {lengths}; every file of a split "
                                "needs the same N")
        n_rows = sum(len(arrays[split]["labels"]) for split in SPLITS)
        ids_path = local_dir / IDS_FILE
        ids = _load_ids(ids_path, n_rows) if ids_path.exists() else None
        classes_path = local_dir / CLASSES_FILE
        class_names = None
        if classes_path.exists():
            class_names = [line.strip() for line in classes_path.read_text().splitlines()
                           if line.strip()]
    except DataError as error:
        raise DataError(str(error).replace(str(local_dir), uri)) from error
    return Source(name, uri, arrays, ids, class_names)


def _check_compatible(reference: Source, source: Source) -> None:
    """Feature widths, label format and class names must match the reference's."""
    for kind in reference.arrays["train"]:
        expected = reference.arrays["train"][kind]
        for split in SPLITS:
            array = source.arrays[split][kind]
            problem = None
            if array.ndim != expected.ndim:
                problem = f"has rank {array.ndim}, the reference's has {expected.ndim}"
            elif kind != "labels" or array.ndim == 2:
                if array.shape[-1] != expected.shape[-1]:
                    problem = (f"has width {array.shape[-1]}, the reference's has "
                               f"{expected.shape[-1]}")
            if problem:
                raise DataError(f"{join(source.uri, data_path('', split, kind).name)}: "
                                f"{problem}; a batch must follow the reference's contract")
    if (source.class_names is not None and reference.class_names is not None
            and source.class_names != reference.class_names):
        raise DataError(f"{join(source.uri, CLASSES_FILE)}: names the classes "
                        f"{source.class_names}, the reference names {reference.class_names}; "
                        "a batch must use the reference's classes in the same order")


def deduplicate(sources: list[Source]) -> tuple[dict[str, dict[str, np.ndarray]], int]:
    """Rows to keep per source and split: an id is kept only where it occurs last.

    Sources are in time order (reference first). Rows of a source without
    ids are always kept. Returns ({source name: {split: bool mask}}, number
    of rows dropped).
    """
    keep = {source.name: {split: np.ones(source.rows(split), dtype=bool) for split in SPLITS}
            for source in sources}
    owner: dict[str, tuple[str, str, int]] = {}
    dropped = 0
    for source in sources:
        if source.ids is None:
            continue
        offset = 0
        for split in SPLITS:
            for row in range(source.rows(split)):
                key = str(source.ids[offset + row])
                if key in owner:
                    name, earlier_split, earlier_row = owner[key]
                    keep[name][earlier_split][earlier_row] = False
                    dropped += 1
                owner[key] = (source.name, split, row)
            offset += source.rows(split)
    return keep, dropped


def _pad_steps(array: np.ndarray, steps: int, mask_value: float) -> np.ndarray:
    if array.shape[1] == steps:
        return array
    padded = np.full((array.shape[0], steps, array.shape[2]), mask_value, dtype=array.dtype)
    padded[:, :array.shape[1]] = array
    return padded


def merge(sources: list[Source], mask_value: float) -> tuple[dict, list[dict], int]:
    """Concatenate the sources per split after de-duplication.

    Sequences are padded to the longest source's number of steps. Each
    source's kept rows form one contiguous block of every split, recorded in
    the returned source list as `rows: {split: [start, stop]}`.
    """
    for source in sources[1:]:
        _check_compatible(sources[0], source)
    keep, dropped = deduplicate(sources)
    steps = max(source.arrays[split]["time_features"].shape[1]
                for source in sources for split in SPLITS)
    merged: dict[str, dict[str, np.ndarray]] = {}
    records = [{"name": source.name, "uri": source.uri, "new": source.new, "rows": {}}
               for source in sources]
    for split in SPLITS:
        parts: dict[str, list[np.ndarray]] = {kind: [] for kind in sources[0].arrays[split]}
        start = 0
        for source, record in zip(sources, records, strict=True):
            mask = keep[source.name][split]
            for kind, array in source.arrays[split].items():
                array = array[mask]
                if kind == "time_features":
                    array = _pad_steps(array, steps, mask_value)
                parts[kind].append(array)
            record["rows"][split] = [start, start + int(mask.sum())]
            start += int(mask.sum())
        merged[split] = {kind: np.concatenate(arrays) for kind, arrays in parts.items()}
    return merged, records, dropped


def ingest(bucket_uri: str, output_dir: str | Path, mixed: bool = True,
           mask_value: float = -99.0) -> dict[str, Any]:
    """Merge the reference and every batch into one contract folder.

    Writes the nine files, classes.txt (when the reference or a batch names
    the classes) and sources.json (which rows came from where) into
    `output_dir`, and returns the data record that the champion pointer keeps:
    reference URI, batches, new batches, latest batch, time read, examples
    per split, rows per source, duplicates removed.

    Raises:
        DataError: the reference is missing, a batch folder is misnamed, a
            file cannot be read or does not fit the reference's shapes.
        StorageError: the bucket cannot be read.
    """
    from rnn_classifier.storage import StorageNotFound, download_folder

    read_at = now_utc()
    champion, _ = read_champion(bucket_uri)
    batches = list_batches(bucket_uri)
    unseen = set(new_batches(batches, champion))
    names = [f"{split}_{kind}.npy" for split in SPLITS for kind in _kinds(mixed)]
    names += [CLASSES_FILE, IDS_FILE]
    sources = []
    with tempfile.TemporaryDirectory(prefix="rnn-ingest-") as staging:
        folders = [("reference", join(bucket_uri, REFERENCE))]
        folders += [(name, join(bucket_uri, BATCHES, name)) for name in batches]
        for index, (name, uri) in enumerate(folders):
            local = Path(staging) / str(index)
            local.mkdir()
            try:
                download_folder(uri, local, names)
            except StorageNotFound:
                if index:
                    raise
                raise DataError(f"{uri}/: no reference set here; upload the nine contract "
                                "files {train,validation,test}_{time_features,"
                                "contextual_features,labels}.npy (and classes.txt) "
                                "first") from None
            source = read_source(local, name, uri, mixed)
            source.new = name in unseen
            sources.append(source)
        merged, records, dropped = merge(sources, mask_value)
    class_names = next((source.class_names for source in sources if source.class_names), None)
    output_dir = write_dataset(output_dir, merged, class_names)
    record = {
        "reference": join(bucket_uri, REFERENCE),
        "batches": batches,
        "new_batches": [name for name in batches if name in unseen],
        "latest_batch": batches[-1] if batches else "",
        "read_at": read_at,
        "examples": {split: int(len(merged[split]["labels"])) for split in SPLITS},
        "duplicates_removed": dropped,
        "sources": records,
    }
    (Path(output_dir) / SOURCES_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


# --------------------------------------------------------------------------
# Comparison and the promotion rule
# --------------------------------------------------------------------------

def scores(test_metrics: dict) -> dict[str, Any]:
    """The figures the rule reads from `evaluate.classification_metrics` output."""
    return {**{name: test_metrics[name] for name in PROMOTION_METRICS},
            "recall": {name: values["recall"]
                       for name, values in test_metrics["per_class"].items()},
            "support": {name: values["support"]
                        for name, values in test_metrics["per_class"].items()}}


def rare_classes(train_labels: np.ndarray, class_names: list[str]) -> list[str]:
    """Every class except the most frequent one in the training split."""
    counts = np.bincount(np.asarray(train_labels), minlength=len(class_names))
    majority = int(np.argmax(counts))
    return [name for index, name in enumerate(class_names) if index != majority]


@dataclasses.dataclass
class Decision:
    """The outcome of the promotion rule and every figure behind it."""

    promote: bool
    reason: str
    metric: str
    min_delta: float
    recall_tolerance: float
    challenger: dict[str, Any]
    champion: dict[str, Any] | None
    improvement: float | None
    rare_classes: list[str]
    recall_drops: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def decide(challenger: dict[str, Any], champion: dict[str, Any] | None, metric: str,
           min_delta: float, recall_tolerance: float, rare: list[str]) -> Decision:
    """Promote when `metric` improves by at least `min_delta` and no rare class's
    recall drops by more than `recall_tolerance`; always promote without a champion.

    `challenger` and `champion` are `scores()` of the two models on the same
    test split. A recall that is undefined (class absent from the test
    split) is not compared.
    """
    if metric not in PROMOTION_METRICS:
        raise ValueError(f"promotion metric {metric!r} is not one of {list(PROMOTION_METRICS)}")
    common = {"metric": metric, "min_delta": min_delta, "recall_tolerance": recall_tolerance,
              "challenger": challenger, "champion": champion, "rare_classes": list(rare)}
    if champion is None:
        return Decision(True, "no champion yet: the first model becomes the champion",
                        improvement=None, recall_drops={}, **common)
    new, old = challenger[metric], champion[metric]
    if new is None or old is None:
        return Decision(False, f"{metric} is undefined on this test split (challenger {new}, "
                        f"champion {old}): cannot judge, the champion stays",
                        improvement=None, recall_drops={}, **common)
    higher_is_better = PROMOTION_METRICS[metric]
    improvement = (new - old) if higher_is_better else (old - new)
    drops = {name: champion["recall"][name] - challenger["recall"][name] for name in rare
             if challenger["recall"].get(name) is not None
             and champion["recall"].get(name) is not None}
    failures = []
    direction = "" if higher_is_better else " (lower is better)"
    if improvement < min_delta:
        failures.append(f"{metric}{direction} {old:.4f} -> {new:.4f} improves by "
                        f"{improvement:+.4f}, less than min_delta {min_delta:g}")
    for name, drop in drops.items():
        if drop > recall_tolerance + 1e-12:
            failures.append(f"recall of {name} drops {champion['recall'][name]:.4f} -> "
                            f"{challenger['recall'][name]:.4f} ({-drop:+.4f}), more than "
                            f"recall_tolerance {recall_tolerance:g}")
    if failures:
        return Decision(False, "refused: " + "; ".join(failures), improvement=improvement,
                        recall_drops=drops, **common)
    return Decision(True, f"promoted: {metric}{direction} {old:.4f} -> {new:.4f} improves by "
                    f"{improvement:+.4f} (min_delta {min_delta:g}) and no rare-class recall "
                    f"({', '.join(rare) or 'none'}) drops by more than {recall_tolerance:g}",
                    improvement=improvement, recall_drops=drops, **common)


def score_model(model_dir: str | Path, dataset_dir: str | Path) -> dict[str, Any]:
    """`classification_metrics` of a model folder on the dataset's test split.

    Raises DataError when the model cannot be used on this data (missing
    files, other classes, other feature widths).
    """
    from rnn_classifier.data import load_dataset
    from rnn_classifier.evaluate import classification_metrics
    from rnn_classifier.predict import load_trained_model

    trained = load_trained_model(model_dir)
    test = load_dataset(dataset_dir, mixed=trained.config.mixed,
                        mask_value=trained.config.mask_value, splits=("test",))
    if test.class_names != trained.class_names:
        raise DataError(f"{model_dir}: the model knows the classes {trained.class_names}, the "
                        f"test split has {test.class_names}")
    split = test["test"]
    try:
        proba = trained.predict_proba(split.time_features, split.contextual_features)
    except (ValueError, KeyError) as error:  # Keras: inputs of another shape
        raise DataError(f"{model_dir}: cannot predict this test split ({error})") from error
    return classification_metrics(split.labels, proba, trained.class_names)
