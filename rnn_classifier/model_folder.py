"""A trained model folder, checked whole before anything is done with it.

A model folder is input to `predict`, `evaluate` and the champion comparison,
and it may be half copied, hand edited or hostile. `load_model_folder` checks
every file before the model is built: that each one exists and parses, that its
contents follow their schema, and that `model.keras` is an intact zip whose
architecture uses only Keras's own classes and this package's registered layers
(no Lambda, no Python code). Only then is the model loaded, in Keras's safe
mode. After loading, it checks that the widths and classes of the files match
the model's inputs and output. Every problem is one DataError naming the file,
what is wrong and what was expected; the CLI turns it into exit status 2.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnn_classifier.config import SCALINGS, ConfigError, TrainConfig
from rnn_classifier.data import DataError, FeatureScaler, Scaler
from rnn_classifier.train import CLASSES_FILE, CONFIG_FILE, MODEL_FILE, SCALER_FILE

REQUIRED_FILES = (MODEL_FILE, CONFIG_FILE, SCALER_FILE, CLASSES_FILE)
# What a .keras archive written by Keras 3 holds.
ARCHIVE_MEMBERS = ("metadata.json", "config.json", "model.weights.h5")
# A model of this project is a few MB; a larger archive is not one of ours (or a zip bomb).
MAX_ARCHIVE_BYTES = 2 * 1024**3
MAX_TEXT_BYTES = 16 * 1024**2
# Keras classes that run arbitrary code or load outside graphs.
REFUSED_CLASSES = frozenset({"Lambda", "TFSMLayer", "function"})
# Placeholders Keras writes in place of tensors inside a functional config.
KERAS_PLACEHOLDERS = frozenset({"__keras_tensor__", "__tensor__", "__numpy__"})
PACKAGE = "rnn_classifier"


@dataclass(frozen=True)
class ModelFolder:
    """A checked and loaded model folder: the Keras model and what it was trained with."""

    model: Any
    config: TrainConfig
    scaler: Scaler
    class_names: list[str]


def _read_text(path: Path) -> str:
    if path.stat().st_size > MAX_TEXT_BYTES:
        raise DataError(f"{path}: {path.stat().st_size} bytes; expected a small text file "
                        f"(at most {MAX_TEXT_BYTES} bytes)")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start}); expected the file "
                        "train writes") from error


def _read_json_object(path: Path) -> dict:
    try:
        values = json.loads(_read_text(path), parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON (line {error.lineno}: {error.msg}); expected "
                        "the file train writes") from error
    if not isinstance(values, dict):
        raise DataError(f"{path}: holds a JSON {type(values).__name__}; expected an object")
    return values


def _refuse_constant(name: str):
    raise json.JSONDecodeError(f"{name} is not a number JSON allows", name, 0)


def check_files(model_dir: Path) -> None:
    """Each required file exists and is a regular file."""
    if not model_dir.is_dir():
        raise DataError(f"{model_dir}: not a folder; expected a model folder written by train")
    for name in REQUIRED_FILES:
        path = model_dir / name
        if not path.is_file():
            raise DataError(f"{path}: missing; {model_dir} is not a complete model folder "
                            f"(train writes {', '.join(REQUIRED_FILES)})")
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty; expected the file train writes (a partial copy?)")


def read_config(path: Path) -> TrainConfig:
    """config.json as a TrainConfig: every key known, every value in range."""
    _read_json_object(path)  # train writes JSON; the YAML reader below would accept more
    try:
        return TrainConfig.load(path)
    except (ConfigError, TypeError, ValueError) as error:
        reason = str(error).removeprefix(f"{path}: ")
        raise DataError(f"{path}: {reason}; expected the resolved config train writes") from error


def _numbers(path: Path, where: str, values: Any, length: int | None, positive: bool) -> int:
    if not isinstance(values, list) or not values:
        raise DataError(f"{path}: {where} is {type(values).__name__}; expected a non-empty "
                        "list of numbers")
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value):
            raise DataError(f"{path}: {where}[{index}] is {value!r}; expected a finite number")
        if positive and value <= 0:
            raise DataError(f"{path}: {where}[{index}] is {value!r}; expected a positive number")
    if length is not None and len(values) != length:
        raise DataError(f"{path}: {where} has {len(values)} values; expected {length}, one per "
                        "feature like the other statistics")
    return len(values)


def _feature_scaler(path: Path, where: str, values: Any) -> FeatureScaler:
    expected = {"method", "center", "scale", "post_mean", "post_std"}
    if not isinstance(values, dict) or set(values) != expected:
        keys = sorted(values) if isinstance(values, dict) else type(values).__name__
        raise DataError(f"{path}: {where} is {keys}; expected an object with keys "
                        f"{sorted(expected)}")
    if values["method"] not in SCALINGS:
        raise DataError(f"{path}: {where}.method is {values['method']!r}; expected one of "
                        f"{', '.join(SCALINGS)}")
    width = _numbers(path, f"{where}.center", values["center"], None, False)
    _numbers(path, f"{where}.scale", values["scale"], width, True)
    _numbers(path, f"{where}.post_mean", values["post_mean"], width, False)
    _numbers(path, f"{where}.post_std", values["post_std"], width, True)
    return FeatureScaler(**values)


def read_scaler(path: Path, config: TrainConfig) -> Scaler:
    """scaler.json as a Scaler, consistent with the config it was trained with."""
    values = _read_json_object(path)
    expected = {"mask_value", "time_column", "time", "context"}
    if set(values) != expected:
        raise DataError(f"{path}: has keys {sorted(values)}; expected {sorted(expected)}")
    if values["mask_value"] != config.mask_value:
        raise DataError(f"{path}: mask_value is {values['mask_value']!r}; expected "
                        f"{config.mask_value!r}, the mask_value of {CONFIG_FILE}")
    if values["time_column"] != config.time_column:
        raise DataError(f"{path}: time_column is {values['time_column']!r}; expected "
                        f"{config.time_column!r}, the time_column of {CONFIG_FILE}")
    time = _feature_scaler(path, "time", values["time"])
    if not -1 <= config.time_column < len(time.center):
        raise DataError(f"{path}: time_column {config.time_column} is outside the "
                        f"{len(time.center)} time features")
    if config.mixed and values["context"] is None:
        raise DataError(f"{path}: context is null; expected contextual-feature statistics "
                        f"(the model uses contextual features: mixed is true in {CONFIG_FILE})")
    context = (None if values["context"] is None
               else _feature_scaler(path, "context", values["context"]))
    return Scaler(values["mask_value"], values["time_column"], time, context)


def read_class_names(path: Path) -> list[str]:
    """classes.txt: one distinct, non-empty class name per line."""
    names = [line.strip() for line in _read_text(path).splitlines()]
    names = [name for name in names if name]
    if not names:
        raise DataError(f"{path}: no class names; expected one name per line, in label order")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(f"{path}: class name(s) {duplicates} repeated; expected distinct names")
    return names


def override_class_names(class_names: list[str], labels: Sequence[str] | None,
                         model_dir: Path) -> list[str]:
    """`labels` (the CLI's `--label NAME`s) in place of classes.txt's names, else those names.

    Raises:
        DataError: `labels` is not one distinct, non-empty name per class.
    """
    if labels is None:
        return class_names
    labels = [label.strip() for label in labels]
    if len(labels) != len(class_names):
        names = "name" if len(labels) == 1 else "names"
        raise DataError(f"--label was given {len(labels)} {names} but the model in {model_dir} "
                        f"has {len(class_names)} classes ({CLASSES_FILE}: "
                        f"{', '.join(class_names)}); give one --label per class, in label order")
    if not all(labels):
        raise DataError("--label was given an empty name; expected one non-empty name per class")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise DataError(f"--label was given {repeated} more than once; expected distinct names")
    return labels


def _archive_classes(node: Any, found: set[tuple[str | None, str, str | None]]) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("class_name"), str):
            found.add((node.get("module"), node["class_name"], node.get("registered_name")))
        for value in node.values():
            _archive_classes(value, found)
    elif isinstance(node, list):
        for value in node:
            _archive_classes(value, found)


def _refused_class(module: str | None, class_name: str, registered: str | None) -> str | None:
    """Why a class in the archive's config may not be loaded, or None if it may."""
    if class_name in REFUSED_CLASSES:
        return f"a {class_name} (it would run Python code from the file)"
    if module is None:
        return None if class_name in KERAS_PLACEHOLDERS else f"an unknown object {class_name!r}"
    if module == "keras" or module.startswith("keras."):
        return None
    if module.startswith(PACKAGE + "."):
        import keras

        if registered and registered.startswith(PACKAGE + ">") and (
                keras.saving.get_registered_object(registered) is not None):
            return None
        return f"{registered or class_name!r}, which is not a registered {PACKAGE} class"
    return f"{class_name!r} from module {module!r} (only Keras and {PACKAGE} classes load)"


def check_archive(path: Path) -> None:
    """model.keras is an intact Keras archive whose config names only safe classes."""
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a zip archive; expected a Keras .keras file "
                        "(truncated or not a model?)")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            missing = [name for name in ARCHIVE_MEMBERS if name not in members]
            if missing:
                raise DataError(f"{path}: lacks {', '.join(missing)}; expected a Keras 3 .keras "
                                f"archive ({', '.join(ARCHIVE_MEMBERS)})")
            size = sum(info.file_size for info in members.values())
            if size > MAX_ARCHIVE_BYTES:
                raise DataError(f"{path}: unpacks to {size} bytes; expected at most "
                                f"{MAX_ARCHIVE_BYTES}")
            damaged = archive.testzip()
            if damaged is not None:
                raise DataError(f"{path}: member {damaged} fails its CRC check; the file is "
                                "damaged (a partial copy?)")
            try:
                architecture = json.loads(archive.read("config.json").decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise DataError(f"{path}: its config.json is not valid JSON ({error}); "
                                "expected the architecture Keras writes") from error
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as error:
        raise DataError(f"{path}: cannot be read as a zip archive ({error}); expected a "
                        "Keras .keras file") from error
    _register_model_classes()
    found: set[tuple[str | None, str, str | None]] = set()
    _archive_classes(architecture, found)
    for module, class_name, registered in sorted(found, key=str):
        reason = _refused_class(module, class_name, registered)
        if reason:
            raise DataError(f"{path}: holds {reason}; refused, expected a model written by "
                            "rnn-classifier train")


def _register_model_classes() -> None:
    """Register every class a model of ours may hold, before it is checked or loaded.

    `model` imports each module whose layers `build_model` uses, so a new layer
    module is registered here without being listed; losses are not part of it.
    """
    import rnn_classifier.losses  # noqa: F401
    import rnn_classifier.model  # noqa: F401


def _load_keras(path: Path):
    import keras

    _register_model_classes()
    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # noqa: BLE001  Keras raises many types for a bad archive
        reason = " ".join(str(error).split())[:300] or type(error).__name__
        raise DataError(f"{path}: cannot be loaded as a Keras model ({reason}); expected a "
                        "model written by rnn-classifier train") from error


def _input_width(model, name: str) -> int | None:
    for tensor in model.inputs:
        if tensor.name == name:
            return tensor.shape[-1]
    return None


def check_consistency(model_dir: Path, model, config: TrainConfig, scaler: Scaler,
                      class_names: list[str]) -> None:
    """The widths and classes of the files match the model's inputs and output."""
    from rnn_classifier.model import CONTEXT_INPUT, TIME_INPUT

    width = _input_width(model, TIME_INPUT)
    if width is None:
        raise DataError(f"{model_dir / MODEL_FILE}: has no {TIME_INPUT!r} input; expected a "
                        "model written by rnn-classifier train")
    if width != len(scaler.time.center):
        raise DataError(f"{model_dir / SCALER_FILE}: scales {len(scaler.time.center)} time "
                        f"features; expected {width}, the width of {MODEL_FILE}'s input")
    context_width = _input_width(model, CONTEXT_INPUT)
    if config.mixed != (context_width is not None):
        raise DataError(f"{model_dir / CONFIG_FILE}: mixed is {str(config.mixed).lower()}; "
                        f"expected {str(context_width is not None).lower()}: {MODEL_FILE} "
                        f"{'has' if context_width is not None else 'has no'} {CONTEXT_INPUT} "
                        "input")
    if context_width is not None and scaler.context is not None and (
            context_width != len(scaler.context.center)):
        raise DataError(f"{model_dir / SCALER_FILE}: scales {len(scaler.context.center)} "
                        f"contextual features; expected {context_width}, the width of "
                        f"{MODEL_FILE}'s {CONTEXT_INPUT} input")
    n_outputs = model.output_shape[-1]
    if len(class_names) != n_outputs:
        raise DataError(f"{model_dir / CLASSES_FILE}: names {len(class_names)} classes; "
                        f"expected {n_outputs}, the outputs of {MODEL_FILE}")


def load_model_folder(model_dir: str | Path) -> ModelFolder:
    """Check a model folder whole, then load it (model.keras in safe mode).

    Raises:
        DataError: naming the file, what is wrong and what was expected, for
            the first problem found; nothing is loaded in that case.
    """
    model_dir = Path(model_dir)
    check_files(model_dir)
    config = read_config(model_dir / CONFIG_FILE)
    scaler = read_scaler(model_dir / SCALER_FILE, config)
    class_names = read_class_names(model_dir / CLASSES_FILE)
    check_archive(model_dir / MODEL_FILE)
    model = _load_keras(model_dir / MODEL_FILE)
    check_consistency(model_dir, model, config, scaler, class_names)
    return ModelFolder(model, config, scaler, class_names)
