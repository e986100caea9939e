"""The `fingerprint_data` component: what the data under a URI is, right now."""


def fingerprint_data(data_uri: str) -> str:
    """Digest of the data folder's contract files, for an honest cache key.

    A gs:// folder can change under the same URI. This step never comes from
    the cache, and its output is an input of validate_data, so validate_data
    (and everything after it) is reused from the cache only while the data is
    the same: the object generations, sizes and CRC32Cs for gs://, the SHA-256
    of each file for a local folder.

    Args:
        data_uri: Data folder: a local path or gs://BUCKET/PREFIX.

    Returns:
        A SHA-256 hex digest of the folder's listing.
    """
    from rnn_classifier.steps import fingerprint_step

    return fingerprint_step(data_uri)
