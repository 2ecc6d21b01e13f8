"""The page catalogue: which page each row of an index is (SQLite, one file)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

CATALOGUE_NAME = "catalogue.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    source_id INTEGER PRIMARY KEY,
    path      TEXT NOT NULL,
    digest    TEXT NOT NULL UNIQUE,
    kind      TEXT NOT NULL,
    pages     INTEGER NOT NULL,
    added     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE TABLE IF NOT EXISTS pages (
    row       INTEGER PRIMARY KEY,
    page_id   TEXT NOT NULL UNIQUE,
    source_id INTEGER NOT NULL REFERENCES sources(source_id),
    page      INTEGER NOT NULL,
    text      TEXT NOT NULL,
    image     TEXT,
    metadata  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pages_by_source ON pages(source_id, page);
"""


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


class Catalogue:
    """Rows <-> pages and sources, in `catalogue.sqlite` inside an index directory.

    Every `commit_source` is one SQLite transaction: a source and all its pages appear
    together or not at all. Its page count is the commit point of the whole index.
    """

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / CATALOGUE_NAME
        self._db = sqlite3.connect(self.path, isolation_level=None)  # explicit transactions
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM pages").fetchone()[0])

    def num_sources(self) -> int:
        """Number of committed sources."""
        return int(self._db.execute("SELECT COUNT(*) FROM sources").fetchone()[0])

    def has_digest(self, digest: str) -> bool:
        """True if a source with these exact bytes is already indexed."""
        return self._db.execute("SELECT 1 FROM sources WHERE digest = ?", (digest,)).fetchone() is not None

    def commit_source(self, path: str, digest: str, kind: str, pages: Sequence[NewPage]) -> list[int]:
        """Add a source and its pages in one transaction; returns the rows given to the pages.

        Rows continue from the current count, in the order of `pages`.
        """
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            start = int(cur.execute("SELECT COUNT(*) FROM pages").fetchone()[0])
            cur.execute(
                "INSERT INTO sources(path, digest, kind, pages) VALUES (?, ?, ?, ?)",
                (path, digest, kind, len(pages)),
            )
            source_id = cur.lastrowid
            rows = list(range(start, start + len(pages)))
            cur.executemany(
                "INSERT INTO pages(row, page_id, source_id, page, text, image, metadata) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (row, p.page_id, source_id, p.page, p.text, p.image, json.dumps(dict(p.metadata), default=str))
                    for row, p in zip(rows, pages)
                ],
            )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return rows

    def pages(self, rows: Iterable[int]) -> list[PageRecord]:
        """The pages at `rows`, in the same order (KeyError for a row that does not exist)."""
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
        """The page with this id (KeyError naming it if absent)."""
        recs = self._select("WHERE p.page_id = ?", [page_id])
        if not recs:
            raise KeyError(f"no page {page_id!r} in this index")
        return recs[0]

    def sources(self) -> list[dict[str, Any]]:
        """Every committed source: path, digest, kind, pages, added."""
        cur = self._db.execute("SELECT path, digest, kind, pages, added FROM sources ORDER BY source_id")
        return [dict(zip(("path", "digest", "kind", "pages", "added"), r)) for r in cur.fetchall()]

    def _select(self, where: str, args: Sequence[Any]) -> list[PageRecord]:
        cur = self._db.execute(
            "SELECT p.row, p.page_id, s.path, p.page, p.text, p.image, p.metadata "
            f"FROM pages p JOIN sources s ON s.source_id = p.source_id {where}",
            list(args),
        )
        return [
            PageRecord(row, page_id, path, page, text, image, json.loads(meta))
            for row, page_id, path, page, text, image, meta in cur.fetchall()
        ]
