"""Local paths and `gs://` URIs behind one small interface.

Every function takes either a local path or a `gs://bucket/path` URI:
read and write bytes, text and JSON, list, copy files and folders between
the two, and `local_input` / `local_output` to run code that only knows
local paths against Cloud Storage.

Cloud Storage is reached through `google-cloud-storage`, which honours
`STORAGE_EMULATOR_HOST` (tests use the `gcp-storage-emulator` server, with
anonymous credentials); elsewhere credentials come from the environment
(Workload Identity on the cluster), never from this code, and no message
written here carries a token.

Publication never leaves a half-written object where a reader looks: a
local file is written under a temporary name in the same folder and renamed
(`os.replace`); an object is uploaded under `<name>.tmp-<32 hex>`, checked
against the local CRC32C, then rewritten (a server-side copy) to its final
name and the temporary object deleted. `list_files` and the folder
downloads skip such temporary names, so a crashed writer's leftovers are
never mistaken for data.

Every Cloud Storage call goes through `_gcs`, which retries transient
failures (connection errors, 408/429/5xx) with exponential backoff until
`RETRY_DEADLINE_S` has passed, then raises `StorageError` naming the URI,
the operation and the number of attempts. Large files go up as chunked
resumable uploads: a chunk that fails is re-sent within the same upload
session, so a transient error does not restart the whole file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rnn_classifier.data import DataError

GCS_SCHEME = "gs://"

# Retry policy of every Cloud Storage call (tests shrink the deadline).
RETRY_DEADLINE_S = 30.0
RETRY_INITIAL_S = 0.2
RETRY_MAXIMUM_S = 2.0
RETRY_MULTIPLIER = 2.0
# Per HTTP request: (connect, read) seconds.
REQUEST_TIMEOUT_S = (10.0, 120.0)
# Files above RESUMABLE_THRESHOLD go up as resumable uploads of UPLOAD_CHUNK_SIZE
# chunks (a multiple of 256 KiB; each chunk is held in memory once). Below
# 8 MiB google-cloud-storage sends one multipart request whatever is set here.
RESUMABLE_THRESHOLD = 8 * 1024 * 1024
UPLOAD_CHUNK_SIZE = 32 * 1024 * 1024

TEMP_MARKER = ".tmp-"
_TEMP_NAME = re.compile(re.escape(TEMP_MARKER) + r"[0-9a-f]{32}$")
_READ_BLOCK = 8 * 1024 * 1024
_SECRETS = (
    (re.compile(r"(?i)\bbearer\s+\S+"), "<redacted credential>"),
    (re.compile(r"(?i)\b(authorization|x-goog-credential|x-goog-signature)([\"']?\s*[:=]\s*)"
                r"[^\s,;&\"']+"), r"\1\2<redacted>"),
    (re.compile(r"(?i)\b(upload_id|access_token|token|key|signature|sig)=[^&\s\"']+"),
     r"\1=<redacted>"),
)

log = logging.getLogger(__name__)


class StorageError(RuntimeError):
    """A storage operation failed; the message names the URI and what failed."""


class StorageConflict(StorageError):  # noqa: N818 - the name the pipeline uses
    """A compare-and-swap write lost: the object changed since it was read."""


class StorageNotFound(StorageError, FileNotFoundError):  # noqa: N818 - like StorageConflict
    """The object, folder or bucket does not exist."""


# --------------------------------------------------------------------------
# URIs
# --------------------------------------------------------------------------

def is_gcs(uri: str | Path) -> bool:
    """True for a `gs://bucket/prefix` URI."""
    return str(uri).startswith(GCS_SCHEME)


def split_gcs_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/a/b` -> ("bucket", "a/b")."""
    bucket, _, prefix = uri[len(GCS_SCHEME):].partition("/")
    if not bucket:
        raise DataError(f"{uri}: not a gs://BUCKET/PATH URI")
    return bucket, prefix.strip("/")


def join_uri(base: str | Path, *parts: str) -> str:
    """`base/part/...` for a local path or a gs:// URI (`Path` would collapse `gs://`)."""
    if not is_gcs(base):
        return str(Path(base, *parts))
    return "/".join([str(base).rstrip("/"), *(part.strip("/") for part in parts)])


