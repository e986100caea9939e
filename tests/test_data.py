"""The `.npy` data contract: validation messages, loading, summaries and scaling.

Each bad-input test starts from a valid dataset (the `data_dir` fixture of
conftest.py) and corrupts ONE thing in it; the CLI must then print one
`error:` line that names the offending file and the problem, exit with
status 2 and write nothing.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rnn_classifier import data as data_module
from rnn_classifier.cli import main
from rnn_classifier.data import (
    DataError,
    FeatureScaler,
    Scaler,
    Split,
    _time_deltas,
    data_path,
    load_array,
    load_dataset,
    read_npy_header,
    summarise,
    write_dataset,
)

MASK = -99.0
SCALINGS = ("asinh", "standard", "robust", "none")


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def npy_bytes(descr: str, shape: tuple[int, ...], payload: bytes = b"",
              version: int = 1, header_length: int | None = None) -> bytes:
    """A .npy file written by hand, so its header can claim anything."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    prefix = 10 if version == 1 else 12
    # Pad with spaces so the data starts on a 64-byte boundary, as numpy does.
    length = header_length or -(-(prefix + len(header) + 1) // 64) * 64 - prefix
    header = header.ljust(length - 1) + "\n"
    size = struct.pack("<H" if version == 1 else "<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + size + header.encode("latin1") + payload


def save(d: Path, split: str, kind: str, array: np.ndarray) -> None:
    np.save(data_path(d, split, kind), array, allow_pickle=False)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_error(stderr: str, offending: Path, phrase: str) -> None:
    """stderr is exactly one `error:` line that starts by naming `offending`."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"error: {offending}:"), lines[0]
    assert phrase in lines[0], lines[0]


class _MakeDirectoryWhenUnpickled:
    """Unpickling this calls os.mkdir(marker): proof that a pickle was executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def malicious_npy(marker: Path, shape: tuple[int, ...]) -> bytes:
    """A .npy whose header says dtype object and whose body is a live pickle."""
    return npy_bytes("|O", shape, pickle.dumps(_MakeDirectoryWhenUnpickled(marker), protocol=2))


# --------------------------------------------------------------------------
# One corruption per case: (offending file, distinctive phrase, how to corrupt)
# --------------------------------------------------------------------------

Corrupt = Callable[[Path, dict], None]


def _delete(name: str) -> Corrupt:
    return lambda d, arrays: (d / name).unlink()


def _write_bytes(name: str, content: bytes) -> Corrupt:
    return lambda d, arrays: (d / name).write_bytes(content)


def _truncate(d: Path, arrays: dict) -> None:
    path = data_path(d, "validation", "time_features")
    path.write_bytes(path.read_bytes()[:-16])


def _trailing_garbage(d: Path, arrays: dict) -> None:
    path = data_path(d, "test", "time_features")
    path.write_bytes(path.read_bytes() + b"garbage")


def _object_array(d: Path, arrays: dict) -> None:
    context = np.empty(len(arrays["validation"]["labels"]), dtype=object)
    context[:] = [[1.0, 2.0]] * len(context)
    np.save(data_path(d, "validation", "contextual_features"), context, allow_pickle=True)


def _absurd_header(d: Path, arrays: dict) -> None:
    data_path(d, "train", "time_features").write_bytes(
        npy_bytes("<f8", (10**9, 10**6, 3), b"\x00" * 24))


def _change(split: str, kind: str, change: Callable[[np.ndarray], np.ndarray]) -> Corrupt:
    def corrupt(d: Path, arrays: dict) -> None:
        save(d, split, kind, change(arrays[split][kind].copy()))
    return corrupt


def _set(index, value) -> Callable[[np.ndarray], np.ndarray]:
    def change(array: np.ndarray) -> np.ndarray:
        array[index] = value
        return array
    return change


def _indices(dtype, change: Callable[[np.ndarray], np.ndarray] = lambda labels: labels):
    """One-hot labels -> 1-D class indices of `dtype`, then `change`d."""
    return lambda one_hot: change(one_hot.argmax(axis=1).astype(dtype))


def _train_without_class_2(d: Path, arrays: dict, also: tuple[str, ...] = ()) -> None:
    """Relabel class 2 as class 0 in train (and in the splits in `also`)."""
    for split in ("train", *also):
        labels = arrays[split]["labels"].copy()
        labels[labels[:, 2] == 1] = [1.0, 0.0, 0.0]
        save(d, split, "labels", labels)


def _every_label_class_0(d: Path, arrays: dict, one_hot: bool = True) -> None:
    for split, kinds in arrays.items():
        labels = np.zeros_like(kinds["labels"])
        labels[:, 0] = 1.0
        save(d, split, "labels", labels if one_hot else labels.argmax(axis=1))


def _absurd_class_index(d: Path, arrays: dict) -> None:
    """1-D labels everywhere (K = max + 1), one typo'd index far beyond any real K."""
    for split, kinds in arrays.items():
        labels = kinds["labels"].argmax(axis=1)
        if split == "validation":
            labels[0] = 100_000
        save(d, split, "labels", labels)


def _empty_split(d: Path, arrays: dict) -> None:
    for kind, array in arrays["test"].items():
        save(d, "test", kind, array[:0])


def _extra_time_feature(time: np.ndarray) -> np.ndarray:
    # The copied column keeps padded steps padded in every feature.
    return np.concatenate([time, time[..., :1]], axis=-1)


def _classes(text: bytes) -> Corrupt:
    return _write_bytes("classes.txt", text)


CORRUPTIONS = [
    # Files that are not readable .npy arrays.
    pytest.param("test_labels.npy", "file is missing", _delete("test_labels.npy"),
                 id="missing"),
    pytest.param("train_time_features.npy", "file is empty",
                 _write_bytes("train_time_features.npy", b""), id="empty"),
    pytest.param("validation_time_features.npy", "file is truncated", _truncate,
                 id="truncated"),
    pytest.param("train_labels.npy", "not a valid .npy file",
                 _write_bytes("train_labels.npy", b"1,0,0\n0,1,0\n"), id="not-npy-csv"),
    pytest.param("train_labels.npy", "not a valid .npy file",
                 _write_bytes("train_labels.npy", b"\x93NUM"), id="shorter-than-magic"),
    pytest.param("test_time_features.npy", "unexpected bytes after the array",
                 _trailing_garbage, id="trailing-garbage"),
    pytest.param("validation_contextual_features.npy", "holds Python objects", _object_array,
                 id="object-array"),
    pytest.param("train_time_features.npy", "absurd size", _absurd_header,
                 id="absurd-header-size"),
    pytest.param("train_labels.npy", "not a valid .npy file",
                 _write_bytes("train_labels.npy",
                              npy_bytes("<f8", (30, 3), version=2, header_length=20_000)),
                 id="header-too-long"),
    pytest.param("test_contextual_features.npy", "negative dimension",
                 _write_bytes("test_contextual_features.npy", npy_bytes("<f8", (-12, 2))),
                 id="negative-dimension"),
    pytest.param("validation_labels.npy", "is not numeric",
                 _change("validation", "labels", lambda labels: labels.astype("U3")),
                 id="string-dtype"),
    pytest.param("train_contextual_features.npy", "is not numeric",
                 _change("train", "contextual_features", lambda c: c.astype(np.complex128)),
                 id="complex-dtype"),
    # Wrong rank.
    pytest.param("train_time_features.npy", "has rank 2",
                 _change("train", "time_features", lambda t: t.reshape(len(t), -1)),
                 id="time-rank-2"),
    pytest.param("validation_labels.npy", "has rank 3",
                 _change("validation", "labels", lambda labels: labels[..., None]),
                 id="labels-rank-3"),
    pytest.param("test_contextual_features.npy", "has rank 1",
                 _change("test", "contextual_features", lambda c: c[:, 0]),
                 id="context-rank-1"),
    # N differs between a split's files.
    pytest.param("train_labels.npy", "every file of a split needs the same N",
                 _change("train", "labels", lambda labels: labels[:-1]), id="labels-short"),
    pytest.param("test_contextual_features.npy", "every file of a split needs the same N",
                 _change("test", "contextual_features", lambda c: np.vstack([c, c[:1]])),
                 id="context-long"),
    pytest.param("test_time_features.npy", "split has no examples", _empty_split,
                 id="empty-split"),
    # Feature width differs between splits.
    pytest.param("validation_time_features.npy", "every split needs the same feature width",
                 _change("validation", "time_features", _extra_time_feature),
                 id="time-width"),
    pytest.param("test_contextual_features.npy", "every split needs the same feature width",
                 _change("test", "contextual_features", lambda c: c[:, :1]),
                 id="context-width"),
    # Labels.
    pytest.param("validation_labels.npy", "is not one-hot",
                 _change("validation", "labels", _set((3, 0), 1.0)), id="two-hot"),
    pytest.param("test_labels.npy", "is not one-hot",
                 _change("test", "labels", _set(5, [0.5, 0.25, 0.25])), id="soft-labels"),
    pytest.param("train_labels.npy", "is not one-hot",
                 _change("train", "labels", _set((0, 0), np.nan)), id="nan-label"),
    pytest.param("validation_labels.npy", "every split needs the same class count",
                 _change("validation", "labels",
                         lambda labels: np.hstack([labels, np.zeros((len(labels), 1))])),
                 id="class-count-differs"),
    pytest.param("train_labels.npy", "1-D labels have dtype float64",
                 _change("train", "labels", _indices(np.float64)), id="1d-float-labels"),
    pytest.param("test_labels.npy", "negative class index -1",
                 _change("test", "labels", _indices(np.int64, _set(4, -1))),
                 id="negative-class-index"),
    pytest.param("test_labels.npy", "out of range for 3 classes",
                 _change("test", "labels", _indices(np.int64, _set(4, 3))),
                 id="class-index-beyond-one-hot"),
    pytest.param("validation_labels.npy", "absurd", _absurd_class_index,
                 id="absurd-class-index"),
    pytest.param("train_labels.npy", "expected at least 2", _every_label_class_0,
                 id="single-class-one-hot"),
    pytest.param("train_labels.npy", "expected at least 2",
                 lambda d, arrays: _every_label_class_0(d, arrays, one_hot=False),
                 id="single-class-1d"),
    pytest.param("validation_labels.npy", "never occur in train", _train_without_class_2,
                 id="unseen-class-validation"),
    pytest.param("test_labels.npy", "never occur in train",
                 lambda d, arrays: _train_without_class_2(d, arrays, also=("validation",)),
                 id="unseen-class-test"),
    # Feature values.
    pytest.param("train_time_features.npy", "NaN/inf",
                 _change("train", "time_features", _set((-1, 2, 1), np.nan)), id="nan-time"),
    pytest.param("validation_time_features.npy", "NaN/inf",
                 _change("validation", "time_features", _set((-1, 0, 0), -np.inf)),
                 id="inf-time"),
    pytest.param("validation_contextual_features.npy", "NaN/inf",
                 _change("validation", "contextual_features", _set((2, 1), np.inf)),
                 id="inf-context"),
    pytest.param("test_time_features.npy", "has no real observation",
                 _change("test", "time_features", _set((0, 0), MASK)), id="no-observation"),
    pytest.param("validation_time_features.npy", "appears between real observations",
                 _change("validation", "time_features", _set((-1, 1), MASK)),
                 id="gap-in-padding"),
    pytest.param("train_time_features.npy", "appears between real observations",
                 _change("train", "time_features", _set((-1, 0), MASK)),
                 id="leading-padding"),
    # classes.txt and the contextual files.
    pytest.param("classes.txt", "names 2 classes but the labels have 3",
                 _classes(b"VS\nSN\n"), id="classes-too-few"),
    pytest.param("classes.txt", "names 4 classes but the labels have 3",
                 _classes(b"VS\nSN\nAGN\nQSO\n"), id="classes-too-many"),
    pytest.param("classes.txt", "not unique", _classes(b"VS\nSN\nVS\n"),
                 id="classes-duplicate"),
    pytest.param("classes.txt", "not UTF-8", _classes(b"VS\n\xff\xfeSN\nAGN\n"),
                 id="classes-not-text"),
    pytest.param("train_contextual_features.npy", "use --no-mixed",
                 _delete("train_contextual_features.npy"), id="context-missing-mixed"),
]

# Representative cases run through `train` as well.
TRAIN_CASES = ("object-array", "nan-time", "gap-in-padding", "unseen-class-validation")


def _corruption(case_id: str):
    return next(case for case in CORRUPTIONS if case.id == case_id)


# --------------------------------------------------------------------------
# Bad input through the CLI
# --------------------------------------------------------------------------

@pytest.mark.parametrize(("offending", "phrase", "corrupt"), CORRUPTIONS)
def test_validate_reports_one_error_naming_the_file(data_dir, dataset_arrays, capsys,
                                                    offending, phrase, corrupt):
    corrupt(data_dir, dataset_arrays)
    files_before = {path.name: path.stat().st_mtime_ns for path in data_dir.iterdir()}

    status, out, err = run_cli(["validate", "--data-dir", data_dir], capsys)

    assert status == 2
    assert out == ""
    assert_one_error(err, data_dir / offending, phrase)
    assert {path.name: path.stat().st_mtime_ns for path in data_dir.iterdir()} == files_before


@pytest.mark.parametrize(("offending", "phrase", "corrupt"),
                         [_corruption(case_id) for case_id in TRAIN_CASES])
def test_train_fails_validation_before_writing_anything(tmp_path, data_dir, dataset_arrays,
                                                        capsys, offending, phrase, corrupt):
    corrupt(data_dir, dataset_arrays)
    out_dir = tmp_path / "model"
    keras_was_loaded = "keras" in sys.modules

    status, out, err = run_cli(["train", "--data-dir", data_dir, "--output-dir", out_dir,
                                "--epochs", "1"], capsys)

    assert status == 2
    assert_one_error(err, data_dir / offending, phrase)
    assert not out_dir.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]
    if not keras_was_loaded:  # validation failed before any model code was imported
        assert "keras" not in sys.modules


def test_malicious_pickle_is_never_executed(tmp_path, data_dir, capsys):
    # Control: the payload really runs when a careless reader unpickles it.
    control = tmp_path / "control.npy"
    control_marker = tmp_path / "control-marker"
    control.write_bytes(malicious_npy(control_marker, (30, 3)))
    np.load(control, allow_pickle=True)
    assert control_marker.is_dir()

    marker = tmp_path / "pwned"
    labels = data_path(data_dir, "train", "labels")
    labels.write_bytes(malicious_npy(marker, (30, 3)))

    with pytest.raises(DataError, match="holds Python objects"):
        load_array(labels, (1, 2), "labels")
    status, _, err = run_cli(["validate", "--data-dir", data_dir], capsys)
    assert status == 2
    assert_one_error(err, labels, "pickled arrays are never loaded")
    status, _, err = run_cli(["train", "--data-dir", data_dir, "--output-dir",
                              tmp_path / "model", "--epochs", "1"], capsys)
    assert status == 2
    assert_one_error(err, labels, "holds Python objects")
    assert not marker.exists()
    assert not (tmp_path / "model").exists()


def test_absurd_header_fails_on_the_header_without_reading_data(tmp_path, monkeypatch):
    path = tmp_path / "huge.npy"
    path.write_bytes(npy_bytes("<f8", (10**9, 10**6, 3), b"\x00" * 24))

    def never(*args, **kwargs):
        raise AssertionError("the array was read despite an absurd header")

    monkeypatch.setattr(np, "load", never)
    monkeypatch.setattr(np, "fromfile", never)
    started = time.perf_counter()
    with pytest.raises(DataError, match=r"absurd size \(24,000,000,000,000,000 bytes"):
        load_array(path, (3,), "time features")
    assert time.perf_counter() - started < 5.0


def test_unreadable_file_is_a_data_error(tmp_path, monkeypatch):
    # Running as root, chmod cannot make a file unreadable: fail the open instead.
    path = tmp_path / "labels.npy"
    np.save(path, np.eye(3))

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(DataError, match=r"labels\.npy: cannot be read \(Permission denied\)"):
        read_npy_header(path)


def test_missing_data_folder(tmp_path, capsys):
    status, _, err = run_cli(["validate", "--data-dir", tmp_path / "nowhere"], capsys)
    assert status == 2
    assert_one_error(err, tmp_path / "nowhere", "data folder does not exist")


# --------------------------------------------------------------------------
# Valid data
# --------------------------------------------------------------------------

def test_read_npy_header_of_a_valid_file(data_dir, dataset_arrays):
    shape, dtype = read_npy_header(data_path(data_dir, "train", "time_features"))
    assert shape == dataset_arrays["train"]["time_features"].shape
    assert dtype == np.float64


def test_validate_accepts_valid_data(data_dir, dataset_arrays, capsys):
    status, out, err = run_cli(["validate", "--data-dir", data_dir], capsys)

    assert (status, err) == (0, "")
    summary_text, verdict = out.rstrip("\n").rsplit("\n", 1)
    assert verdict == f"{data_dir}: valid"
    summary = json.loads(summary_text)
    for split, arrays in dataset_arrays.items():
        assert summary["splits"][split]["examples"] == len(arrays["labels"])
        assert summary["splits"][split]["contextual_feature_width"] == 2


def test_loaded_dataset_matches_the_files(data_dir, dataset_arrays):
    dataset = load_dataset(data_dir)

    assert dataset.class_names == ["class 0", "class 1", "class 2"]
    for split, arrays in dataset_arrays.items():
        np.testing.assert_array_equal(dataset[split].time_features, arrays["time_features"])
        np.testing.assert_array_equal(dataset[split].contextual_features,
                                      arrays["contextual_features"])
        np.testing.assert_array_equal(dataset[split].labels, arrays["labels"].argmax(axis=1))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_integer_labels_equal_the_one_hot_argmax(data_dir, dataset_arrays, capsys, dtype):
    for split, arrays in dataset_arrays.items():
        save(data_dir, split, "labels", arrays["labels"].argmax(axis=1).astype(dtype))

    status, _, err = run_cli(["validate", "--data-dir", data_dir], capsys)
    dataset = load_dataset(data_dir)

    assert (status, err) == (0, "")
    assert dataset.n_classes == 3
    for split, arrays in dataset_arrays.items():
        labels = dataset[split].labels
        assert labels.ndim == 1
        np.testing.assert_array_equal(labels, arrays["labels"].argmax(axis=1))


def test_no_mixed_runs_without_contextual_files(data_dir, capsys):
    for path in data_dir.glob("*_contextual_features.npy"):
        path.unlink()

    status, out, err = run_cli(["validate", "--data-dir", data_dir, "--no-mixed"], capsys)
    dataset = load_dataset(data_dir, mixed=False)

    assert (status, err) == (0, "")
    assert out.rstrip().endswith(": valid")
    assert all(dataset[split].contextual_features is None for split in dataset.splits)


def test_no_mixed_ignores_broken_contextual_files(data_dir, capsys):
    data_path(data_dir, "test", "contextual_features").write_bytes(b"not an array")
    status, _, err = run_cli(["validate", "--data-dir", data_dir, "--no-mixed"], capsys)
    assert (status, err) == (0, "")


def test_classes_txt_names_the_classes(data_dir, dataset_arrays, capsys):
    (data_dir / "classes.txt").write_text("VS\nSN\n\nAGN\n")  # blank lines are ignored

    dataset = load_dataset(data_dir)
    status, out, _ = run_cli(["validate", "--data-dir", data_dir], capsys)

    assert dataset.class_names == ["VS", "SN", "AGN"]
    assert status == 0
    assert set(json.loads(out.rstrip().rsplit("\n", 1)[0])["splits"]["train"]["per_class"]) == {
        "VS", "SN", "AGN"}


def test_summarise_counts_imbalance_and_observation_quantiles(tmp_path, make_split_arrays):
    train_labels = [0] * 6 + [1] * 3 + [2]
    arrays = {
        "train": make_split_arrays(train_labels, [1, 2, 3, 4, 5, 6, 7, 8, 8, 8], seed=1),
        "validation": make_split_arrays([0, 0, 1, 0, 1, 0], [2] * 6, seed=2),
        "test": make_split_arrays([2, 1, 0], [8, 1, 4], seed=3),
    }
    data_dir = write_dataset(tmp_path / "data", arrays, class_names=["VS", "SN", "AGN"])

    summary = summarise(load_dataset(data_dir))

    assert summary["class_names"] == ["VS", "SN", "AGN"]
    train = summary["splits"]["train"]
    assert train["examples"] == 10
    assert train["per_class"] == {"VS": 6, "SN": 3, "AGN": 1}
    assert train["imbalance_ratio"] == 6.0
    # lengths 1..8, 8, 8: numpy's linear quantiles, worked by hand.
    assert train["observations_quantiles"] == {"0.0": 1.0, "0.25": 3.25, "0.5": 5.5,
                                               "0.75": 7.75, "1.0": 8.0}
    assert (train["max_steps"], train["time_feature_width"],
            train["contextual_feature_width"]) == (8, 3, 2)
    validation = summary["splits"]["validation"]
    # A class absent from a split counts 0 and does not make the ratio infinite.
    assert validation["per_class"] == {"VS": 4, "SN": 2, "AGN": 0}
    assert validation["imbalance_ratio"] == 2.0
    assert validation["observations_quantiles"]["0.0"] == 2.0
    assert validation["observations_quantiles"]["1.0"] == 2.0
    test = summary["splits"]["test"]
    assert test["per_class"] == {"VS": 1, "SN": 1, "AGN": 1}
    assert test["imbalance_ratio"] == 1.0
    assert test["observations_quantiles"]["0.5"] == 4.0


# --------------------------------------------------------------------------
# Scaling
# --------------------------------------------------------------------------

def _split(arrays: dict, name: str = "train", mixed: bool = True) -> Split:
    return Split(name, arrays["time_features"],
                 arrays["contextual_features"] if mixed else None,
                 arrays["labels"].argmax(axis=1))


def _mostly_padded(make_split_arrays) -> dict:
    """Most steps are padding, so any leak of -99 into the statistics shows."""
    return make_split_arrays([0, 1, 2] * 10, [1, 2, 3] * 10, seed=5, max_steps=12)


@pytest.mark.parametrize("method", ["robust", "asinh"])
def test_scaler_center_is_the_median_of_real_steps(make_split_arrays, method):
    arrays = _mostly_padded(make_split_arrays)
    time_features = arrays["time_features"]
    real = time_features[~np.all(time_features == MASK, axis=-1)]
    assert len(real) < time_features.shape[0] * time_features.shape[1] / 2

    scaler = Scaler.fit(_split(arrays), method, MASK)

    np.testing.assert_allclose(scaler.time.center, np.median(real, axis=0))
    np.testing.assert_allclose(scaler.context.center,
                               np.median(arrays["contextual_features"], axis=0))


@pytest.mark.parametrize("method", SCALINGS)
def test_scaler_statistics_ignore_padding(make_split_arrays, method):
    arrays = _mostly_padded(make_split_arrays)
    longer = dict(arrays)
    extra = np.full((len(arrays["labels"]), 20, 3), MASK)
    longer["time_features"] = np.concatenate([arrays["time_features"], extra], axis=1)

    assert (Scaler.fit(_split(arrays), method, MASK, time_column=0).to_dict()
            == Scaler.fit(_split(longer), method, MASK, time_column=0).to_dict())


def test_standard_scaler_uses_the_mean_of_real_steps(make_split_arrays):
    arrays = _mostly_padded(make_split_arrays)
    time_features = arrays["time_features"]
    real = time_features[~np.all(time_features == MASK, axis=-1)]

    scaler = Scaler.fit(_split(arrays), "standard", MASK)

    np.testing.assert_allclose(scaler.time.center, real.mean(axis=0))
    np.testing.assert_allclose(scaler.time.scale, real.std(axis=0))


@pytest.mark.parametrize("method", SCALINGS)
def test_transform_keeps_padding_exactly_at_the_mask_value(dataset_arrays, method):
    train, test = dataset_arrays["train"], dataset_arrays["test"]
    scaler = Scaler.fit(_split(train), method, MASK, time_column=0)

    scaled, context = scaler.transform(test["time_features"], test["contextual_features"])

    padded = np.all(test["time_features"] == MASK, axis=-1)
    assert padded.any() and (~padded).any()
    assert scaled.dtype == np.float32 and context.dtype == np.float32
    assert np.all(scaled[padded] == MASK)
    assert not np.any(np.all(scaled[~padded] == MASK, axis=-1))
    assert np.isfinite(scaled).all() and np.isfinite(context).all()
    if method != "none":
        assert np.abs(scaled[~padded]).max() <= data_module.SCALED_CLIP


@pytest.mark.parametrize("method", SCALINGS)
def test_constant_features_scale_to_finite_values(dataset_arrays, method):
    train = {kind: array.copy() for kind, array in dataset_arrays["train"].items()}
    real = ~np.all(train["time_features"] == MASK, axis=-1)
    train["time_features"][..., 2] = np.where(real, 0.05, MASK)
    train["contextual_features"][:, 1] = 3.0

    scaler = Scaler.fit(_split(train), method, MASK)
    scaled, context = scaler.transform(train["time_features"], train["contextual_features"])
    # Unseen data may hold other values of a feature that was constant in train.
    other_time = np.where(real[..., None], train["time_features"] + 1.0, MASK)
    other_scaled, other_context = scaler.transform(other_time,
                                                   train["contextual_features"] + 1.0)

    for array in (scaled, context, other_scaled, other_context):
        assert np.isfinite(array).all()
    assert np.isfinite(scaler.time.scale).all() and np.isfinite(scaler.time.post_std).all()
    if method != "none":
        np.testing.assert_allclose(scaled[real][:, 2], 0.0, atol=1e-6)
        np.testing.assert_allclose(context[:, 1], 0.0, atol=1e-6)


def test_asinh_tames_a_heavy_tailed_feature():
    rng = np.random.default_rng(0)
    train = rng.lognormal(0.0, 2.3, size=(4000, 1))
    unseen = rng.lognormal(0.0, 2.3, size=(4000, 1))
    assert train.max() / train.min() > 1e6  # spans more than 6 orders of magnitude

    asinh = FeatureScaler.fit(train, "asinh").transform(unseen)
    standard = FeatureScaler.fit(train, "standard").transform(unseen)

    assert np.abs(asinh).max() < 10  # unclipped output, already bounded
    assert 0.8 < asinh.std() < 1.25
    assert abs(asinh.mean()) < 0.1
    assert np.abs(standard).max() > 10  # the problem asinh solves


def test_time_deltas_replace_times_by_gaps():
    times = np.array([[0.0, 1.0, 3.0, 10.0, MASK], [5.0, 6.5, MASK, MASK, MASK]])
    real = times != MASK

    np.testing.assert_array_equal(_time_deltas(times, real),
                                  [[0.0, 1.0, 2.0, 7.0, MASK], [0.0, 1.5, MASK, MASK, MASK]])


def test_time_column_becomes_time_since_previous_observation():
    time_features = np.full((2, 5, 2), MASK)
    time_features[0, :4, 0] = [0.0, 1.0, 3.0, 10.0]
    time_features[1, :5, 0] = [0.0, 2.0, 4.0, 34.0, 35.0]
    time_features[0, :4, 1] = [18.1, 18.2, 18.3, 18.4]
    time_features[1, :5, 1] = [17.0, 17.5, 19.0, 16.5, 16.0]
    split = Split("train", time_features, None, np.array([0, 1]))

    scaler = Scaler.fit(split, "none", MASK, time_column=0)
    scaled, context = scaler.transform(time_features, None)

    assert context is None
    np.testing.assert_array_equal(scaled[0, :, 0], [0.0, 1.0, 2.0, 7.0, MASK])
    # "none" keeps units: a 30-day gap and magnitudes of 18 are not clipped to 10.
    np.testing.assert_array_equal(scaled[1, :, 0], [0.0, 2.0, 2.0, 30.0, 1.0])
    np.testing.assert_array_equal(scaled[..., 1], time_features[..., 1].astype(np.float32))

    robust = Scaler.fit(split, "robust", MASK, time_column=0)
    assert robust.time.center[0] == np.median([0, 1, 2, 7, 0, 2, 2, 30, 1])


@pytest.mark.parametrize("mixed", [True, False])
@pytest.mark.parametrize("method", SCALINGS)
def test_scaler_json_round_trip_reproduces_the_transform(tmp_path, dataset_arrays, method,
                                                         mixed):
    train, test = dataset_arrays["train"], dataset_arrays["test"]
    scaler = Scaler.fit(_split(train, mixed=mixed), method, MASK, time_column=0)
    path = tmp_path / "scaler.json"

    scaler.save(path)
    loaded = Scaler.load(path)

    assert json.loads(path.read_text()) == scaler.to_dict()
    assert loaded == scaler
    context = test["contextual_features"] if mixed else None
    for expected, actual in zip(scaler.transform(test["time_features"], context),
                                loaded.transform(test["time_features"], context), strict=True):
        if expected is None:
            assert actual is None
        else:
            np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("time_column", [3, 7, -2])
def test_time_column_out_of_range_is_a_data_error(dataset_arrays, time_column):
    with pytest.raises(DataError, match=f"time_column {time_column} is out of range"):
        Scaler.fit(_split(dataset_arrays["train"]), "asinh", MASK, time_column=time_column)


def test_time_going_backwards_is_reported(make_split_arrays):
    split = make_split_arrays([0, 1, 2], [3, 4, 5], seed=0)
    split["time_features"][1, 2, 0] = split["time_features"][1, 1, 0] - 5.0
    train = Split("train", split["time_features"], split["contextual_features"],
                  split["labels"].argmax(axis=1))
    with pytest.raises(DataError, match="time column 0 decreases at row 1, step 2"):
        Scaler.fit(train, "asinh", -99.0, time_column=0)
    Scaler.fit(train, "asinh", -99.0, time_column=-1)  # without deltas, order does not matter
