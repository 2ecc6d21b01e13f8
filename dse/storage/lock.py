"""The writer lock of an index directory: one writer at a time, any number of readers.

The locks are POSIX file locks (`fcntl.flock`). Where there are none (Windows), dse still
imports, and opens and searches an index; only writing to one raises `LockUnavailableError`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no POSIX file locks
    fcntl = None  # type: ignore[assignment]


class IndexLockedError(RuntimeError):
    """Another process is writing to this index."""


class LockUnavailableError(IndexLockedError):
    """This platform has no POSIX file locks (fcntl), which writing to an index needs."""


def posix_locks() -> Any:
    """The `fcntl` module, for `flock`.

    Raises:
        LockUnavailableError: The platform has none (Windows): indexes can be searched here, not written.
    """
    if fcntl is None:
        raise LockUnavailableError(
            "writing to an index needs POSIX file locks (fcntl), which this platform does not have: build and "
            "update indexes on Linux or macOS (on Windows, under WSL); searching an index works here"
        )
    return fcntl


class WriteLock:
    """An exclusive writer lock on a file (released on exit or process death).

    Args:
        path: The lock file.
        timeout: Seconds to wait for another writer's commit to finish (0: fail at once).
            Writers hold the lock per commit, so a second writer interleaves between them.
    """

    def __init__(self, path: Path, timeout: float = 60.0) -> None:
        self.path = path
        self.timeout = timeout
        self._fh: Any = None

    def __enter__(self) -> "WriteLock":
        posix_locks()
        self._fh = open(self.path, "a")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._fh.close()
                    raise IndexLockedError(
                        f"{self.path.parent}: another process is writing to this index"
                    ) from None
                time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()
