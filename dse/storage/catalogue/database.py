"""The catalogue's SQLite file: schema and its migration, one connection per thread, read-only opens, checkpoints."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CATALOGUE_NAME = "catalogue.sqlite"
SCHEMA_VERSION = 2  # 1: no tombstones, digest unique per source; 2: tombstones (`deleted`)

# Rows are never reused: a deleted page keeps its row (a tombstone, `deleted = 1`) because its
# vectors stay in the append-only shards. Among live rows a path, a digest and a page id are unique.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    source_id INTEGER PRIMARY KEY,
    path      TEXT NOT NULL,
    digest    TEXT NOT NULL,
    kind      TEXT NOT NULL,
    pages     INTEGER NOT NULL,
    added     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    deleted   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS pages (
    row       INTEGER PRIMARY KEY,
    page_id   TEXT NOT NULL,
    source_id INTEGER NOT NULL REFERENCES sources(source_id),
    page      INTEGER NOT NULL,
    text      TEXT NOT NULL,
    image     TEXT,
    metadata  TEXT NOT NULL,
    deleted   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS pages_by_source ON pages(source_id, page);
CREATE UNIQUE INDEX IF NOT EXISTS live_page_ids ON pages(page_id) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS tombstones ON pages(row) WHERE deleted = 1;
CREATE UNIQUE INDEX IF NOT EXISTS live_paths ON sources(path) WHERE deleted = 0;
CREATE UNIQUE INDEX IF NOT EXISTS live_digests ON sources(digest) WHERE deleted = 0;
"""

# key -> value facts of the store; `generation`: how many times the index was compacted (absent: 0);
# `word_forms_rows`: the rows [0, N) whose words `word_forms` holds (absent: none; see below).
# Created by a new catalogue or the first compaction, so older catalogues are unchanged.
META_SCHEMA = "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"

# (token, word): a word (`\w+` run) of some page and a BM25 token the index's tokenizer gives it
# (`dse.text.forms`), for snippets. Pages' words are recorded by the commit that adds them, in its
# transaction, while `word_forms_rows` equals that commit's first row; a catalogue made before
# them (or a commit by a dse that does not record them) leaves rows uncovered, and snippets then
# tokenize the words of those pages themselves. Words of deleted pages may stay: they are only
# words to look for.
WORD_FORMS_SCHEMA = ("CREATE TABLE IF NOT EXISTS word_forms (token TEXT NOT NULL, word TEXT NOT NULL, "
                     "PRIMARY KEY (token, word)) WITHOUT ROWID")
WORD_FORMS_ROWS = "word_forms_rows"


class StaleViewError(RuntimeError):
    """Rows of one engine generation were looked up in the catalogue of another (the index was compacted)."""


# version 1 -> 2: rebuild both tables without their UNIQUE column constraints, in one transaction
_MIGRATE_1 = """
ALTER TABLE sources RENAME TO sources_v1;
ALTER TABLE pages RENAME TO pages_v1;
DROP INDEX IF EXISTS pages_by_source;
""" + _SCHEMA + """
INSERT INTO sources(source_id, path, digest, kind, pages, added)
    SELECT source_id, path, digest, kind, pages, added FROM sources_v1;
INSERT INTO pages(row, page_id, source_id, page, text, image, metadata)
    SELECT row, page_id, source_id, page, text, image, metadata FROM pages_v1;
DROP TABLE pages_v1;
DROP TABLE sources_v1;
"""


