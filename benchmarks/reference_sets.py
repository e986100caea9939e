"""Real labelled time series that ship inside a locked package, as data-contract folders.

Every classification set `aeon` bundles (UCR/UEA archive copies, read offline
from its own package data) becomes the nine-file contract:

- train and validation: aeon's training split, cut into a stratified
  validation split of VALIDATION_FRACTION of each class (seeded, so the cut is
  the same on every run);
- test: aeon's test split, untouched;
- time features (N, T, channels) with unequal lengths padded after the last
  step with the mask value; no contextual features (these sets have none);
  classes.txt holds aeon's class labels.

Each set also has an imbalanced variant (`imbalanced_variant`): its train and
validation splits are subsampled deterministically so that class counts fall
geometrically from the most frequent class (kept whole) to the rarest, which
keeps IMBALANCE_RATIO times fewer series (at least one). Where the most
frequent class has fewer than IMBALANCE_RATIO series to start with, the ratio
reached is smaller; `imbalance_ratio` reports what each variant reached. The
test split stays as it is, so every class is still judged on all its series.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rnn_classifier.config import DEFAULTS
from rnn_classifier.data import load_dataset, pad_sequences, write_dataset

# Every labelled classification set inside aeon 1.x's package data.
AEON_SETS = ("ArrowHead", "BasicMotions", "GunPoint", "ItalyPowerDemand", "JapaneseVowels",
             "OSULeaf", "PickupGestureWiimoteZ", "ACSF1", "UnitTest")
VALIDATION_FRACTION = 0.2
IMBALANCE_RATIO = 20
SPLIT_SEED = 0


def _class_order(labels: np.ndarray) -> list[str]:
    """aeon's string labels in natural order ("2" before "10")."""
    names = sorted(set(labels.tolist()), key=lambda name: (not name.lstrip("-").isdigit(),
                                                           int(name) if name.lstrip("-")
                                                           .isdigit() else 0, name))
    return names


def _to_time_features(series) -> np.ndarray:
    """aeon's (N, channels, T) array or list of (channels, T_i) into (N, T, channels) padded."""
    return pad_sequences([np.asarray(one, dtype=np.float32).T for one in series],
                         DEFAULTS.mask_value)


def stratified_validation(labels: np.ndarray, fraction: float = VALIDATION_FRACTION,
                          seed: int = SPLIT_SEED) -> np.ndarray:
    """Boolean mask of a stratified validation split: round(fraction * n_c) series per class.

    A class with at least two series gives at least one to validation and
    keeps at least one for training.
    """
    rng = np.random.default_rng(seed)
    validation = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        count = int(round(fraction * len(rows)))
        if len(rows) >= 2:
            count = min(max(count, 1), len(rows) - 1)
        validation[rows[:count]] = True
    return validation


def write_aeon_set(name: str, output_dir: str | Path) -> Path:
    """Write aeon's bundled set `name` as a data-contract folder (see the module docstring)."""
    from aeon.datasets import load_classification

    raw = {split: load_classification(name, split=split) for split in ("train", "test")}
    class_names = _class_order(np.concatenate([raw["train"][1], raw["test"][1]]))
    index = {class_name: position for position, class_name in enumerate(class_names)}
    time = {split: _to_time_features(series) for split, (series, _) in raw.items()}
    labels = {split: np.array([index[label] for label in names], dtype=np.int64)
              for split, (_, names) in raw.items()}
    # Every split is padded to the longest series of any split, so the widths agree.
    steps = max(array.shape[1] for array in time.values())
    time = {split: _pad_to(array, steps) for split, array in time.items()}
    validation = stratified_validation(labels["train"])
    arrays = {
        "train": {"time_features": time["train"][~validation],
                  "labels": labels["train"][~validation]},
        "validation": {"time_features": time["train"][validation],
                       "labels": labels["train"][validation]},
        "test": {"time_features": time["test"], "labels": labels["test"]},
    }
    return write_dataset(output_dir, arrays, class_names)


def _pad_to(time_features: np.ndarray, steps: int) -> np.ndarray:
    missing = steps - time_features.shape[1]
    if missing == 0:
        return time_features
    padding = np.full((len(time_features), missing, time_features.shape[2]),
                      DEFAULTS.mask_value, dtype=time_features.dtype)
    return np.concatenate([time_features, padding], axis=1)


def imbalanced_counts(counts: np.ndarray, ratio: float = IMBALANCE_RATIO,
                      seed: int = SPLIT_SEED) -> np.ndarray:
    """How many series of each class to keep: a geometric fall from the largest class.

    The class ranks (which class is kept whole, which becomes the rarest) are a
    seeded permutation, so the rare class is not always the last label.
    """
    n_classes = len(counts)
    ranks = np.random.default_rng(seed).permutation(n_classes)
    largest = int(counts.max())
    keep = np.empty(n_classes, dtype=np.int64)
    for label, rank in enumerate(ranks):
        fraction = ratio ** (-rank / max(n_classes - 1, 1))
        keep[label] = min(int(counts[label]), max(1, int(np.floor(largest * fraction))))
    return keep


def imbalanced_variant(data_dir: str | Path, output_dir: str | Path,
                       ratio: float = IMBALANCE_RATIO, seed: int = SPLIT_SEED) -> Path:
    """Copy a contract folder with its train and validation splits subsampled to imbalance.

    The train and validation splits are pooled per class, the pool is cut to
    `imbalanced_counts`, and each class's kept series are shared between
    train and validation in their original proportion (a class kept with a
    single series trains on it).
    """
    dataset = load_dataset(data_dir, mixed=False)
    rng = np.random.default_rng(seed)
    train, validation = dataset["train"], dataset["validation"]
    counts = np.bincount(np.concatenate([train.labels, validation.labels]),
                         minlength=dataset.n_classes)
    keep = imbalanced_counts(counts, ratio, seed)
    chosen = {"train": [], "validation": []}
    for label in range(dataset.n_classes):
        train_rows = rng.permutation(np.flatnonzero(train.labels == label))
        validation_rows = rng.permutation(np.flatnonzero(validation.labels == label))
        n_validation = int(round(keep[label] * len(validation_rows) / counts[label]))
        n_validation = min(n_validation, keep[label] - 1, len(validation_rows))
        chosen["validation"].append(validation_rows[:n_validation])
        chosen["train"].append(train_rows[:keep[label] - n_validation])
    arrays = {}
    for name, split in (("train", train), ("validation", validation)):
        rows = np.sort(np.concatenate(chosen[name]))
        arrays[name] = {"time_features": np.asarray(split.time_features)[rows],
                        "labels": split.labels[rows]}
    test = dataset["test"]
    arrays["test"] = {"time_features": np.asarray(test.time_features), "labels": test.labels}
    return write_dataset(output_dir, arrays, dataset.class_names)


def imbalance_ratio(data_dir: str | Path, split: str = "train") -> float:
    """Most frequent class count / rarest present class count of one split."""
    labels = load_dataset(data_dir, mixed=False, splits=(split,))[split].labels
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    return float(counts.max() / counts.min())
