"""The rewrite cache: generated rewrites kept by (rewriter, model identity, prompt version, query).

An LLM rewrite takes seconds; the same query asked again (an evaluation re-run, a user's
second search, a server restarted) reads it back. Two levels: an in-memory LRU, and a SQLite
file on disk (`default_cache_path()`: `$DSE_CACHE_DIR/rewrites.sqlite`, else
`$XDG_CACHE_HOME/dse/rewrites.sqlite`, else `~/.cache/dse/rewrites.sqlite`). Both are safe to share
between threads (one lock around the LRU; one SQLite connection per thread, WAL journal, so
several processes can share the file too). The key is a SHA-256 of its four parts, so a change
of model weights, generation options or prompt version never reads an old rewrite.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CacheStats:
    """Lookups answered from memory, from disk, and not answered (each miss is one generation)."""

    memory_hits: int
    disk_hits: int
    misses: int


def default_cache_path() -> Path:
    """Where rewrites are kept on disk by default."""
    root = os.environ.get("DSE_CACHE_DIR")
    if root:
        return Path(root) / "rewrites.sqlite"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "dse" / "rewrites.sqlite"


def cache_key(rewriter: str, identity: str, prompt_version: str | None, query: str) -> str:
    """The SHA-256 (hex) of the four parts a rewrite depends on."""
    parts = json.dumps([rewriter, identity, prompt_version, query], ensure_ascii=False)
    return hashlib.sha256(parts.encode("utf-8")).hexdigest()


class RewriteCache:
    """Rewrites in memory (LRU of `capacity` entries) and, unless `path` is None, in a SQLite file.

    Args:
        path: The SQLite file (created with its folder); None keeps rewrites in memory only.
        capacity: Entries the in-memory LRU holds (0: none, every lookup goes to disk).

    Raises:
        ValueError: a negative capacity, or a path that is a folder.
    """

    def __init__(self, path: str | Path | None = None, capacity: int = 4096) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.path = None if path is None else Path(path).expanduser()
        if self.path is not None and self.path.is_dir():
            raise ValueError(f"rewrite cache {self.path}: is a folder; give a file path (e.g. rewrites.sqlite)")
        self.capacity = int(capacity)
        self._memory: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._hits_memory = self._hits_disk = self._misses = 0
        if self.path is not None:
            self._connection()  # create the file now: a path that cannot be written fails here, named

    def get(self, key: str) -> str | None:
        """The text stored under `key`, or None."""
        with self._lock:
            found = self._memory.get(key)
            if found is not None:
                self._memory.move_to_end(key)
                self._hits_memory += 1
                return found
        found = self._disk_get(key)
        with self._lock:
            if found is None:
                self._misses += 1
            else:
                self._hits_disk += 1
                self._remember(key, found)
        return found

    def put(self, key: str, text: str) -> None:
        """Store `text` under `key` (in memory, and on disk when the cache has a file)."""
        with self._lock:
            self._remember(key, text)
        if self.path is not None:
            conn = self._connection()
            with conn:
                conn.execute("INSERT OR REPLACE INTO rewrites (key, text) VALUES (?, ?)", (key, text))

    def stats(self) -> CacheStats:
        """Hits and misses since the cache was made."""
        with self._lock:
            return CacheStats(self._hits_memory, self._hits_disk, self._misses)

    def clear_memory(self) -> None:
        """Forget the in-memory entries (the file keeps them)."""
        with self._lock:
            self._memory.clear()

    def _remember(self, key: str, text: str) -> None:
        """Put into the LRU (the caller holds the lock)."""
        if self.capacity == 0:
            return
        self._memory[key] = text
        self._memory.move_to_end(key)
        while len(self._memory) > self.capacity:
            self._memory.popitem(last=False)

    def _disk_get(self, key: str) -> str | None:
        if self.path is None:
            return None
        row = self._connection().execute("SELECT text FROM rewrites WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection to the cache file (made, with the table, on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            assert self.path is not None
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("CREATE TABLE IF NOT EXISTS rewrites (key TEXT PRIMARY KEY, text TEXT NOT NULL)")
                conn.commit()
            except (OSError, sqlite3.Error) as exc:
                raise OSError(f"rewrite cache {self.path}: cannot open it ({exc}); give another path or "
                              "disable the disk cache (cache_path=None)") from exc
            self._local.conn = conn
        return conn
