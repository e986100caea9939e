"""rnn_classifier.storage against local folders and the real gcp-storage-emulator server."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from pathlib import Path

import pytest

from rnn_classifier import storage
from rnn_classifier.cli import main
from rnn_classifier.storage import (
    StorageConflict,
    StorageError,
    StorageNotFound,
    copy_folder,
    download_file,
    download_folder,
    exists,
    join_uri,
    list_files,
    list_folders,
    local_input,
    local_output,
    read_bytes,
    read_json,
    read_text,
    upload_file,
    upload_folder,
    write_bytes,
    write_json,
    write_text,
)

SAMPLE_DATA = Path(__file__).parent / "fixtures" / "sample_data"
MIB = 1024 * 1024
# A session URL or token left unredacted in a message.
LEAK = re.compile(r"(?i)bearer|ya29\.|upload_id=(?!<redacted>)|access_token=(?!<redacted>)")


@pytest.fixture(params=["local", "gcs"])
def root(request, tmp_path) -> str:
    """A folder to work in: a local path, or a prefix in a fresh emulator bucket."""
    if request.param == "local":
        return str(tmp_path / "root")
    return f"{request.getfixturevalue('gcs_bucket')}/root"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(8 * MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def random_file(path: Path, size: int) -> str:
    """Write `size` random bytes a chunk at a time; return their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as stream:
        for offset in range(0, size, 8 * MIB):
            block = os.urandom(min(8 * MIB, size - offset))
            digest.update(block)
            stream.write(block)
    return digest.hexdigest()


def no_leaks(*texts: str) -> None:
    for text in texts:
        assert not LEAK.search(text), f"credential or session URL in: {text}"


# --------------------------------------------------------------------------
# URIs
# --------------------------------------------------------------------------

def test_join_uri_keeps_the_double_slash_of_gs():
    assert join_uri("gs://b/models/", "m1", "model.keras") == "gs://b/models/m1/model.keras"
    assert join_uri("gs://b", "x") == "gs://b/x"
    assert join_uri("/tmp/a", "b") == "/tmp/a/b"
    assert str(Path("gs://b/x")) == "gs:/b/x"  # why the CLI keeps URIs as strings


def test_messages_are_scrubbed_of_tokens():
    text = storage._describe(RuntimeError(
        "401 PUT https://h/upload?uploadType=resumable&upload_id=ADPyc123 headers "
        "{'Authorization': 'Bearer ya29.secret'} access_token=abc"))
    assert "ya29" not in text and "ADPyc123" not in text and "abc" not in text
    no_leaks(text)


# --------------------------------------------------------------------------
# Files, JSON, listing: the same behaviour locally and on Cloud Storage
# --------------------------------------------------------------------------

def test_bytes_text_and_json_round_trip(root):
    write_bytes(join_uri(root, "a.bin"), b"\x00\x01binary")
    write_text(join_uri(root, "sub/b.txt"), "h\u00e9llo\n")
    assert read_bytes(join_uri(root, "a.bin")) == b"\x00\x01binary"
    assert read_text(join_uri(root, "sub/b.txt")) == "h\u00e9llo\n"
    assert read_json(join_uri(root, "c.json")) == (None, 0)
    generation = write_json(join_uri(root, "c.json"), {"auc": 0.97, "runs": [1, 2]})
    assert read_json(join_uri(root, "c.json")) == ({"auc": 0.97, "runs": [1, 2]}, generation)
    assert generation > 0
    write_bytes(join_uri(root, "a.bin"), b"replaced")
    assert read_bytes(join_uri(root, "a.bin")) == b"replaced"
    assert exists(join_uri(root, "a.bin")) and exists(join_uri(root, "sub"))
    assert not exists(join_uri(root, "missing"))
    with pytest.raises(StorageNotFound, match="missing"):
        read_bytes(join_uri(root, "missing"))
    # No temporary name is left behind by any of those writes.
    assert list_files(root) == ["a.bin", "c.json", "sub/b.txt"]


def test_compare_and_swap_lets_one_of_two_writers_win(root):
    uri = join_uri(root, "champion.json")
    write_json(uri, {"model": "m0"})
    first, generation = read_json(uri)
    second, same_generation = read_json(uri)
    assert generation == same_generation
    new_generation = write_json(uri, {"model": "m1"}, if_generation_match=generation)
    with pytest.raises(StorageConflict, match="changed since it was read"):
        write_json(uri, {"model": "m2"}, if_generation_match=same_generation)
    assert read_json(uri) == ({"model": "m1"}, new_generation)
    # 0 means "must not exist yet".
    with pytest.raises(StorageConflict):
        write_json(uri, {"model": "m3"}, if_generation_match=0)
    assert write_json(join_uri(root, "new.json"), {}, if_generation_match=0) > 0
    assert list_files(root) == ["champion.json", "new.json"]


