"""The page catalogue: which page each row of an index is (SQLite, one file)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

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


@dataclass(frozen=True)
class Counts:
    """Row counts of a catalogue.

    Attributes:
        rows: Rows ever committed (live + deleted): the engines' row count.
        pages: Live pages.
        sources: Live sources.
        deleted_pages: Tombstoned rows (their vectors still take space in the shards).
        deleted_sources: Sources deleted or replaced by an update.
    """

    rows: int
    pages: int
    sources: int
    deleted_pages: int
    deleted_sources: int


@dataclass(frozen=True)
class PageRecord:
    """One catalogued page.

    Attributes:
        row: Row number of the page's vectors in the search engine.
        page_id: Stable page id.
        source: Source path as it was given when indexed.
        page: 1-based page number.
        text: The page's text layer.
        image: Path of the stored page image, relative to the index directory (or None).
        metadata: Facts recorded at ingest (kind, dpi, width, height, ...).
    """

    row: int
    page_id: str
    source: str
    page: int
    text: str = field(repr=False)
    image: str | None
    metadata: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class NewPage:
    """A page about to be committed (the row is assigned by the catalogue)."""

    page_id: str
    page: int
    text: str
    image: str | None
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class NewSource:
    """A source about to be committed with its pages (in order).

    Attributes:
        replaces: Other paths whose live source this one replaces (an older version recorded
            under another spelling of the same file, e.g. a relative path); the live source at
            `path` is always replaced.
    """

    path: str
    digest: str
    kind: str
    pages: Sequence[NewPage]
    replaces: tuple[str, ...] = ()


class Catalogue:
    """Rows <-> pages and sources, in `catalogue.sqlite` inside an index directory.

    Every write is one SQLite transaction (WAL journal, so readers in other processes keep
    reading a consistent snapshot while a writer commits): a source and all its pages appear
    together or not at all, and an update's new pages and its old pages' tombstones together.
    The row count (live and deleted) is the commit point of the engines.

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

    def __len__(self) -> int:
        """Rows ever committed, deleted ones included (the engines hold exactly this many)."""
        return int(self._db.execute("SELECT COALESCE(MAX(row) + 1, 0) FROM pages").fetchone()[0])

    def counts(self) -> Counts:
        """Rows, live and deleted pages and sources, read in one snapshot."""
        row = self._db.execute(
            "SELECT (SELECT COALESCE(MAX(row) + 1, 0) FROM pages), (SELECT COUNT(*) FROM pages WHERE deleted = 0),"
            " (SELECT COUNT(*) FROM sources WHERE deleted = 0), (SELECT COUNT(*) FROM pages WHERE deleted = 1),"
            " (SELECT COUNT(*) FROM sources WHERE deleted = 1)"
        ).fetchone()
        return Counts(*(int(v) for v in row))

    def num_sources(self) -> int:
        """Number of live sources."""
        return int(self._db.execute("SELECT COUNT(*) FROM sources WHERE deleted = 0").fetchone()[0])

    def snapshot(self) -> tuple[int, list[int]]:
        """(rows, tombstoned rows ascending), read in one transaction: one committed state."""
        db = self._db
        db.execute("BEGIN")
        try:
            rows = int(db.execute("SELECT COALESCE(MAX(row) + 1, 0) FROM pages").fetchone()[0])
            deleted = [r for (r,) in db.execute("SELECT row FROM pages WHERE deleted = 1 ORDER BY row")]
        finally:
            db.execute("COMMIT")
        return rows, deleted

    def state_key(self) -> tuple[int, int]:
        """(rows, deleted rows): changes with every commit that adds or deletes pages, the same in every thread.

        Rows are never reused and tombstones never revert, so the pair only grows.
        """
        row = self._db.execute(
            "SELECT (SELECT COALESCE(MAX(row) + 1, 0) FROM pages), (SELECT COUNT(*) FROM pages WHERE deleted = 1)"
        ).fetchone()
        return int(row[0]), int(row[1])

    def has_digest(self, digest: str) -> bool:
        """True if a live source with these exact bytes is indexed."""
        return self._one("SELECT 1 FROM sources WHERE digest = ? AND deleted = 0", (digest,)) is not None

    def source_digest(self, path: str) -> str | None:
        """Digest of the live source at `path`, or None."""
        return self._one("SELECT digest FROM sources WHERE path = ? AND deleted = 0", (path,))

    def commit_source(self, path: str, digest: str, kind: str, pages: Sequence[NewPage]) -> list[int]:
        """Add one source and its pages in one transaction; returns the rows given to the pages.

        A one-source `commit_sources`: a live source at the same `path` (an older version of the
        file) is tombstoned in the same transaction, so an update is never half-applied.
        """
        return self.commit_sources([NewSource(path, digest, kind, tuple(pages))])[0]

    def commit_sources(self, sources: Sequence[NewSource]) -> list[list[int]]:
        """Add several sources and their pages in ONE transaction; returns the rows of each source.

        Rows continue after the last row and are consecutive in the order given. A live source
        at the same path as a new one (an older version of the file) is tombstoned in the same
        transaction. Any error (e.g. a page id already live) rolls the whole group back.
        """
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            start = int(cur.execute("SELECT COALESCE(MAX(row) + 1, 0) FROM pages").fetchone()[0])
            out = []
            for src in sources:
                out.append(self._insert_source(cur, src, start))
                start += len(src.pages)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return out

    @staticmethod
    def _insert_source(cur: sqlite3.Cursor, src: NewSource, start: int) -> list[int]:
        """Inside an open transaction: tombstone the live sources at `src.path` (and `src.replaces`),
        insert `src` at rows `start...`."""
        for path in dict.fromkeys((src.path, *src.replaces)):
            Catalogue._tombstone_path(cur, path)
        cur.execute(
            "INSERT INTO sources(path, digest, kind, pages) VALUES (?, ?, ?, ?)",
            (src.path, src.digest, src.kind, len(src.pages)),
        )
        source_id = cur.lastrowid
        rows = list(range(start, start + len(src.pages)))
        cur.executemany(
            "INSERT INTO pages(row, page_id, source_id, page, text, image, metadata) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (row, p.page_id, source_id, p.page, p.text, p.image, json.dumps(dict(p.metadata), default=str))
                for row, p in zip(rows, src.pages)
            ],
        )
        return rows

    @staticmethod
    def _tombstone_path(cur: sqlite3.Cursor, path: str) -> None:
        """Inside an open transaction: tombstone the live source at `path` and its pages, if any."""
        old = cur.execute("SELECT source_id FROM sources WHERE path = ? AND deleted = 0", (path,)).fetchone()
        if old is not None:
            cur.execute("UPDATE pages SET deleted = 1 WHERE source_id = ?", old)
            cur.execute("UPDATE sources SET deleted = 1 WHERE source_id = ?", old)

    def move_source(self, old: str, new: str, replaces: Sequence[str] = ()) -> bool:
        """Record the live source at `old` under the path `new`, in one transaction (a moved file).

        Live sources at `new` and at `replaces` (older versions that this file's bytes replace)
        are tombstoned in the same transaction. Returns False if no live source is at `old`
        (then nothing changes).
        """
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            found = cur.execute("SELECT source_id FROM sources WHERE path = ? AND deleted = 0", (old,)).fetchone()
            if found is not None:
                for path in dict.fromkeys((new, *replaces)):
                    if path != old:
                        self._tombstone_path(cur, path)
                cur.execute("UPDATE sources SET path = ? WHERE source_id = ?", (new, found[0]))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return found is not None

    def source_of_digest(self, digest: str) -> str | None:
        """Path of the live source holding these bytes, or None."""
        return self._one("SELECT path FROM sources WHERE digest = ? AND deleted = 0", (digest,))

    def live_pages(self, page_ids: Sequence[str] = (), paths: Sequence[str] = ()) -> list[PageRecord]:
        """The live pages with these ids or of the sources at these paths (by row)."""
        found: dict[int, PageRecord] = {}
        for keys, column in ((list(page_ids), "p.page_id"), (list(paths), "s.path")):
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update((r.row, r) for r in self._select(f"WHERE {column} IN ({marks}) AND p.deleted = 0", chunk))
        return [found[r] for r in sorted(found)]

    def live_images(self) -> set[str]:
        """The image names of every live page (those a cleanup must keep)."""
        cur = self._db.execute("SELECT image FROM pages WHERE deleted = 0 AND image IS NOT NULL")
        return {image for (image,) in cur}

    def delete(self, page_ids: Sequence[str] = (), paths: Sequence[str] = ()) -> tuple[list[PageRecord], list[str]]:
        """Tombstone live pages by id and whole live sources by path, in one transaction.

        A source whose last live page is deleted is deleted too.

        Returns:
            The pages deleted, and the ids / paths that matched nothing live.
        """
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            found: dict[int, PageRecord] = {}
            missing = []
            for key, column in [(i, "p.page_id") for i in page_ids] + [(s, "s.path") for s in paths]:
                recs = self._select(f"WHERE {column} = ? AND p.deleted = 0", [key], cur)
                if not recs:
                    missing.append(key)
                found.update((r.row, r) for r in recs)
            cur.executemany("UPDATE pages SET deleted = 1 WHERE row = ?", [(r,) for r in found])
            cur.execute(
                "UPDATE sources SET deleted = 1 WHERE deleted = 0 AND NOT EXISTS "
                "(SELECT 1 FROM pages p WHERE p.source_id = sources.source_id AND p.deleted = 0)"
            )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return sorted(found.values(), key=lambda r: r.row), missing

    def deleted_rows(self) -> list[int]:
        """Rows of deleted pages, ascending."""
        return [r for (r,) in self._db.execute("SELECT row FROM pages WHERE deleted = 1 ORDER BY row")]

    def rows_where(self, condition: str, args: Sequence[Any], live: bool = True) -> list[int]:
        """Rows whose page matches an SQL condition over `p` (pages) and `s` (sources), ascending.

        Args:
            condition: The SQL condition (from `dse.storage.filters.compile_where`).
            args: Its parameters.
            live: Only live rows; False: deleted ones too (a page's fields never change, so a
                search applies the tombstones of its own committed state).
        """
        alive = "p.deleted = 0 AND " if live else ""
        cur = self._db.execute(
            f"SELECT p.row FROM pages p JOIN sources s ON s.source_id = p.source_id "
            f"WHERE {alive}({condition}) ORDER BY p.row",
            list(args),
        )
        return [r for (r,) in cur]

    def has_metadata_key(self, json_path: str) -> bool:
        """True if a live page's metadata has a value at `json_path` (e.g. `$."title"`)."""
        sql = "SELECT 1 FROM pages WHERE deleted = 0 AND json_type(metadata, ?) IS NOT NULL LIMIT 1"
        return self._one(sql, (json_path,)) is not None

    def images_of(self, path: str) -> list[tuple[str, str | None]]:
        """(page_id, image) of the live pages of the source at `path`."""
        cur = self._db.execute(
            "SELECT p.page_id, p.image FROM pages p JOIN sources s ON s.source_id = p.source_id "
            "WHERE s.path = ? AND p.deleted = 0",
            (path,),
        )
        return [(page_id, image) for page_id, image in cur]

    def metadata_keys(self) -> list[str]:
        """Top-level metadata keys recorded on live pages, sorted (for error messages)."""
        cur = self._db.execute(
            "SELECT DISTINCT j.key FROM pages p, json_each(p.metadata) j WHERE p.deleted = 0 ORDER BY j.key"
        )
        return [k for (k,) in cur]

    def pages(self, rows: Iterable[int]) -> list[PageRecord]:
        """The pages at `rows` (live or deleted), in the same order (KeyError for a row that does not exist)."""
        rows = [int(r) for r in rows]
        if not rows:
            return []
        found: dict[int, PageRecord] = {}
        for chunk_start in range(0, len(rows), 500):
            chunk = rows[chunk_start : chunk_start + 500]
            marks = ",".join("?" * len(chunk))
            for rec in self._select(f"WHERE p.row IN ({marks})", chunk):
                found[rec.row] = rec
        missing = [r for r in rows if r not in found]
        if missing:
            raise KeyError(f"rows not in the catalogue: {missing[:5]}")
        return [found[r] for r in rows]

    def page(self, page_id: str) -> PageRecord:
        """The live page with this id (KeyError naming it if absent)."""
        recs = self._select("WHERE p.page_id = ? AND p.deleted = 0", [page_id])
        if not recs:
            raise KeyError(f"no page {page_id!r} in this index")
        return recs[0]

    def sources(self) -> list[dict[str, Any]]:
        """Every live source: path, digest, kind, pages, added."""
        cur = self._db.execute(
            "SELECT path, digest, kind, pages, added FROM sources WHERE deleted = 0 ORDER BY source_id"
        )
        return [dict(zip(("path", "digest", "kind", "pages", "added"), r)) for r in cur.fetchall()]

    def _one(self, sql: str, args: Sequence[Any]) -> Any:
        row = self._db.execute(sql, list(args)).fetchone()
        return None if row is None else row[0]

    def _select(self, where: str, args: Sequence[Any], cur: sqlite3.Cursor | None = None) -> list[PageRecord]:
        cur = (cur or self._db.cursor()).execute(
            "SELECT p.row, p.page_id, s.path, p.page, p.text, p.image, p.metadata "
            f"FROM pages p JOIN sources s ON s.source_id = p.source_id {where}",
            list(args),
        )
        return [
            PageRecord(row, page_id, path, page, text, image, json.loads(meta))
            for row, page_id, path, page, text, image, meta in cur.fetchall()
        ]