def _name_of(uri: str | Path) -> str:
    """The last component of a path or URI (the bucket for `gs://bucket`)."""
    if is_gcs(uri):
        bucket, prefix = split_gcs_uri(str(uri))
        return prefix.rsplit("/", 1)[-1] if prefix else bucket
    return Path(uri).name


def _is_temporary(name: str) -> bool:
    return bool(_TEMP_NAME.search(name))


def _redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _describe(error: BaseException) -> str:
    """One line about an exception, without tokens or session URLs."""
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) > 300:
        text = text[:300] + "..."
    return _redact(f"{type(error).__name__}: {text}")


# --------------------------------------------------------------------------
# Cloud Storage plumbing: client, retries, error translation
# --------------------------------------------------------------------------

_clients: dict[str | None, Any] = {}


def _client():
    """One client per emulator setting; the emulator needs no credentials."""
    key = os.environ.get("STORAGE_EMULATOR_HOST")
    if key not in _clients:
        from google.cloud import storage

        try:
            if key:
                # google-cloud-storage 3.x already uses anonymous credentials
                # with the emulator; saying so keeps that true on other versions.
                from google.auth.credentials import AnonymousCredentials

                _clients[key] = storage.Client(project="emulator",
                                               credentials=AnonymousCredentials())
            else:
                _clients[key] = storage.Client()
        except Exception as error:  # DefaultCredentialsError and friends
            raise StorageError(f"cannot create a Cloud Storage client: {_describe(error)} "
                               "(credentials come from the environment: Workload Identity "
                               "or GOOGLE_APPLICATION_CREDENTIALS)") from None
    return _clients[key]


def _transient(error: BaseException) -> bool:
    """Worth retrying: connection trouble, timeouts, 408/429/5xx."""
    import http.client

    import requests
    import urllib3
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth
    from google.cloud.storage.exceptions import InvalidResponse

    codes = {408, 429, 500, 502, 503, 504}
    if isinstance(error, (ConnectionError, TimeoutError, requests.ConnectionError,
                          requests.Timeout, requests.exceptions.ChunkedEncodingError,
                          http.client.HTTPException, urllib3.exceptions.HTTPError)):
        return True
    if isinstance(error, api.GoogleAPICallError):
        return error.code in codes
    if isinstance(error, InvalidResponse):
        return getattr(error.response, "status_code", None) in codes
    if isinstance(error, auth.TransportError) and error.args:
        return isinstance(error.args[0], BaseException) and _transient(error.args[0])
    return False


def _gcs(action: str, uri: str, call: Callable[..., Any], *, inner: bool = False) -> Any:
    """Run one Cloud Storage operation with retries; translate its errors.

    Args:
        action: what is being done, for messages ("upload", "list"...).
        uri: the URI it concerns.
        call: the operation. Called with no argument and retried as a whole
            (the library's own retries must be off: `retry=None`); with
            `inner=True` it is called once with the retry policy, which it
            hands to the library so that a resumable transfer re-sends only
            the chunk that failed.
    """
    from google.api_core import exceptions as api
    from google.api_core.retry import Retry
    from google.cloud.storage.exceptions import DataCorruption

    failures: list[BaseException] = []

    def on_error(error: BaseException) -> None:
        failures.append(error)
        log.warning("%s: %s attempt %d failed (%s); retrying", uri, action, len(failures),
                    _describe(error))

    policy = Retry(predicate=_transient, initial=RETRY_INITIAL_S, maximum=RETRY_MAXIMUM_S,
                   multiplier=RETRY_MULTIPLIER, timeout=RETRY_DEADLINE_S, on_error=on_error)
    started = time.monotonic()
    try:
        return call(policy) if inner else policy(call)()
    except StorageError:
        raise
    except api.RetryError as error:
        last = error.cause or error
        raise StorageError(
            f"{uri}: {action} failed after {max(len(failures), 1)} attempts over "
            f"{time.monotonic() - started:.1f} s (retry deadline {RETRY_DEADLINE_S:g} s); "
            f"last error: {_describe(last)}") from None
    except api.NotFound:
        raise StorageNotFound(f"{uri}: no such object or bucket ({action} got 404)") from None
    except api.PreconditionFailed:
        raise StorageConflict(f"{uri}: changed since it was read ({action} refused by its "
                              "generation precondition)") from None
    except (api.Forbidden, api.Unauthorized) as error:
        raise StorageError(f"{uri}: {action} not permitted ({_describe(error)}); check the "
                           "service account's access to the bucket") from None
    except DataCorruption as error:
        raise StorageError(f"{uri}: {action} failed its checksum ({_describe(error)})") from None
    except Exception as error:
        attempts = len(failures) + 1
        raise StorageError(f"{uri}: {action} failed after {attempts} attempt"
                           f"{'s' if attempts > 1 else ''}: {_describe(error)}") from None


