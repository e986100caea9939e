"""The `.npy` data contract: load, validate, scale and mask.

A data folder holds nine files, `{train,validation,test}_{time_features,
contextual_features,labels}.npy`, and optionally `classes.txt` (one class name
per line, in label order):

- time features (N, T, F), padded after the last observation with the mask
  value: a step is padding when every feature equals the mask value;
- contextual features (N, M), static per example (skipped with mixed=False);
- labels one-hot (N, K), or 1-D integer class indices (N,).

Files are never unpickled (`allow_pickle=False`) and each header (shape,
dtype, size) is checked against the file before any array is allocated.
Every problem raises `DataError` with one message naming the file, what is
wrong and what was expected.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

SPLITS = ("train", "validation", "test")
KINDS = ("time_features", "contextual_features", "labels")
CLASSES_FILE = "classes.txt"
# Larger than any survey we expect (16 GiB per file), small enough that a
# corrupt header claiming petabytes is caught before numpy tries to map it.
MAX_ARRAY_BYTES = 16 * 2**30
# Scaled features are clipped so that an outlier can never reach the mask value.
SCALED_CLIP = 10.0
ROWS_PER_CHUNK = 4096
# 1-D labels define the class count as max + 1: a typo such as 10**9 in a
# label file must be an error, not a billion generated class names.
MAX_CLASSES = 10_000


class DataError(ValueError):
    """Invalid input data; the message names the file and what was expected."""


def data_path(data_dir: str | Path, split: str, kind: str) -> Path:
    """Path of one contract file, e.g. `train_time_features.npy`."""
    return Path(data_dir) / f"{split}_{kind}.npy"


# --------------------------------------------------------------------------
# Reading arrays safely
# --------------------------------------------------------------------------

def read_npy_header(path: str | Path) -> tuple[tuple[int, ...], np.dtype]:
    """Check a .npy file's header against the file and return (shape, dtype).

    Raises DataError for a missing, unreadable, empty, non-.npy, truncated or
    oversized file, an object/pickled dtype, or a header claiming an absurd size.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file is missing (expected a .npy array)")
    try:
        size = path.stat().st_size
        if size == 0:
            raise DataError(f"{path}: file is empty (expected a .npy array)")
        with path.open("rb") as stream:
            try:
                version = np.lib.format.read_magic(stream)
                read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                               (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read_header is None:
                    raise ValueError(f"unsupported .npy format version {version}")
                shape, _, dtype = read_header(stream, max_header_size=10000)
            except (ValueError, SyntaxError, EOFError) as error:
                # numpy's own messages can span lines; the contract is one line.
                reason = " ".join(str(error).split())
                raise DataError(f"{path}: not a valid .npy file ({reason})") from error
            data_offset = stream.tell()
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error})") from error
    if dtype.hasobject:
        raise DataError(f"{path}: holds Python objects (dtype {dtype}); pickled arrays are "
                        "never loaded: save a numeric array instead")
    if dtype.kind not in "biuf":
        raise DataError(f"{path}: dtype {dtype} is not numeric (expected float or integer)")
    if any(dim < 0 for dim in shape):
        raise DataError(f"{path}: header has a negative dimension {shape}")
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > MAX_ARRAY_BYTES:
        raise DataError(f"{path}: header claims an absurd size ({claimed:,} bytes for shape "
                        f"{shape}); the limit is {MAX_ARRAY_BYTES:,} bytes")
    actual = size - data_offset
    if actual < claimed:
        raise DataError(f"{path}: file is truncated ({actual:,} data bytes, header shape "
                        f"{shape} {dtype} needs {claimed:,})")
    if actual > claimed:
        raise DataError(f"{path}: file has {actual - claimed:,} unexpected bytes after the "
                        f"array of shape {shape}; it is corrupt or not a single .npy array")
    return tuple(shape), dtype


def load_array(path: str | Path, expected_ndim: tuple[int, ...], what: str,
               mmap: bool = False) -> np.ndarray:
    """Load a checked .npy array of one of `expected_ndim` ranks (never unpickles).

    With `mmap=True` the array stays on disk and is read on access, so data
    larger than memory can be streamed in chunks.
    """
    shape, _ = read_npy_header(path)
    if len(shape) not in expected_ndim:
        ranks = " or ".join(f"{n}-D" for n in expected_ndim)
        raise DataError(f"{path}: has rank {len(shape)} (shape {shape}); expected {ranks} "
                        f"{what}")
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError) as error:
        reason = " ".join(str(error).split())
        raise DataError(f"{path}: cannot be read as a .npy array ({reason})") from error


