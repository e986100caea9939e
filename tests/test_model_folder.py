"""Damaged model folders are refused whole: one line naming the file, exit 2, nothing written.

One small model is trained once; every case copies its folder, damages one
file the way a partial copy, a hand edit or a hostile upload would, and runs
the real `predict` and `evaluate` commands on it.
"""

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from rnn_classifier.cli import main
from rnn_classifier.data import DataError
from rnn_classifier.model_folder import load_model_folder

SAMPLE_DATA = Path(__file__).parent / "fixtures" / "sample_data"
TINY = ["--epochs", "1", "--rnn-units", "4", "--dense-units", "4", "--conv-filters", "4",
        "--min-steps-per-epoch", "1", "--batch-size", "256"]


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("trained") / "model"
    assert main(["train", "--data-dir", str(SAMPLE_DATA), "--output-dir", str(folder),
                 *TINY]) == 0
    return folder


def rewrite_archive(path: Path, edit) -> None:
    """Rewrite model.keras with `edit(name, bytes) -> bytes | None` applied (None drops)."""
    with zipfile.ZipFile(path) as archive:
        members = [(info.filename, archive.read(info.filename)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members:
            data = edit(name, data)
            if data is not None:
                archive.writestr(name, data)


def edit_architecture(path: Path, change) -> None:
    def edit(name, data):
        if name != "config.json":
            return data
        architecture = json.loads(data)
        change(architecture)
        return json.dumps(architecture).encode()
    rewrite_archive(path, edit)


def layers(architecture: dict) -> list[dict]:
    return architecture["config"]["layers"]


def edit_json(path: Path, change) -> None:
    values = json.loads(path.read_text())
    change(values)
    path.write_text(json.dumps(values))


def lambda_archive(path: Path) -> None:
    import keras

    inputs = keras.Input((None, 3), name="time_features")
    doubled = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(doubled))
    keras.Model(inputs, outputs).save(path)


def flip_byte_in_weights(path: Path) -> None:
    rewrite_archive(path, lambda name, data: data)  # stored, so the weights' bytes are in place
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("model.weights.h5")
    raw = bytearray(path.read_bytes())
    # Past the local header (30 bytes + name + extra), in the middle of the member's data.
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size // 2
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def widen(scaler: dict) -> None:
    for key in ("center", "scale", "post_mean", "post_std"):
        scaler["time"][key].append(1.0)


def set_key(key, value):
    return lambda values: values.__setitem__(key, value)


# (case, file damaged, damage(folder), words the one-line error must hold)
DAMAGES = [
    ("model missing", "model.keras", lambda f: (f / "model.keras").unlink(), "missing"),
    ("model empty", "model.keras", lambda f: (f / "model.keras").write_bytes(b""), "empty"),
    ("model truncated", "model.keras", lambda f: (f / "model.keras").write_bytes(
        (f / "model.keras").read_bytes()[:2000]), "zip"),
    ("model not a zip", "model.keras", lambda f: (f / "model.keras").write_text(
        "not a model"), "not a zip"),
    ("model holds a Lambda layer", "model.keras", lambda f: lambda_archive(f / "model.keras"),
     "Lambda"),
    ("model without weights", "model.keras", lambda f: rewrite_archive(
        f / "model.keras", lambda name, data: None if name == "model.weights.h5" else data),
     "model.weights.h5"),
    ("model with a damaged member", "model.keras",
     lambda f: flip_byte_in_weights(f / "model.keras"), "CRC"),
    ("model names a foreign class", "model.keras", lambda f: edit_architecture(
        f / "model.keras", lambda a: layers(a)[1].update(module="os", class_name="system")),
     "'os'"),
    ("model names an unregistered class of ours", "model.keras", lambda f: edit_architecture(
        f / "model.keras", lambda a: layers(a)[1].update(
            registered_name="rnn_classifier>Nothing")), "not a registered"),
    ("model architecture not JSON", "model.keras", lambda f: rewrite_archive(
        f / "model.keras", lambda name, data: b"{" if name == "config.json" else data),
     "not valid JSON"),
    ("config malformed", "config.json", lambda f: (f / "config.json").write_text("{rnn: [}"),
     "not valid JSON"),
    ("config a list", "config.json", lambda f: (f / "config.json").write_text("[1, 2]"),
     "expected an object"),
    ("config unknown key", "config.json",
     lambda f: edit_json(f / "config.json", set_key("rnn_cells", 3)), "rnn_cells"),
    ("config value out of range", "config.json",
     lambda f: edit_json(f / "config.json", set_key("rnn_units", -4)), "rnn_units"),
    ("config NaN", "config.json", lambda f: (f / "config.json").write_text(
        (f / "config.json").read_text().replace('"dropout": 0.2', '"dropout": NaN')), "NaN"),
    ("config says no context", "config.json",
     lambda f: edit_json(f / "config.json", set_key("mixed", False)), "mixed"),
    ("scaler malformed", "scaler.json", lambda f: (f / "scaler.json").write_text("{"),
     "not valid JSON"),
    ("scaler key missing", "scaler.json",
     lambda f: edit_json(f / "scaler.json", lambda s: s.pop("time")), "keys"),
    ("scaler zero scale", "scaler.json", lambda f: edit_json(
        f / "scaler.json", lambda s: s["time"]["scale"].__setitem__(0, 0.0)), "positive"),
    ("scaler ragged statistics", "scaler.json", lambda f: edit_json(
        f / "scaler.json", lambda s: s["time"]["center"].pop()), "values"),
    ("scaler wider than the model", "scaler.json", lambda f: edit_json(
        f / "scaler.json", lambda s: widen(s)), "width"),
    ("scaler string statistic", "scaler.json", lambda f: edit_json(
        f / "scaler.json", lambda s: s["time"]["center"].__setitem__(0, "1e3")), "number"),
    ("scaler unknown method", "scaler.json", lambda f: edit_json(
        f / "scaler.json", lambda s: s["time"].__setitem__("method", "log")), "method"),
    ("scaler other mask value", "scaler.json",
     lambda f: edit_json(f / "scaler.json", set_key("mask_value", 0.0)), "mask_value"),
    ("classes more than outputs", "classes.txt",
     lambda f: (f / "classes.txt").write_text("a\nb\nc\n"), "expected 2"),
    ("classes repeated", "classes.txt", lambda f: (f / "classes.txt").write_text("a\na\n"),
     "repeated"),
    ("classes not text", "classes.txt",
     lambda f: (f / "classes.txt").write_bytes(b"\xff\xfe\x00a"), "UTF-8"),
    ("classes blank", "classes.txt", lambda f: (f / "classes.txt").write_text("\n \n"),
     "no class names"),
]


def folder_digest(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.iterdir()) if path.is_file()}


