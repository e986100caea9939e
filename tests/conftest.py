"""Shared pytest fixtures.

Data fixtures build small datasets that satisfy the `.npy` data contract of
`rnn_classifier.data`: K=3 classes, F=3 time features (observation time,
magnitude, magnitude error), M=2 contextual features, variable-length
sequences padded with the mask value after their last observation, and
one-hot labels. Every fixture is function-scoped and built fresh, so a test
may modify what it gets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from rnn_classifier.data import write_dataset

# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------

MASK_VALUE = -99.0
CLASS_NAMES = ("VS", "SN", "AGN")
N_TIME_FEATURES = 3
N_CONTEXT_FEATURES = 2
MAX_STEPS = 8
SPLIT_SIZES = {"train": 30, "validation": 12, "test": 12}

Arrays = dict[str, dict[str, np.ndarray]]


def make_split(labels: Sequence[int], lengths: Sequence[int], seed: int = 0,
               max_steps: int = MAX_STEPS) -> dict[str, np.ndarray]:
    """One split's contract arrays: row i is class labels[i] with lengths[i] observations.

    Time features are (N, max_steps, 3) float64: time since the first
    observation (increasing, starting at 0), a magnitude around 18 that
    depends on the class, and its error; steps after the last observation
    hold MASK_VALUE in every feature. Contextual features are (N, 2), labels
    one-hot (N, 3).
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=np.int64)
    time = np.full((len(labels), max_steps, N_TIME_FEATURES), MASK_VALUE)
    for row, (label, length) in enumerate(zip(labels, lengths, strict=True)):
        if not 1 <= length <= max_steps:
            raise ValueError(f"length {length} outside 1..{max_steps}")
        steps = np.cumsum(rng.exponential(2.0, size=length))
        time[row, :length, 0] = steps - steps[0]
        time[row, :length, 1] = rng.normal(18.0 + label, 0.5, size=length)
        time[row, :length, 2] = rng.uniform(0.01, 0.2, size=length)
    context = rng.normal(size=(len(labels), N_CONTEXT_FEATURES))
    context[:, 0] += labels
    return {"time_features": time, "contextual_features": context,
            "labels": np.eye(len(CLASS_NAMES))[labels]}


def make_arrays(seed: int = 0, sizes: dict[str, int] | None = None) -> Arrays:
    """A valid `{split: {kind: array}}` dataset with every class in every split.

    In each split row 0 has a single observation and the last row is full
    length (no padding); the other lengths are random in 1..MAX_STEPS.
    """
    rng = np.random.default_rng(seed)
    arrays: Arrays = {}
    for index, (split, n) in enumerate((sizes or SPLIT_SIZES).items()):
        labels = rng.permutation(np.arange(n) % len(CLASS_NAMES))
        lengths = rng.integers(1, MAX_STEPS + 1, size=n)
        lengths[0], lengths[-1] = 1, MAX_STEPS
        arrays[split] = make_split(labels, lengths, seed=seed * 10 + index)
    return arrays


@pytest.fixture
def make_split_arrays() -> Callable[..., dict[str, np.ndarray]]:
    """The `make_split` factory, for tests that need chosen labels and lengths."""
    return make_split


@pytest.fixture
def dataset_arrays() -> Arrays:
    """A fresh valid dataset (see `make_arrays`), not yet written."""
    return make_arrays()


@pytest.fixture
def data_dir(tmp_path: Path, dataset_arrays: Arrays) -> Path:
    """`dataset_arrays` written as the nine contract files (no classes.txt)."""
    return write_dataset(tmp_path / "data", dataset_arrays)
