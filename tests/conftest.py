"""Shared pytest fixtures.

Data fixtures build small datasets that satisfy the `.npy` data contract of
`rnn_classifier.data`: K=3 classes, F=3 time features (observation time,
magnitude, magnitude error), M=2 contextual features, variable-length
sequences padded with the mask value after their last observation, and
one-hot labels. Every fixture is function-scoped and built fresh, so a test
may modify what it gets.

Cloud Storage fixtures run the real `gcp-storage-emulator` server on
127.0.0.1 (`gcs_emulator`, one per session) and give each test a fresh
bucket with STORAGE_EMULATOR_HOST pointing at it (`gcs_bucket`).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
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


# --------------------------------------------------------------------------
# Cloud Storage: the gcp-storage-emulator server
# --------------------------------------------------------------------------

class GcsEmulator:
    """A `gcp-storage-emulator` server on 127.0.0.1, file-backed so that a
    restart keeps its buckets and objects (the failure tests stop it mid-upload)."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.host = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the server (same port, same data) and wait until it answers."""
        executable = Path(sys.executable).with_name("gcp-storage-emulator")
        command = ([str(executable)] if executable.exists()
                   else [sys.executable, "-m", "gcp_storage_emulator"])
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, "--data-dir", str(self.data_dir), "start", "--host", "127.0.0.1",
                 "--port", str(self.port), "--quiet"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gcp-storage-emulator exited: "
                                   f"{self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.host + "/", timeout=1) as reply:
                    if reply.read() == b"OK":
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gcp-storage-emulator did not answer on {self.host} within "
                           f"{timeout_s:g} s")

    def stop(self) -> None:
        """Kill the server at once, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def ensure_running(self) -> None:
        if not self.running:
            self.start()

    def create_bucket(self, name: str | None = None) -> str:
        """A new bucket (a fresh unique name by default); returns its name."""
        name = name or f"test-{uuid.uuid4().hex[:16]}"
        request = urllib.request.Request(
            f"{self.host}/storage/v1/b?project=test", data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200, reply.read()
        return name


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory) -> Iterator[GcsEmulator]:
    """One emulator server for the session, killed at the end.

    Tests reach it through the `gcs_bucket` fixture, which points
    STORAGE_EMULATOR_HOST at it for the test's duration only.
    """
    root = tmp_path_factory.mktemp("gcs-emulator")
    emulator = GcsEmulator(root / "data", root / "emulator.log")
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def gcs_bucket(gcs_emulator: GcsEmulator, monkeypatch) -> str:
    """A fresh bucket on the (running) emulator, as `gs://NAME`; STORAGE_EMULATOR_HOST
    is set for this test and restored afterwards."""
    gcs_emulator.ensure_running()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.host)
    return f"gs://{gcs_emulator.create_bucket()}"