@pytest.mark.parametrize("case,damaged_file,damage,words", DAMAGES,
                         ids=[case for case, *_ in DAMAGES])
def test_damaged_model_folder_is_refused_by_predict_and_evaluate(
        case, damaged_file, damage, words, trained_folder, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(trained_folder, folder)
    damage(folder)
    before = folder_digest(folder)
    with pytest.raises(DataError) as raised:
        load_model_folder(folder)
    assert str(folder / damaged_file) in str(raised.value)
    assert words in str(raised.value)

    predictions = tmp_path / "out" / "predictions.csv"
    evaluation = tmp_path / "evaluation"
    for argv in (["predict", "--model-dir", str(folder), "--data-dir", str(SAMPLE_DATA),
                  "--split", "test", "--output", str(predictions)],
                 ["evaluate", "--model-dir", str(folder), "--data-dir", str(SAMPLE_DATA),
                  "--output-dir", str(evaluation)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and str(folder / damaged_file) in err[-1]
        assert "Traceback" not in "\n".join(err)
    assert not (tmp_path / "out").exists() and not evaluation.exists()
    assert not (folder / "evaluation").exists()
    assert folder_digest(folder) == before


def test_an_intact_folder_loads_with_its_calibration(trained_folder):
    loaded = load_model_folder(trained_folder)
    assert loaded.class_names == (trained_folder / "classes.txt").read_text().splitlines()
    assert loaded.model.output_shape == (None, len(loaded.class_names))
    assert loaded.model.get_layer("calibrated_probabilities").temperature > 0


def _champion_bucket(tmp_path: Path, champion_dir: Path) -> str:
    from rnn_classifier import retrain

    bucket = str(tmp_path / "bucket")
    retrain.write_champion(bucket, {"run": "old", "model_uri": str(champion_dir)}, 0)
    return bucket


def _compare(tmp_path: Path, challenger: Path, bucket: str, **options):
    from kfp import dsl

    from rnn_classifier.retrain_steps import compare_step

    metrics = dsl.Metrics(uri=str(tmp_path / "metrics.json"))
    report = dsl.Markdown(uri=str(tmp_path / "report.md"))
    return compare_step(str(SAMPLE_DATA), str(challenger), bucket, "macro_f1", 0.0, 0.05,
                        metrics, report, **options)


def test_a_damaged_champion_stops_compare_and_leaves_the_pointer(trained_folder, tmp_path):
    from rnn_classifier import retrain

    champion = tmp_path / "champion"
    shutil.copytree(trained_folder, champion)
    (champion / "model.keras").write_bytes((champion / "model.keras").read_bytes()[:500])
    bucket = _champion_bucket(tmp_path, champion)
    pointer_before = retrain.read_champion(bucket)
    with pytest.raises(DataError) as raised:
        _compare(tmp_path, trained_folder, bucket)
    message = str(raised.value)
    assert str(champion / "model.keras") in message and "unchanged" in message
    assert retrain.read_champion(bucket) == pointer_before

    # With the pipeline parameter replace_unusable_champion it counts as absent, and says why.
    promote, reason, generation, decision = _compare(
        tmp_path, trained_folder, bucket, replace_unusable_champion=True)
    assert promote and "replace_unusable_champion" in reason
    assert str(champion / "model.keras") in decision["champion_unusable"]
    assert generation == str(pointer_before[1])
