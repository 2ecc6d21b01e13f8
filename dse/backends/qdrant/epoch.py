"""What a Qdrant-backed index offers instead of pinned views: a write epoch, checked after a search.

Qdrant answers every request from its latest state and has no read snapshots, so the two sides
of a hybrid search (two requests) could see different states if a write lands between them.
dse's writers hold the index directory's write lock and count their writes in the manifest
(`store.qdrant.epoch`, a seqlock): odd while a write is changing points, even once it is done.
`view()` is the epoch read from the manifest; a search pair is consistent when the epoch is the
same after both and even (or odd with no writer holding the lock: a writer killed mid-write,
whose partial state no longer changes). `dse.retrieve.first_stage` re-runs a pair that was not
(`IndexBackend.unchanged`). Writes that bypass dse (another client on the collection) are not
seen by the epoch.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

from dse.storage.layout import LOCK_NAME
from dse.storage.manifest import Manifest, read_manifest, write_manifest


@dataclass(frozen=True)
class QdrantView:
    """The write epoch a search started at (see the module docstring)."""

    epoch: int


def current(directory: Path) -> QdrantView:
    """The epoch the manifest records now."""
    return QdrantView(int(read_manifest(directory).store["qdrant"].get("epoch", 0)))


def writer_active(directory: Path) -> bool:
    """True if a process holds the index's write lock now."""
    from dse.storage.lock import posix_locks

    fcntl = posix_locks()
    path = Path(directory) / LOCK_NAME
    if not path.exists():
        return False
    with open(path, "r") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def unchanged(directory: Path, view: QdrantView) -> bool:
    """True if no write changed points since `view` was taken (see the module docstring)."""
    now = current(directory)
    if now.epoch != view.epoch:
        return False
    return now.epoch % 2 == 0 or not writer_active(directory)


def _bumped(directory: Path) -> Manifest:
    """The manifest as on disk (other writers' counters included) with the epoch advanced by one."""
    manifest = read_manifest(directory)
    store = dict(manifest.store)
    q = dict(store["qdrant"])
    q["epoch"] = int(q.get("epoch", 0)) + 1
    store["qdrant"] = q
    manifest = replace(manifest, store=store)
    write_manifest(directory, manifest)
    return manifest


@contextmanager
def writing(index: Any) -> Iterator[None]:
    """Held by a write (under the write lock): the epoch odd for its length, even after, even on error."""
    index.manifest = _bumped(index.directory)
    try:
        yield
    finally:
        index.manifest = _bumped(index.directory)