def iter_chunks(n_rows: int, rows: int = ROWS_PER_CHUNK) -> Iterator[slice]:
    """Row slices covering `n_rows` in order, `rows` at a time."""
    for start in range(0, n_rows, rows):
        yield slice(start, min(start + rows, n_rows))


def padding_mask(time_features: np.ndarray, mask_value: float) -> np.ndarray:
    """(N, T) bool: True where a step is padding (every feature equals the mask value)."""
    return np.all(time_features == mask_value, axis=-1)


def observation_counts(time_features: np.ndarray, mask_value: float) -> np.ndarray:
    """(N,) number of real (unpadded) observations per sequence."""
    return (~padding_mask(time_features, mask_value)).sum(axis=1)


# --------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------

@dataclasses.dataclass
class Split:
    """One split: time features, optional contextual features, integer labels."""

    name: str
    time_features: np.ndarray
    contextual_features: np.ndarray | None
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def arrays(self) -> dict[str, np.ndarray | None]:
        """{"time_features", "contextual_features", "labels"}: what the baselines take."""
        return {"time_features": self.time_features,
                "contextual_features": self.contextual_features, "labels": self.labels}


@dataclasses.dataclass
class Dataset:
    """The validated train/validation/test splits and the class names."""

    splits: dict[str, Split]
    class_names: list[str]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def __getitem__(self, split: str) -> Split:
        return self.splits[split]


def _check_time_features(path: Path, array: np.ndarray, mask_value: float) -> None:
    """Finite values, >= 1 real observation per sequence, padding only trailing."""
    for rows in iter_chunks(len(array)):
        chunk = np.asarray(array[rows])
        bad = ~np.isfinite(chunk)
        if bad.any():
            row, step, feature = np.argwhere(bad)[0]
            raise DataError(f"{path}: {int(bad.sum())} NaN/inf value(s), first at row "
                            f"{rows.start + row}, step {step}, feature {feature}; "
                            f"expected finite numbers (pad with the mask value {mask_value})")
        padded = padding_mask(chunk, mask_value)
        empty = padded.all(axis=1)
        if empty.any():
            row = rows.start + int(np.argmax(empty))
            raise DataError(f"{path}: sequence at row {row} has no real observation (every "
                            f"step equals the mask value {mask_value}); expected at least one")
        gaps = padded[:, :-1] & ~padded[:, 1:]
        if gaps.any():
            row, step = np.argwhere(gaps)[0]
            raise DataError(f"{path}: mask value {mask_value} appears between real "
                            f"observations (row {rows.start + row}, step {step}); padding "
                            "must only follow the last observation")


def _check_finite(path: Path, array: np.ndarray) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise DataError(f"{path}: {int(bad.sum())} NaN/inf value(s), first at row {row}; "
                        "expected finite numbers")


def _label_indices(path: Path, labels: np.ndarray) -> tuple[np.ndarray, int | None]:
    """Integer class indices from one-hot or 1-D labels, and the one-hot width (or None)."""
    if labels.ndim == 2:
        valid = np.isin(labels, (0, 1)).all(axis=1) & (labels.sum(axis=1) == 1)
        if not valid.all():
            row = int(np.argmin(valid))
            raise DataError(f"{path}: row {row} is not one-hot ({labels[row].tolist()}); "
                            "expected exactly one 1 and 0 elsewhere in every row")
        return labels.argmax(axis=1).astype(np.int64), labels.shape[1]
    if labels.dtype.kind not in "iu":
        raise DataError(f"{path}: 1-D labels have dtype {labels.dtype}; expected integer "
                        "class indices (or one-hot 2-D labels)")
    if len(labels) and labels.min() < 0:
        raise DataError(f"{path}: negative class index {int(labels.min())}; expected 0..K-1")
    if len(labels) and labels.max() >= MAX_CLASSES:
        raise DataError(f"{path}: class index {int(labels.max())} is absurd (more than "
                        f"{MAX_CLASSES:,} classes); expected class indices 0..K-1")
    return labels.astype(np.int64), None