def _blob(uri: str, client=None):
    bucket_name, name = split_gcs_uri(uri)
    if not name:
        raise StorageError(f"{uri}: names a bucket, not an object")
    return (client or _client()).bucket(bucket_name).blob(name)


def _get_blob(uri: str):
    """The object's metadata, or None when it does not exist."""
    from google.api_core import exceptions as api

    blob = _blob(uri)

    def reload():
        try:
            blob.reload(retry=None, timeout=REQUEST_TIMEOUT_S)
        except api.NotFound:
            return None
        return blob

    return _gcs("read metadata", uri, reload)


def _crc32c_base64(data: bytes | None = None, path: Path | None = None) -> str:
    """CRC32C as GCS reports it (base64 of the big-endian 4 bytes), streamed for files."""
    import base64

    import google_crc32c

    checksum = google_crc32c.Checksum()
    if path is None:
        checksum.update(data or b"")
    else:
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(_READ_BLOCK), b""):
                checksum.update(block)
    return base64.b64encode(checksum.digest()).decode("ascii")


def _publish(uri: str, send: Callable[[Any, Any], None], expected_crc32c: str,
             if_generation_match: int | None = None) -> int:
    """Upload under a temporary name, check it, copy it to `uri`, delete the temporary.

    `send(blob, policy)` uploads the content to `blob`. With
    `if_generation_match`, the copy happens only if the object's generation
    is still that (0: it must not exist): checked here before the copy, and
    given to the server as a precondition of the copy (real Cloud Storage
    enforces it atomically; the emulator ignores it, so there the check
    before the copy is the only guard).

    Returns:
        The generation of the published object.
    """
    from google.api_core import exceptions as api

    final = _blob(uri)
    temporary = final.bucket.blob(f"{final.name}{TEMP_MARKER}{uuid.uuid4().hex}")
    uploaded = False
    try:
        _gcs("upload", uri, lambda policy: send(temporary, policy), inner=True)
        uploaded = True
        if temporary.crc32c != expected_crc32c:
            raise StorageError(f"{uri}: upload corrupted: CRC32C of the uploaded object "
                               f"{temporary.crc32c} != local {expected_crc32c}; nothing "
                               "was published")
        if if_generation_match is not None:
            current = _get_blob(uri)
            generation = current.generation if current is not None else 0
            if generation != if_generation_match:
                raise StorageConflict(f"{uri}: changed since it was read (generation "
                                      f"{generation}, expected {if_generation_match}); "
                                      "nothing was written")
        try:
            _rewrite(uri, final, temporary, if_generation_match)
        except StorageConflict:
            # A copy that succeeded but whose reply was lost is retried, and
            # the retry then fails its precondition: if the object now holds
            # exactly our bytes, our write is the one that landed.
            current = _get_blob(uri)
            if current is None or current.crc32c != expected_crc32c:
                raise
            final = current
        if final.crc32c != expected_crc32c:
            raise StorageError(f"{uri}: published object's CRC32C {final.crc32c} != local "
                               f"{expected_crc32c}")
        return int(final.generation)
    finally:
        if uploaded:
            # One quick try: when the service is down, waiting out another retry
            # deadline helps nobody; the leftover is invisible to list_files.
            try:
                temporary.delete(retry=None, timeout=(5.0, 10.0))
            except api.NotFound:
                pass
            except Exception as error:  # cleanup must not hide the real outcome
                log.warning("%s: could not delete the temporary object %s (%s)", uri,
                            temporary.name, _describe(error))