class CatalogueFile:
    """The SQLite connections of `catalogue.sqlite` inside an index directory (`Catalogue` queries it).

    Args:
        directory: The index directory.
        read_only: Open for reading only, no write to the catalogue: SQLite's `mode=ro` on
            writable media or while a writer's `-shm` file is there (it reads the writer's WAL),
            else `immutable=1`, which needs no `-shm` file and so works on read-only media; it
            sees what was checkpointed into the main file (every commit, since each write ends
            with `checkpoint`).
    """

    def __init__(self, directory: Path, read_only: bool = False) -> None:
        self.path = Path(directory) / CATALOGUE_NAME
        self.read_only = read_only
        self._uri: str | None = None
        self._local = threading.local()  # one SQLite connection per thread (sqlite3 binds them)
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        if read_only:
            self._open_read_only()
            return
        self._db.execute("PRAGMA journal_mode=WAL")  # persistent: set once, by the first opener
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version < SCHEMA_VERSION:
            self._upgrade()

    def _open_read_only(self) -> None:
        """Pick the read-only URI: `mode=ro` if a writer's WAL and -shm are readable, else `immutable=1`."""
        from dse.storage.manifest import IndexFormatError

        if not self.path.is_file():
            raise IndexFormatError(f"{self.path.parent}: no {CATALOGUE_NAME}; not a dse index")
        base = "file:" + os.path.abspath(self.path).replace("?", "%3f").replace("#", "%23")
        from dse.storage.layout import media_read_only

        # mode=ro reads a live writer's WAL but needs a -shm file (created if it can be);
        # immutable=1 needs none, and is safe only where nothing can change the files
        live = Path(f"{self.path}-shm").is_file() or not media_read_only(self.path.parent)
        tries = [f"{base}?mode=ro"] if live else []
        for uri in tries + [f"{base}?mode=ro&immutable=1"]:
            self._uri = uri
            try:
                version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
                break
            except sqlite3.OperationalError:
                self._drop_connections()
        else:
            raise IndexFormatError(f"{self.path}: cannot be opened read-only")
        if version < SCHEMA_VERSION:
            raise IndexFormatError(
                f"{self.path}: catalogue format {version} is older than {SCHEMA_VERSION}; open the index once "
                f"where it can be written (copy it to writable storage) to upgrade it")

    @property
    def _db(self) -> sqlite3.Connection:
        """This thread's connection, opened on its first use (threads never share one)."""
        db = getattr(self._local, "db", None)
        if db is None:
            if self._closed:
                raise sqlite3.ProgrammingError(f"{self.path}: the catalogue is closed")
            if self._uri is None:  # explicit transactions
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            else:
                db = sqlite3.connect(self._uri, uri=True, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("PRAGMA synchronous=FULL")
            with self._connections_lock:
                self._connections.append(db)
            self._local.db = db
        return db

    def _upgrade(self) -> None:
        """Create the tables, or migrate a version-1 catalogue (one transaction)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])  # another opener may have won
            if version < SCHEMA_VERSION:
                cols = [r[1] for r in self._db.execute("PRAGMA table_info(pages)").fetchall()]
                script = _MIGRATE_1 if cols and "deleted" not in cols else _SCHEMA
                for statement in script.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                if not cols:  # a new catalogue: its pages' word forms are recorded from the first commit
                    self._db.execute(META_SCHEMA)
                    self._db.execute(WORD_FORMS_SCHEMA)
                    self._db.execute("INSERT OR REPLACE INTO store_meta(key, value) VALUES (?, '0')",
                                     (WORD_FORMS_ROWS,))
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close every thread's connection (the catalogue cannot be used after)."""
        self._closed = True
        self._drop_connections()

    def _drop_connections(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()
        self._local = threading.local()

    def generation(self, cur: sqlite3.Cursor | None = None) -> int:
        """The engine generation the catalogue's rows number (0 until the first `dse compact`)."""
        try:
            row = (cur or self._db).execute("SELECT value FROM store_meta WHERE key = 'generation'").fetchone()
        except sqlite3.OperationalError:  # no store_meta table: never compacted
            return 0
        return 0 if row is None else int(row[0])

    @contextmanager
    def at_generation(self, generation: int | None) -> Iterator[None]:
        """Run the reads inside in one read transaction whose rows number `generation`'s engines.

        Raises:
            StaleViewError: the catalogue was compacted since (its rows number another generation).
        """
        db = self._db
        if generation is None or db.in_transaction:
            if generation is not None and self.generation() != generation:
                raise StaleViewError(f"{self.path.parent}: compacted since this view was loaded")
            yield
            return
        db.execute("BEGIN")
        try:
            if self.generation() != generation:
                raise StaleViewError(f"{self.path.parent}: compacted since this view was loaded")
            yield
        finally:
            db.execute("COMMIT")

    def checkpoint(self) -> bool:
        """Copy every commit from the WAL into the main file and empty the WAL (`wal_checkpoint(TRUNCATE)`).

        After it, `catalogue.sqlite` alone holds every commit, so a copy of the directory (or of
        that file) and a read-only open of it see them all. Waits at most 2 s for readers of
        older snapshots; returns False if it could not finish (the next write tries again).
        """
        if self.read_only:
            return True
        db = self._db
        db.execute("PRAGMA busy_timeout=2000")
        try:
            busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.OperationalError:
            busy = 1
        finally:
            db.execute("PRAGMA busy_timeout=10000")
        return not busy