def read_class_names(data_dir: str | Path, n_classes: int) -> list[str]:
    """Names from `classes.txt` when present (checked against n_classes), else "class 0".."""
    path = Path(data_dir) / CLASSES_FILE
    if not path.exists():
        return [f"class {index}" for index in range(n_classes)]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise DataError(f"{path}: cannot be read ({reason}); expected one class name per "
                        "line") from error
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != n_classes:
        raise DataError(f"{path}: names {len(names)} classes but the labels have "
                        f"{n_classes}; expected one name per line, in label order")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: class names are not unique ({names})")
    return names


def load_dataset(data_dir: str | Path, mixed: bool = True, mask_value: float = -99.0,
                 splits: tuple[str, ...] = SPLITS) -> Dataset:
    """Load and validate a data folder; raise DataError on the first problem.

    Args:
        data_dir: folder holding the contract files.
        mixed: read the contextual features (False: time series only).
        mask_value: padding value of the time features.
        splits: which splits to load ("train" must be among them whenever
            more than one split is loaded, since class coverage is checked
            against it).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data folder does not exist")
    loaded: dict[str, Split] = {}
    widths: dict[str, tuple[str, int]] = {}
    one_hot_width: tuple[str, int] | None = None
    for split in splits:
        time_path = data_path(data_dir, split, "time_features")
        time = load_array(time_path, (3,), "time features (N, T, F)")
        label_path = data_path(data_dir, split, "labels")
        labels = load_array(label_path, (1, 2), "labels: one-hot (N, K) or class indices (N,)")
        context = context_path = None
        if mixed:
            context_path = data_path(data_dir, split, "contextual_features")
            if not context_path.exists():
                raise DataError(f"{context_path}: file is missing (expected contextual "
                                "features (N, M); use --no-mixed to train on time series only)")
            context = load_array(context_path, (2,), "contextual features (N, M)")
        for path, array in ((label_path, labels), (context_path, context)):
            if path is not None and len(array) != len(time):
                raise DataError(f"{path}: has {len(array)} examples but {time_path.name} has "
                                f"{len(time)}; every file of a split needs the same N")
        if len(time) == 0:
            raise DataError(f"{time_path}: split has no examples")
        for kind, path, width in (("time_features", time_path, time.shape[2]),
                                  ("contextual_features", context_path,
                                   None if context is None else context.shape[1])):
            if path is None:
                continue
            if kind in widths and widths[kind][1] != width:
                raise DataError(f"{path}: has {width} features but {widths[kind][0]} has "
                                f"{widths[kind][1]}; every split needs the same feature width")
            widths.setdefault(kind, (path.name, width))
        _check_time_features(time_path, time, mask_value)
        if mixed:
            _check_finite(context_path, context)
        indices, width = _label_indices(label_path, labels)
        if width is not None:
            if one_hot_width and one_hot_width[1] != width:
                raise DataError(f"{label_path}: has {width} classes but {one_hot_width[0]} has "
                                f"{one_hot_width[1]}; every split needs the same class count")
            one_hot_width = one_hot_width or (label_path.name, width)
        loaded[split] = Split(split, time, context, indices)

    n_classes = one_hot_width[1] if one_hot_width else 1 + max(
        int(s.labels.max()) for s in loaded.values())
    class_names = read_class_names(data_dir, n_classes)
    if n_classes < 2:
        first = data_path(data_dir, next(iter(loaded)), "labels")
        raise DataError(f"{first}: labels hold {n_classes} class; expected at least 2")
    for split in loaded.values():
        if split.labels.max() >= n_classes:
            raise DataError(f"{data_path(data_dir, split.name, 'labels')}: class index "
                            f"{int(split.labels.max())} is out of range for {n_classes} classes")
    if "train" in loaded:
        seen = set(np.unique(loaded["train"].labels).tolist())
        if len(seen) < 2:
            # One-hot labels can declare K columns yet use only one of them.
            raise DataError(f"{data_path(data_dir, 'train', 'labels')}: only class(es) "
                            f"{[class_names[index] for index in sorted(seen)]} occur; "
                            "expected at least 2 classes to learn from")
        for split in loaded.values():
            missing = sorted(set(np.unique(split.labels).tolist()) - seen)
            if missing:
                names = [class_names[index] for index in missing]
                raise DataError(f"{data_path(data_dir, split.name, 'labels')}: class(es) "
                                f"{names} never occur in train_labels.npy; a model cannot "
                                "learn a class it never sees")
    return Dataset(loaded, class_names)


def summarise(dataset: Dataset, mask_value: float = -99.0) -> dict:
    """Figures a person checks first: examples per split and class, imbalance, lengths."""
    summary: dict = {"class_names": dataset.class_names, "splits": {}}
    for name, split in dataset.splits.items():
        counts = np.bincount(split.labels, minlength=dataset.n_classes)
        lengths = np.concatenate([observation_counts(np.asarray(split.time_features[rows]),
                                                     mask_value)
                                  for rows in iter_chunks(len(split))])
        present = counts[counts > 0]
        summary["splits"][name] = {
            "examples": int(len(split)),
            "per_class": dict(zip(dataset.class_names, counts.tolist(), strict=True)),
            "imbalance_ratio": float(present.max() / present.min()),
            "max_steps": int(split.time_features.shape[1]),
            "observations_quantiles": {
                q: float(np.quantile(lengths, float(q))) for q in ("0.0", "0.25", "0.5",
                                                                   "0.75", "1.0")},
            "time_feature_width": int(split.time_features.shape[2]),
            "contextual_feature_width": (None if split.contextual_features is None
                                         else int(split.contextual_features.shape[1])),
        }
    return summary


def pad_sequences(sequences: list[np.ndarray], mask_value: float = -99.0) -> np.ndarray:
    """Stack variable-length (T_i, F) sequences into (N, max T_i, F), padded after the end."""
    length = max(len(sequence) for sequence in sequences)
    padded = np.full((len(sequences), length, sequences[0].shape[1]), mask_value,
                     dtype=np.float32)
    for row, sequence in enumerate(sequences):
        padded[row, :len(sequence)] = sequence
    return padded


def write_dataset(output_dir: str | Path, arrays: dict[str, dict[str, np.ndarray]],
                  class_names: list[str] | None = None) -> Path:
    """Write `{split: {kind: array}}` as contract files (and classes.txt) into output_dir."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for split, kinds in arrays.items():
        for kind, array in kinds.items():
            np.save(data_path(output_dir, split, kind), np.asarray(array), allow_pickle=False)
    if class_names is not None:
        (output_dir / CLASSES_FILE).write_text("\n".join(class_names) + "\n")
    return output_dir