def _rewrite(uri: str, final, temporary, if_generation_match: int | None) -> None:
    """Server-side copy of `temporary` onto `final` (several calls for a large object)."""
    token = None
    while True:
        def call(token=token):
            return final.rewrite(temporary, token=token, if_generation_match=if_generation_match,
                                 if_source_generation_match=temporary.generation,
                                 timeout=REQUEST_TIMEOUT_S, retry=None)

        token, _, _ = _gcs("publish (server-side copy)", uri, call)
        if token is None:
            return


# --------------------------------------------------------------------------
# Local plumbing
# --------------------------------------------------------------------------

def _local_temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_MARKER}{uuid.uuid4().hex}")


def _write_local_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write(temporary)` then rename over `path`: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _local_temporary(path)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _local_generation(data: bytes) -> int:
    """A local file's stand-in for a GCS generation: a 63-bit hash of its content (never 0)."""
    return (int.from_bytes(hashlib.sha256(data).digest()[:8], "big") >> 1) or 1


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on a local folder (flock on its descriptor: no lock file left)."""
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------

def read_bytes(uri: str | Path) -> bytes:
    """The whole content of a file or object.

    Raises:
        StorageNotFound: it does not exist.
        StorageError: Cloud Storage failed (after retries).
    """
    if not is_gcs(uri):
        try:
            return Path(uri).read_bytes()
        except FileNotFoundError:
            raise StorageNotFound(f"{uri}: no such file") from None
    uri = str(uri)
    blob = _blob(uri)
    return _gcs("download", uri, lambda: blob.download_as_bytes(
        checksum="crc32c", timeout=REQUEST_TIMEOUT_S, retry=None))


def write_bytes(uri: str | Path, data: bytes) -> None:
    """Write a file or object whole: readers see the old content or the new, never a part."""
    if not is_gcs(uri):
        _write_local_atomically(Path(uri), lambda temporary: temporary.write_bytes(data))
        return
    _publish(str(uri), lambda blob, policy: blob.upload_from_string(
        data, content_type="application/octet-stream", checksum="crc32c",
        timeout=REQUEST_TIMEOUT_S, retry=policy), _crc32c_base64(data))


def read_text(uri: str | Path) -> str:
    """`read_bytes` decoded as UTF-8."""
    return read_bytes(uri).decode("utf-8")


def write_text(uri: str | Path, text: str) -> None:
    """`write_bytes` of UTF-8 text."""
    write_bytes(uri, text.encode("utf-8"))


def read_json(uri: str | Path) -> tuple[Any, int]:
    """A JSON file and its generation, for a later `write_json(..., if_generation_match=)`.

    Returns:
        (object, generation), or (None, 0) when it does not exist. The
        generation is the object's GCS generation; for a local file, a hash
        of its content.
    """
    if is_gcs(uri):
        uri = str(uri)
        blob = _get_blob(uri)
        if blob is None:
            return None, 0
        # Downloading that very generation: the bytes and the number agree.
        pinned = blob.bucket.blob(blob.name, generation=blob.generation)
        try:
            data = _gcs("download", uri, lambda: pinned.download_as_bytes(
                checksum="crc32c", timeout=REQUEST_TIMEOUT_S, retry=None))
        except StorageNotFound:
            return read_json(uri)  # replaced between the two calls: read the new one
        generation = int(blob.generation)
    else:
        try:
            data = Path(uri).read_bytes()
        except FileNotFoundError:
            return None, 0
        generation = _local_generation(data)
    try:
        return json.loads(data.decode("utf-8")), generation
    except ValueError as error:
        raise StorageError(f"{uri}: not valid JSON ({error})") from None


def write_json(uri: str | Path, obj: Any, if_generation_match: int | None = None) -> int:
    """Write JSON whole; with `if_generation_match`, only if unchanged since it was read.

    Args:
        uri: file or object.
        obj: anything `json.dumps` takes (NaN and infinity refused).
        if_generation_match: the generation `read_json` returned (0: the file
            must not exist yet); None writes unconditionally.

    Returns:
        The new generation.

    Raises:
        StorageConflict: the file changed (or appeared) since it was read;
            nothing was written.
    """
    data = (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode("utf-8")
    if is_gcs(uri):
        return _publish(str(uri), lambda blob, policy: blob.upload_from_string(
            data, content_type="application/json", checksum="crc32c",
            timeout=REQUEST_TIMEOUT_S, retry=policy), _crc32c_base64(data),
            if_generation_match=if_generation_match)
    path = Path(uri)
    with _folder_lock(path.parent):
        if if_generation_match is not None:
            try:
                current = _local_generation(path.read_bytes())
            except FileNotFoundError:
                current = 0
            if current != if_generation_match:
                raise StorageConflict(f"{uri}: changed since it was read (generation "
                                      f"{current}, expected {if_generation_match}); "
                                      "nothing was written")
        _write_local_atomically(path, lambda temporary: temporary.write_bytes(data))
    return _local_generation(data)


def exists(uri: str | Path) -> bool:
    """True when a file/object is at `uri`, or a folder/prefix with something in it."""
    if not is_gcs(uri):
        return Path(uri).exists()
    uri = str(uri)
    bucket_name, name = split_gcs_uri(uri)
    if name and _get_blob(uri) is not None:
        return True
    client = _client()

    def any_under():
        blobs = client.list_blobs(bucket_name, prefix=f"{name}/" if name else None,
                                  max_results=1, timeout=REQUEST_TIMEOUT_S, retry=None)
        return any(True for _ in blobs)

    return _gcs("list", uri, any_under)


def _gcs_listing(uri: str, delimiter: str | None) -> tuple[list[str], list[str]]:
    """(object names, sub-prefixes) under `uri/`, both relative to it."""
    bucket_name, prefix = split_gcs_uri(uri)
    prefix = f"{prefix}/" if prefix else ""
    client = _client()

    def listing():
        pages = client.list_blobs(bucket_name, prefix=prefix or None, delimiter=delimiter,
                                  timeout=REQUEST_TIMEOUT_S, retry=None)
        names = [blob.name[len(prefix):] for blob in pages]
        return names, sorted(p[len(prefix):] for p in pages.prefixes)

    return _gcs("list", uri, listing)


def list_files(uri: str | Path) -> list[str]:
    """Every file under a folder/prefix, recursively, relative to it, sorted.

    Temporary names of unfinished writes are left out; a missing folder
    lists nothing (a missing bucket raises StorageNotFound).
    """
    if is_gcs(uri):
        names, _ = _gcs_listing(str(uri), None)
        names = [name for name in names if name and not name.endswith("/")]
    else:
        root = Path(uri)
        if not root.is_dir():
            return []
        names = [path.relative_to(root).as_posix() for path in root.rglob("*")
                 if path.is_file()]
    return sorted(name for name in names if not _is_temporary(name))


def fingerprint(uri: str | Path, names: Sequence[str] | None = None) -> str:
    """A digest that changes whenever a file under the folder/prefix changes.

    For gs:// it covers each object's name, generation, size and CRC32C (a
    rewritten object gets a new generation even with the same bytes); for a
    local folder, each file's name, size and SHA-256 of its content. `names`
    limits it to those files (absent ones count as absent). The digest of
    the listing is what a pipeline's cache key needs: the same URI with other
    data gives another fingerprint.
    """
    entries = []
    if is_gcs(uri):
        bucket_name, prefix = split_gcs_uri(str(uri))
        prefix = f"{prefix}/" if prefix else ""
        client = _client()

        def listing():
            return [(blob.name[len(prefix):], blob.generation, blob.size, blob.crc32c)
                    for blob in client.list_blobs(bucket_name, prefix=prefix or None,
                                                  timeout=REQUEST_TIMEOUT_S, retry=None)]

        entries = [list(entry) for entry in _gcs("list", str(uri), listing)
                   if not _is_temporary(entry[0])]
    else:
        root = Path(uri)
        for name in list_files(root):
            digest = hashlib.sha256()
            with open(root / name, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            entries.append([name, (root / name).stat().st_size, digest.hexdigest()])
    if names is not None:
        wanted = set(names)
        entries = [entry for entry in entries if entry[0] in wanted]
    listing = json.dumps(sorted(entries), separators=(",", ":"))
    return hashlib.sha256(listing.encode()).hexdigest()


def list_folders(uri: str | Path) -> list[str]:
    """The immediate sub-folders of a folder/prefix, as `name/`, sorted."""
    if is_gcs(uri):
        _, prefixes = _gcs_listing(str(uri), "/")
        return prefixes
    root = Path(uri)
    if not root.is_dir():
        return []
    return sorted(f"{path.name}/" for path in root.iterdir() if path.is_dir())


def upload_file(local_path: str | Path, uri: str | Path) -> None:
    """Copy a local file to `uri`, published whole and checked against its CRC32C.

    Files over RESUMABLE_THRESHOLD go up as a resumable upload in
    UPLOAD_CHUNK_SIZE chunks (a failed chunk is re-sent in the same session).
    """
    local_path = Path(local_path)
    if not local_path.is_file():
        raise StorageNotFound(f"{local_path}: no such file to upload")
    if not is_gcs(uri):
        _write_local_atomically(Path(uri), lambda temporary: shutil.copyfile(local_path,
                                                                               temporary))
        return
    size = local_path.stat().st_size

    def send(blob, policy):
        blob.chunk_size = UPLOAD_CHUNK_SIZE if size > RESUMABLE_THRESHOLD else None
        blob.upload_from_filename(local_path, content_type="application/octet-stream",
                                  checksum="crc32c", timeout=REQUEST_TIMEOUT_S, retry=policy)

    _publish(str(uri), send, _crc32c_base64(path=local_path))


def download_file(uri: str | Path, local_path: str | Path) -> Path:
    """Copy a file/object to a local file (written under a temporary name, then renamed).

    The downloaded bytes are checked against the object's CRC32C.

    Raises:
        StorageNotFound: nothing at `uri`.
    """
    local_path = Path(local_path)
    if not is_gcs(uri):
        if not Path(uri).is_file():
            raise StorageNotFound(f"{uri}: no such file")
        _write_local_atomically(local_path, lambda temporary: shutil.copyfile(uri, temporary))
        return local_path
    uri = str(uri)
    blob = _get_blob(uri)
    if blob is None:
        raise StorageNotFound(f"{uri}: no such object")
    pinned = blob.bucket.blob(blob.name, generation=blob.generation)

    def fetch(temporary: Path) -> None:
        _gcs("download", uri, lambda policy: pinned.download_to_filename(
            temporary, checksum="crc32c", timeout=REQUEST_TIMEOUT_S, retry=policy),
            inner=True)
        received = _crc32c_base64(path=temporary)
        if received != blob.crc32c:
            raise StorageError(f"{uri}: download corrupted: CRC32C {received} != the "
                               f"object's {blob.crc32c}")

    _write_local_atomically(local_path, fetch)
    return local_path


# --------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------

def upload_folder(local_dir: str | Path, uri: str | Path, last: Sequence[str] = ()) -> list[str]:
    """Upload every file under a local folder (recursively) to `uri`, each published whole.

    Args:
        local_dir: the folder.
        uri: destination folder (local or gs://).
        last: relative names to upload after all the others (e.g. the file
            whose presence marks a complete folder).

    Returns:
        The relative names uploaded, in order.
    """
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise StorageNotFound(f"{local_dir}: no such folder to upload")
    names = list_files(local_dir)
    order = [name for name in names if name not in last] + [n for n in last if n in names]
    for name in order:
        upload_file(local_dir / name, join_uri(uri, name))
    return order


def download_folder(uri: str | Path, local_dir: str | Path, names: Sequence[str] | None = None,
                    recursive: bool = False) -> Path:
    """Download a folder's files into a local folder (created if missing).

    Args:
        uri: folder (local or gs://).
        local_dir: destination.
        names: only these relative names (those missing are skipped: the
            data validation reports them); None takes every file.
        recursive: also the files of sub-folders (default: only the files
            directly inside, which is what data and model folders hold).

    Raises:
        StorageNotFound: nothing at all under `uri`.
    """
    local_dir = Path(local_dir)
    available = list_files(uri)
    if not available:
        raise StorageNotFound(f"{uri}: no files under this folder")
    local_dir.mkdir(parents=True, exist_ok=True)
    for name in available:
        if (recursive or "/" not in name) and (names is None or name in names):
            download_file(join_uri(uri, name), local_dir / name)
    return local_dir


def copy_folder(source: str | Path, destination: str | Path,
                names: list[str] | None = None) -> Path | str:
    """Copy the files directly inside a folder (local or gs://) to another (local or gs://).

    Args:
        source: local folder or `gs://bucket/prefix`.
        destination: local folder (created if missing) or `gs://bucket/prefix`.
        names: copy only these file names (those missing are skipped: the
            data validation reports them); None copies every file directly
            inside the folder.

    Returns:
        The destination.

    Raises:
        DataError: the source folder does not exist or holds nothing.
    """
    if is_gcs(destination):
        source = Path(source)
        if not source.is_dir():
            raise DataError(f"{source}: data folder does not exist")
        for path in sorted(source.iterdir()):
            if path.is_file() and (names is None or path.name in names):
                upload_file(path, join_uri(destination, path.name))
        return str(destination)
    destination = Path(destination)
    if is_gcs(source):
        try:
            return download_folder(str(source), destination, names)
        except StorageNotFound as error:
            raise DataError(f"{error} (expected the data files)") from None
    source = Path(source)
    if not source.is_dir():
        raise DataError(f"{source}: data folder does not exist")
    destination.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.is_file() and (names is None or path.name in names):
            shutil.copy2(path, destination / path.name)
    return destination


# --------------------------------------------------------------------------
# Running local-only code against gs:// URIs
# --------------------------------------------------------------------------

@contextlib.contextmanager
def local_input(uri: str | Path, names: Sequence[str] | None = None,
                recursive: bool = False) -> Iterator[Path]:
    """A local path holding what `uri` holds: the path itself, or a temporary download.

    A gs:// object is downloaded as a file; otherwise the folder's files
    (only those directly inside unless `recursive`, and only `names` if
    given) are downloaded into a folder named like the URI's last component.
    A DataError raised inside the block names the URI rather than the
    temporary copy.

    Raises:
        StorageNotFound: nothing at `uri`.
    """
    if not is_gcs(uri):
        yield Path(uri)
        return
    uri = str(uri).rstrip("/")
    with tempfile.TemporaryDirectory(prefix="rnn-input-") as staging:
        target = Path(staging, _name_of(uri))
        _, name = split_gcs_uri(uri)
        if name and _get_blob(uri) is not None:
            download_file(uri, target)
        else:
            download_folder(uri, target, names, recursive=recursive)
        try:
            yield target
        except DataError as error:
            raise DataError(str(error).replace(str(target), uri)) from None


@contextlib.contextmanager
def local_output(uri: str | Path, last: Sequence[str] = ()) -> Iterator[Path]:
    """A local folder to write `uri`'s content into.

    Local: the path itself (not created: the block decides). gs://: a fresh
    temporary folder whose files are uploaded (each published whole, `last`
    after the others) when the block ends normally; when it raises,
    nothing is uploaded.
    """
    if not is_gcs(uri):
        yield Path(uri)
        return
    with tempfile.TemporaryDirectory(prefix="rnn-output-") as staging:
        target = Path(staging, _name_of(uri))
        target.mkdir()
        yield target
        upload_folder(target, uri, last=last)


@contextlib.contextmanager
def local_output_file(uri: str | Path) -> Iterator[Path]:
    """A local file path to write `uri`'s content to; uploaded when the block ends normally."""
    if not is_gcs(uri):
        yield Path(uri)
        return
    with tempfile.TemporaryDirectory(prefix="rnn-output-") as staging:
        target = Path(staging, _name_of(uri))
        yield target
        if not target.is_file():
            raise StorageError(f"{uri}: nothing was written to upload")
        upload_file(target, uri)