def test_local_compare_and_swap_serialises_concurrent_writers(tmp_path):
    uri = tmp_path / "counter.json"
    write_json(uri, {"count": 0})

    def increment(times: int) -> None:
        done = 0
        while done < times:
            value, generation = read_json(uri)
            try:
                write_json(uri, {"count": value["count"] + 1}, if_generation_match=generation)
            except StorageConflict:
                continue
            done += 1

    threads = [threading.Thread(target=increment, args=(10,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert read_json(uri)[0] == {"count": 40}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["counter.json"]


def test_list_files_and_folders(root):
    for name in ("batches/2026-11-01/a.npy", "batches/2026-11-01/b.npy",
                 "batches/2026-11-02/a.npy", "batches/index.json", "top.txt"):
        write_text(join_uri(root, name), name)
    assert list_files(root) == ["batches/2026-11-01/a.npy", "batches/2026-11-01/b.npy",
                                "batches/2026-11-02/a.npy", "batches/index.json", "top.txt"]
    assert list_files(join_uri(root, "batches/2026-11-01")) == ["a.npy", "b.npy"]
    assert list_folders(root) == ["batches/"]
    assert list_folders(join_uri(root, "batches")) == ["2026-11-01/", "2026-11-02/"]
    assert list_files(join_uri(root, "nothing-here")) == []
    assert list_folders(join_uri(root, "nothing-here")) == []


def test_leftover_temporary_objects_are_invisible(gcs_bucket):
    # What a writer killed between upload and copy leaves behind.
    leftover = f"{gcs_bucket}/models/m1/model.keras{storage.TEMP_MARKER}{'0' * 32}"
    storage._blob(leftover).upload_from_string(b"half")
    write_text(f"{gcs_bucket}/models/m1/config.json", "{}")
    assert list_files(f"{gcs_bucket}/models/m1") == ["config.json"]
    assert not exists(f"{gcs_bucket}/models/m1/model.keras")


def test_missing_bucket_is_not_found_at_once(gcs_bucket, monkeypatch):
    monkeypatch.setattr(storage, "RETRY_DEADLINE_S", 30.0)
    started = time.monotonic()
    with pytest.raises(StorageNotFound, match="gs://no-such-bucket-x/data"):
        list_files("gs://no-such-bucket-x/data")
    assert time.monotonic() - started < 5  # a 404 is not retried


# --------------------------------------------------------------------------
# Folders and the local_input / local_output adapters
# --------------------------------------------------------------------------

def test_folders_round_trip_both_ways(gcs_bucket, tmp_path):
    source = tmp_path / "source"
    (source / "evaluation").mkdir(parents=True)
    (source / "model.keras").write_bytes(b"weights")
    (source / "config.json").write_text("{}")
    (source / "evaluation" / "metrics.json").write_text("{}")
    uri = f"{gcs_bucket}/models/m1"
    assert upload_folder(source, uri, last=("model.keras",)) == [
        "config.json", "evaluation/metrics.json", "model.keras"]
    assert list_files(uri) == ["config.json", "evaluation/metrics.json", "model.keras"]
    flat = download_folder(uri, tmp_path / "flat")
    assert sorted(path.name for path in flat.iterdir()) == ["config.json", "model.keras"]
    deep = download_folder(uri, tmp_path / "deep", recursive=True)
    assert (deep / "evaluation" / "metrics.json").read_text() == "{}"
    only = download_folder(uri, tmp_path / "only", names=["config.json", "absent"])
    assert [path.name for path in only.iterdir()] == ["config.json"]
    with pytest.raises(StorageNotFound, match="no files"):
        download_folder(f"{gcs_bucket}/nothing", tmp_path / "none")

    # copy_folder: local -> gs, gs -> local, local -> local.
    copy_folder(SAMPLE_DATA, f"{gcs_bucket}/data")
    local = copy_folder(f"{gcs_bucket}/data", tmp_path / "data")
    again = copy_folder(local, tmp_path / "again")
    for name in sorted(path.name for path in SAMPLE_DATA.iterdir()):
        assert (again / name).read_bytes() == (SAMPLE_DATA / name).read_bytes()


def test_local_input_and_output(gcs_bucket, tmp_path):
    write_text(f"{gcs_bucket}/in/a.txt", "a")
    write_text(f"{gcs_bucket}/in/sub/b.txt", "b")
    with local_input(f"{gcs_bucket}/in") as folder:
        assert folder.name == "in"
        assert sorted(path.name for path in folder.iterdir()) == ["a.txt"]
    assert not folder.exists()
    with local_input(f"{gcs_bucket}/in/a.txt") as file:
        assert file.read_text() == "a"
    with local_input(tmp_path) as same:
        assert same == tmp_path

    with local_output(f"{gcs_bucket}/out") as folder:
        (folder / "x.txt").write_text("x")
        (folder / "deep").mkdir()
        (folder / "deep" / "y.txt").write_text("y")
    assert list_files(f"{gcs_bucket}/out") == ["deep/y.txt", "x.txt"]

    with pytest.raises(RuntimeError, match="boom"), local_output(f"{gcs_bucket}/failed") as folder:
        (folder / "half.txt").write_text("half")
        raise RuntimeError("boom")
    assert list_files(f"{gcs_bucket}/failed") == []


# --------------------------------------------------------------------------
# Large files and failures
# --------------------------------------------------------------------------

def test_200_mb_file_round_trips_with_a_matching_checksum(gcs_bucket, tmp_path):
    size = 200 * MIB
    source = tmp_path / "large.bin"
    expected = random_file(source, size)
    uri = f"{gcs_bucket}/large/large.bin"
    started = time.monotonic()
    upload_file(source, uri)
    uploaded = time.monotonic()
    target = download_file(uri, tmp_path / "copy.bin")
    downloaded = time.monotonic()
    assert sha256_of(target) == expected
    assert list_files(f"{gcs_bucket}/large") == ["large.bin"]
    print(f"\n200 MB through the emulator: upload {size / MIB / (uploaded - started):.0f} MB/s "
          f"(resumable, {storage.UPLOAD_CHUNK_SIZE // MIB} MiB chunks, then a server-side "
          f"copy), download {size / MIB / (downloaded - uploaded):.0f} MB/s")
    # 600 MB of disk otherwise stays behind (pytest keeps recent tmp_paths).
    storage._blob(uri).delete()
    source.unlink()
    target.unlink()


def _kill_after_chunks(monkeypatch, emulator, chunks: int, then=None) -> dict:
    """Stop the emulator once `chunks` resumable chunks have been sent; `then` runs after."""
    from google.cloud.storage._media.requests import upload as upload_module

    state = {"killed": False}
    original = upload_module.ResumableUpload.transmit_next_chunk

    def transmit_next_chunk(self, transport, *args, **kwargs):
        if not state["killed"] and self.bytes_uploaded >= chunks * self.chunk_size:
            emulator.stop()
            state["killed"] = True
            if then is not None:
                threading.Thread(target=then, daemon=True).start()
        return original(self, transport, *args, **kwargs)

    monkeypatch.setattr(upload_module.ResumableUpload, "transmit_next_chunk",
                        transmit_next_chunk)
    return state


def test_emulator_stopped_mid_upload_fails_cleanly_then_a_rerun_succeeds(
        gcs_emulator, gcs_bucket, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(storage, "RETRY_DEADLINE_S", 2.0)
    monkeypatch.setattr(storage, "UPLOAD_CHUNK_SIZE", MIB)
    source = tmp_path / "model.bin"
    expected = random_file(source, 12 * MIB)  # over 8 MiB: a resumable upload
    uri = f"{gcs_bucket}/models/m1/model.bin"
    state = _kill_after_chunks(monkeypatch, gcs_emulator, chunks=3)

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="rnn_classifier.storage"), \
            pytest.raises(StorageError) as failure:
        upload_file(source, uri)
    elapsed = time.monotonic() - started
    assert state["killed"]
    message = str(failure.value)
    assert message.startswith(f"{uri}: upload failed after ")
    assert re.search(r"after \d+ attempts over [\d.]+ s \(retry deadline 2 s\)", message)
    assert elapsed < 20
    retries = [record.getMessage() for record in caplog.records]
    assert retries and all("retrying" in line for line in retries)
    no_leaks(message, *retries)

    gcs_emulator.start()
    # Nothing half-written is visible: no object at the final name, no temporary one.
    assert not exists(uri)
    assert list_files(f"{gcs_bucket}/models") == []
    assert [blob.name for blob in storage._client().list_blobs(gcs_bucket[5:])] == []

    upload_file(source, uri)  # the rerun
    assert sha256_of(download_file(uri, tmp_path / "back.bin")) == expected
    assert list_files(f"{gcs_bucket}/models") == ["m1/model.bin"]


def test_an_upload_resumes_when_the_emulator_comes_back_within_the_deadline(
        gcs_emulator, gcs_bucket, tmp_path, monkeypatch):
    # The emulator keeps resumable sessions on disk, so after a restart the
    # failed chunk is re-sent and the upload finishes in the same session.
    monkeypatch.setattr(storage, "RETRY_DEADLINE_S", 30.0)
    monkeypatch.setattr(storage, "UPLOAD_CHUNK_SIZE", MIB)
    source = tmp_path / "model.bin"
    expected = random_file(source, 10 * MIB)  # over 8 MiB: a resumable upload
    uri = f"{gcs_bucket}/models/m2/model.bin"

    def come_back():
        time.sleep(1.0)
        gcs_emulator.start()

    state = _kill_after_chunks(monkeypatch, gcs_emulator, chunks=2, then=come_back)
    upload_file(source, uri)
    assert state["killed"]
    assert sha256_of(download_file(uri, tmp_path / "back.bin")) == expected


def test_cli_reports_an_unreachable_storage_after_its_retries(
        gcs_emulator, gcs_bucket, monkeypatch, capsys):
    monkeypatch.setattr(storage, "RETRY_DEADLINE_S", 1.0)
    gcs_emulator.stop()
    try:
        status = main(["validate", "--data-dir", f"{gcs_bucket}/data"])
    finally:
        gcs_emulator.start()
    err = capsys.readouterr().err
    assert status == 1
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    assert re.match(rf"error: {gcs_bucket}/data: [a-z ]+ failed after \d+ attempts over ",
                    lines[0])
    no_leaks(err)


# --------------------------------------------------------------------------
# The CLI on gs:// URIs
# --------------------------------------------------------------------------

def test_cli_trains_evaluates_and_predicts_on_gs_uris(gcs_bucket, capsys, caplog):
    data = f"{gcs_bucket}/data"
    model = f"{gcs_bucket}/models/m1"
    copy_folder(SAMPLE_DATA, data)
    assert main(["validate", "--data-dir", data]) == 0
    assert main(["train", "--data-dir", data, "--output-dir", model, "--epochs", "1",
                 "--rnn-units", "4", "--dense-units", "4"]) == 0
    assert list_files(model) == ["classes.txt", "config.json", "history.csv", "model.keras",
                                 "scaler.json", "training_metrics.json"]

    assert main(["evaluate", "--model-dir", model, "--data-dir", data]) == 0
    evaluation = list_files(f"{model}/evaluation")
    assert "metrics.json" in evaluation and "report.html" in evaluation
    metrics = json.loads(read_text(f"{model}/evaluation/metrics.json"))
    assert metrics["test"]["accuracy"] is not None
    assert "rnn-classifier evaluation: m1" in read_text(f"{model}/evaluation/report.html")

    output = f"{gcs_bucket}/predictions/p.csv"
    assert main(["predict", "--model-dir", model, "--data-dir", data, "--output", output]) == 0
    rows = read_text(output).splitlines()
    assert rows[0].startswith("index,") and len(rows) == 1 + 300
    assert list_files(f"{gcs_bucket}/predictions") == ["p.csv"]

    # The output checks train() makes locally hold for gs:// too.
    capsys.readouterr()
    assert main(["train", "--data-dir", data, "--output-dir", model, "--epochs", "1"]) == 2
    assert "already holds a trained model" in capsys.readouterr().err
    assert main(["train", "--data-dir", data, "--output-dir", f"{gcs_bucket}/models/m2",
                 "--resume"]) == 2
    assert "--resume needs a local --output-dir" in capsys.readouterr().err
    assert list_folders(f"{gcs_bucket}/models") == ["m1/"]
    no_leaks(capsys.readouterr().out, *(record.getMessage() for record in caplog.records))


def test_cli_bad_gs_data_dir_exits_2_and_uploads_nothing(gcs_bucket, capsys):
    output = f"{gcs_bucket}/models/bad"
    assert main(["train", "--data-dir", f"{gcs_bucket}/no-data", "--output-dir", output]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and f"{gcs_bucket}/no-data" in err

    data = f"{gcs_bucket}/broken"
    copy_folder(SAMPLE_DATA, data,
                names=[path.name for path in SAMPLE_DATA.iterdir()
                       if path.name != "train_labels.npy"])
    assert main(["train", "--data-dir", data, "--output-dir", output]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1
    assert f"{data}/train_labels.npy" in err  # the URI, not the temporary copy
    assert main(["validate", "--data-dir", data]) == 2
    assert f"{data}/train_labels.npy" in capsys.readouterr().err
    assert list_files(f"{gcs_bucket}/models") == []


def test_fingerprint_changes_with_the_data_under_the_same_uri(root):
    folder = storage.join_uri(root, "data")
    storage.write_bytes(storage.join_uri(folder, "train_labels.npy"), b"labels v1")
    storage.write_bytes(storage.join_uri(folder, "test_labels.npy"), b"test")
    first = storage.fingerprint(folder)
    assert storage.fingerprint(folder) == first  # nothing changed: the same key
    storage.write_bytes(storage.join_uri(folder, "train_labels.npy"), b"labels v2")
    second = storage.fingerprint(folder)
    assert second != first
    # Only the named files count: a new unrelated file leaves that fingerprint alone.
    named = storage.fingerprint(folder, ["train_labels.npy"])
    storage.write_bytes(storage.join_uri(folder, "notes.txt"), b"hello")
    assert storage.fingerprint(folder, ["train_labels.npy"]) == named
    assert storage.fingerprint(folder) != second