# --------------------------------------------------------------------------
# Scaling
# --------------------------------------------------------------------------

def _time_deltas(time: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Time since the previous real observation (0 for the first); padding untouched."""
    deltas = np.zeros_like(time)
    deltas[:, 1:] = time[:, 1:] - time[:, :-1]
    return np.where(real, deltas, time)


def _with_time_deltas(time_features: np.ndarray, real: np.ndarray, time_column: int,
                      dtype=np.float64) -> np.ndarray:
    """A copy with column `time_column` as time since the previous observation.

    Raises DataError when time goes backwards: observations must be in time order.
    """
    time = np.array(time_features, dtype=dtype)
    if time_column < 0:
        return time
    time[..., time_column] = _time_deltas(time[..., time_column], real)
    backwards = real & (time[..., time_column] < 0)
    if backwards.any():
        row, step = np.argwhere(backwards)[0]
        raise DataError(f"time column {time_column} decreases at row {row}, step {step}; "
                        "expected observations in time order (or set --time-column -1)")
    return time


def _safe_scale(*candidates: float) -> float:
    """The first candidate that is a usable divisor; 1.0 for a constant feature."""
    for value in candidates:
        if np.isfinite(value) and value > 1e-12:
            return float(value)
    return 1.0


@dataclasses.dataclass
class FeatureScaler:
    """Per-feature transform fitted on real values of a (rows, features) matrix."""

    method: str
    center: list[float]
    scale: list[float]
    post_mean: list[float]
    post_std: list[float]

    @classmethod
    def fit(cls, values: np.ndarray, method: str) -> FeatureScaler:
        """Fit on `values` (rows, features) holding only real observations."""
        values = np.asarray(values, dtype=np.float64)
        n_features = values.shape[1]
        center, scale = np.zeros(n_features), np.ones(n_features)
        for feature in range(n_features):
            column = values[:, feature]
            median = float(np.median(column))
            q25, q75 = np.quantile(column, (0.25, 0.75))
            mad = float(np.median(np.abs(column - median))) * 1.4826
            if method == "standard":
                center[feature] = column.mean()
                scale[feature] = _safe_scale(column.std())
            elif method == "robust":
                center[feature] = median
                scale[feature] = _safe_scale(q75 - q25, column.std())
            elif method == "asinh":
                center[feature] = median
                scale[feature] = _safe_scale(mad, (q75 - q25) / 1.349, column.std())
        scaler = cls(method, center.tolist(), scale.tolist(), [0.0] * n_features,
                     [1.0] * n_features)
        if method == "asinh":
            # asinh compresses heavy tails; standardising afterwards puts every
            # feature on a comparable scale for the recurrent layers.
            transformed = scaler.transform(values)
            scaler.post_mean = transformed.mean(axis=0).tolist()
            scaler.post_std = [_safe_scale(s) for s in transformed.std(axis=0)]
        return scaler

    def transform(self, values: np.ndarray, dtype=np.float64) -> np.ndarray:
        """Apply the fitted transform to (..., features) values (no clipping).

        Fitting computes in float64; model inputs are computed in float32,
        which is what the model reads and ~3x faster (inference scales every
        batch).
        """
        values = np.asarray(values, dtype=dtype)
        if self.method == "none":
            return values
        scaled = (values - np.asarray(self.center, dtype)) / np.asarray(self.scale, dtype)
        if self.method == "asinh":
            scaled = ((np.arcsinh(scaled) - np.asarray(self.post_mean, dtype))
                      / np.asarray(self.post_std, dtype))
        return scaled


def _scale_and_clip(scaler: FeatureScaler, values: np.ndarray) -> np.ndarray:
    """float32 transformed values clipped to +-SCALED_CLIP; method "none" leaves them unclipped."""
    scaled = scaler.transform(values, np.float32)
    if scaler.method == "none":
        # Unscaled values keep their units: clipping would flatten e.g. magnitudes
        # of 18 to 10. A real step never equals the mask in every feature (it
        # would be padding), so it needs no guard against the mask value either.
        return scaled
    return np.clip(scaled, -SCALED_CLIP, SCALED_CLIP)


@dataclasses.dataclass
class Scaler:
    """Scaling of a dataset's time and contextual features, saved beside each model."""

    mask_value: float
    time_column: int
    time: FeatureScaler
    context: FeatureScaler | None

    @classmethod
    def fit(cls, train: Split, method: str, mask_value: float, time_column: int = -1) -> Scaler:
        """Fit on the training split's real (unpadded) steps and its contextual features."""
        n_features = train.time_features.shape[2]
        if not -1 <= time_column < n_features:
            raise DataError(f"time_column {time_column} is out of range: the time features "
                            f"have {n_features} columns (use -1 for no time column)")
        real = ~padding_mask(train.time_features, mask_value)
        time = _with_time_deltas(train.time_features, real, time_column)
        context = None
        if train.contextual_features is not None:
            context = FeatureScaler.fit(train.contextual_features, method)
        return cls(mask_value, time_column, FeatureScaler.fit(time[real], method), context)

    def transform(self, time_features: np.ndarray, contextual_features: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray | None]:
        """Scaled float32 copies; padding steps keep exactly the mask value."""
        real = ~padding_mask(time_features, self.mask_value)
        time = _with_time_deltas(time_features, real, self.time_column, np.float32)
        scaled = _scale_and_clip(self.time, time)
        scaled = np.where(real[..., None], scaled, np.float32(self.mask_value))
        context = None
        if contextual_features is not None and self.context is not None:
            context = _scale_and_clip(self.context, contextual_features)
        return scaled, context

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Scaler:
        context = values["context"]
        return cls(values["mask_value"], values["time_column"],
                   FeatureScaler(**values["time"]),
                   None if context is None else FeatureScaler(**context))

    def save(self, path: str | Path) -> None:
        """Write the statistics as JSON (never a pickle)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Scaler:
        return cls.from_dict(json.loads(Path(path).read_text()))
