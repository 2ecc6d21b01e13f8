"""Content digests of source files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_BLOCK = 1 << 20


def file_digest(path: str | os.PathLike[str]) -> str:
    """Return the SHA-256 hex digest of a file's bytes, read in 1 MiB blocks.

    Args:
        path: The file to hash.

    Returns:
        64 lowercase hex characters.

    Raises:
        IngestError: The file cannot be read, or is not a regular file (a FIFO or a device would
            block or never end).
    """
    from ingest.errors import IngestError

    if os.path.exists(path) and not os.path.isfile(path):
        raise IngestError(os.fspath(path), "not a regular file")
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as handle:
            for block in iter(lambda: handle.read(_BLOCK), b""):
                digest.update(block)
    except OSError as exc:
        raise IngestError(os.fspath(path), f"cannot read file ({exc.strerror or exc})") from exc
    return digest.hexdigest()
