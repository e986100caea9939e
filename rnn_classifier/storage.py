"""Local paths and `gs://` URIs behind one small interface.

Only what the pipeline steps need so far: fetching a data folder from a
local path or a Cloud Storage prefix. Cloud Storage is reached through
`google-cloud-storage` (which honours `STORAGE_EMULATOR_HOST`, so tests use
the `gcp-storage-emulator` server); credentials come from the environment
(Workload Identity on the cluster), never from this code.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rnn_classifier.data import DataError

GCS_SCHEME = "gs://"


def is_gcs(uri: str | Path) -> bool:
    """True for a `gs://bucket/prefix` URI."""
    return str(uri).startswith(GCS_SCHEME)


def split_gcs_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/a/b` -> ("bucket", "a/b")."""
    bucket, _, prefix = uri[len(GCS_SCHEME):].partition("/")
    if not bucket:
        raise DataError(f"{uri}: not a gs://BUCKET/PATH URI")
    return bucket, prefix.strip("/")


def copy_folder(source: str | Path, destination: str | Path,
                names: list[str] | None = None) -> Path:
    """Copy the files of a folder (local path or gs:// prefix) into a local folder.

    Args:
        source: local folder or `gs://bucket/prefix`.
        destination: local folder, created if missing.
        names: copy only these file names (those missing are skipped: the
            data validation reports them); None copies every file directly
            inside the folder.

    Returns:
        The destination path.
    """
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    if is_gcs(source):
        return _download_prefix(str(source), destination, names)
    source = Path(source)
    if not source.is_dir():
        raise DataError(f"{source}: data folder does not exist")
    for path in sorted(source.iterdir()):
        if path.is_file() and (names is None or path.name in names):
            shutil.copy2(path, destination / path.name)
    return destination


def _download_prefix(uri: str, destination: Path, names: list[str] | None) -> Path:
    from google.cloud import storage

    bucket_name, prefix = split_gcs_uri(uri)
    client = storage.Client()
    blobs = list(client.list_blobs(bucket_name, prefix=f"{prefix}/" if prefix else None))
    if not blobs:
        raise DataError(f"{uri}: no objects under this prefix (expected the data files)")
    for blob in blobs:
        name = blob.name[len(prefix):].lstrip("/")
        if "/" in name or not name or (names is not None and name not in names):
            continue  # only the files directly under the prefix form the data folder
        blob.download_to_filename(destination / name)
    return destination
