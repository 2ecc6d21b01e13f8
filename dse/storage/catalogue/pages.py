"""The page catalogue: which page each row of an index is (SQLite, one file: `dse.storage.catalogue.database`)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Iterable, Sequence

from dse.backends.records import Counts, NewPage, NewSource, PageRecord
from dse.storage.catalogue.database import META_SCHEMA, CatalogueFile, StaleViewError
from dse.storage.catalogue.word_forms import WordForms

__all__ = ["Catalogue", "StaleViewError"]


class Catalogue(WordForms, CatalogueFile):
    """Rows <-> pages and sources, in `catalogue.sqlite` inside an index directory.

    Every write is one SQLite transaction (WAL journal, so readers in other processes keep
    reading a consistent snapshot while a writer commits): a source and all its pages appear
    together or not at all, and an update's new pages and its old pages' tombstones together.
    The row count (live and deleted) is the commit point of the engines.
    """

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
        return self.state()[1:]

    def state(self) -> tuple[int, int, list[int]]:
        """(generation, rows, tombstoned rows ascending), read in one transaction: one committed state."""
        db = self._db
        db.execute("BEGIN")
        try:
            generation = self.generation()
            rows = int(db.execute("SELECT COALESCE(MAX(row) + 1, 0) FROM pages").fetchone()[0])
            deleted = [r for (r,) in db.execute("SELECT row FROM pages WHERE deleted = 1 ORDER BY row")]
        finally:
            db.execute("COMMIT")
        return generation, rows, deleted

    def state_key(self) -> tuple[int, int, int]:
        """(generation, rows, deleted rows): changes with every commit, the same in every thread.

        Within a generation rows are never reused and tombstones never revert, so the pair only
        grows; a compaction starts the next generation.
        """
        return (lambda g, rows, deleted: (g, rows, len(deleted)))(*self.state())

    def compact(self, generation: int, rows: int) -> tuple[int, int, int]:
        """Drop tombstoned pages and deleted sources, renumber live rows 0..n-1 in row order, record
        `generation`: one transaction (the switch to the compacted engines, written before it).

        Args:
            generation: The new generation (the current one + 1).
            rows: The rows of the state the engines were compacted from (checked unchanged).

        Returns:
            (live rows, pages removed, sources removed).

        Raises:
            RuntimeError: the catalogue changed since that state (nothing is changed).
        """
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            now = (self.generation(cur), int(cur.execute("SELECT COALESCE(MAX(row) + 1, 0) FROM pages").fetchone()[0]))
            if now != (generation - 1, rows):
                raise RuntimeError(f"{self.path.parent}: the catalogue changed during compaction (generation, rows) "
                                   f"{now} != {(generation - 1, rows)}; nothing was changed, run it again")
            removed = cur.execute("DELETE FROM pages WHERE deleted = 1").rowcount
            live = [r for (r,) in cur.execute("SELECT row FROM pages ORDER BY row").fetchall()]
            self._renumber_forms(cur, live)
            # ascending: row i's new number is free (a removed row, or a live one already moved down)
            cur.executemany("UPDATE pages SET row = ? WHERE row = ?", [(n, r) for n, r in enumerate(live) if n != r])
            sources = cur.execute("DELETE FROM sources WHERE deleted = 1 AND NOT EXISTS "
                                  "(SELECT 1 FROM pages p WHERE p.source_id = sources.source_id)").rowcount
            cur.execute(META_SCHEMA)
            cur.execute("INSERT OR REPLACE INTO store_meta(key, value) VALUES ('generation', ?)", (str(generation),))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return len(live), removed, sources

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

    def commit_sources(self, sources: Sequence[NewSource], forms: Sequence[tuple[str, str]] | None = None) -> list[list[int]]:
        """Add several sources and their pages in ONE transaction; returns the rows of each source.

        Rows continue after the last row and are consecutive in the order given. A live source
        at the same path as a new one (an older version of the file) is tombstoned in the same
        transaction. Any error (e.g. a page id already live) rolls the whole group back. `forms`:
        the pages' (token, word) pairs (`dse.text.forms`), recorded as `WordForms` says.
        """
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            first = start = int(cur.execute("SELECT COALESCE(MAX(row) + 1, 0) FROM pages").fetchone()[0])
            out = []
            for src in sources:
                out.append(self._insert_source(cur, src, start))
                start += len(src.pages)
            self._record_forms(cur, first, start, forms)
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

    def rows_where(
        self, condition: str, args: Sequence[Any], live: bool = True, generation: int | None = None
    ) -> list[int]:
        """Rows whose page matches an SQL condition over `p` (pages) and `s` (sources), ascending.

        Args:
            condition: The SQL condition (from `dse.storage.filters.compile_where`).
            args: Its parameters.
            live: Only live rows; False: deleted ones too (a page's fields never change, so a
                search applies the tombstones of its own committed state).
            generation: The engine generation the rows must number (StaleViewError if not).
        """
        alive = "p.deleted = 0 AND " if live else ""
        with self.at_generation(generation):
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

    def count_metadata(self, json_path: str, value: Any) -> int:
        """Live pages whose metadata has `value` at `json_path` (e.g. `$."text_source"`), in one query."""
        sql = "SELECT COUNT(*) FROM pages WHERE deleted = 0 AND json_extract(metadata, ?) = ?"
        return int(self._one(sql, (json_path, value)))

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

    def pages(self, rows: Iterable[int], generation: int | None = None) -> list[PageRecord]:
        """The pages at `rows` (live or deleted), in the same order (KeyError for a row that does not exist).

        With `generation`, the rows are those of that engine generation (StaleViewError if the
        catalogue numbers another one: it was compacted since).
        """
        rows = [int(r) for r in rows]
        if not rows:
            return []
        found: dict[int, PageRecord] = {}
        with self.at_generation(generation):
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
