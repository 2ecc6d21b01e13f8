"""The index directory's write path: store images, commit sources, delete, move, sync, keep counts.

Adding sources is crash-safe: page images (written atomically, fsynced before the commit that
names them), then the engine's vectors (one shard per commit, whether it holds one source or a
group), then one catalogue transaction (the commit point), then the manifest's counts, then a
WAL checkpoint (so `catalogue.sqlite` alone holds every commit: a copy of the directory, or a
read-only open, sees them all). Sources interrupted before their catalogue commit leave no
trace that counts, and re-adding them works; their stored images are removed (by the run, or
after a crash by the next run: `dse.storage.images`). Deleting pages is one catalogue
transaction that tombstones their rows; their vectors stay in the append-only shards and
searches exclude them. One writer at a time holds the directory's lock.

Sources are keyed by `dse.storage.layout.source_key` (resolved absolute path; URLs as given);
paths given to `delete` and `find_source` are matched by that key first, then by the spellings
older indexes recorded (`source_spellings`). No file outside the index is ever written, read or
removed on the catalogue's word (`layout.image_file`).

`IndexWriter` is a mixin of `dse.storage.page_index.PageIndex`, which holds the state it works on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dse.backends.base import DEFAULT_IMAGE_SIZE
from dse.backends.records import CompactReport, DeleteReport, NewSource, PageRecord, Reclaimable
from dse.storage import images
from dse.storage.catalogue import Catalogue
from dse.storage.layout import (
    LOCK_NAME,
    ReadOnlyIndexError,
    engine_dirs,
    image_file,
    image_name,
)
from dse.storage.lock import IndexLockedError, WriteLock
from dse.storage.manifest import Manifest, format_for, read_manifest, with_ingest, write_manifest
from dse.storage.sources import SourceLookups
from dse.storage.visible import RowMasks
from dse.text.fields import text_and_fields


class IndexWriter(SourceLookups):
    """Writing methods of `PageIndex`: adding, replacing, moving and deleting sources under the lock."""

    # State and read-path methods provided by PageIndex.
    directory: Path
    manifest: Manifest
    catalogue: Catalogue
    read_only: bool
    engine: Any
    text_engine: Any
    _masks: RowMasks
    _refresh_lock: Any
    refresh: Callable[[], int]
    view: Callable[[], Any]
    _publish: Callable[[Any, Any], None]
    tokenize: Callable[[Sequence[str]], list[list[str]]]
    _reload_engine: Callable[[], None]

    # ---------------------------------------------------------------- images
    def store_image(self, page_id: str, image: Image.Image) -> str | None:
        """Save the stored copy of a page's image atomically; returns its path relative to the index.

        Raises:
            ValueError: `page_id` is not a page id (it names the file, so nothing else may).
            ReadOnlyIndexError: the index was opened read-only.
        """
        if int(self.manifest.store.get("image_size", DEFAULT_IMAGE_SIZE)) > 0:
            self._check_writable()
        return images.store_page_image(self.directory, self.manifest.store, page_id, image, DEFAULT_IMAGE_SIZE)

    @contextmanager
    def writing_run(self) -> Iterator[None]:
        """Held for the length of an indexing run; the first run after a crash removes its orphan images."""
        self._check_writable()
        with images.RunGuard(self.directory, self.catalogue.live_images):
            yield

    def discard_images(self, page_ids: Sequence[str]) -> None:
        """Remove the stored images of pages that no live row names (a failed or interrupted source's).

        Under the lock, so that no commit names them meanwhile. If another writer holds it for
        long, they are left to the next run's cleanup (`images.leave_marker`).
        """
        if self.read_only or not page_ids:
            return
        try:
            with self._write_lock(timeout=5.0):
                live = {r.page_id for r in self.catalogue.live_pages(page_ids=list(page_ids))}
                images.remove([self.directory / image_name(p) for p in dict.fromkeys(page_ids) if p not in live])
        except (IndexLockedError, ValueError, OSError):
            images.leave_marker(self.directory)

    # ---------------------------------------------------------------- commits
    def add_sources(self, sources: Sequence[NewSource], vectors: Sequence[Any]) -> list[list[int]]:
        """Commit several sources, all or nothing: one engine shard and one catalogue transaction.

        A live source already indexed from a source's path (or from one of its `replaces`
        paths: an older version) is replaced: its pages are tombstoned in the transaction that
        commits the new ones, and their images removed after. On any error the engines drop
        the uncommitted rows and nothing counts.

        Args:
            sources: The sources, in order (page images already stored with `store_image`).
            vectors: For each source, one vector entry per page, in the engine's input format.

        Returns:
            The rows given to each source's pages (consecutive, in order).

        Raises:
            UnsafeIndexPathError: a replaced page's row names an image outside the index
                (nothing is written).
        """
        images.check_new_sources(sources, vectors)
        if not sources:
            return []
        images.sync(self.directory, [p.image for src in sources for p in src.pages])  # before the commit
        with self._refresh_lock, self._write_lock():
            self.refresh()  # another writer may have committed since we opened
            old = self.catalogue.live_pages(paths=[p for src in sources for p in (src.path, *src.replaces)])
            replaced = [(rec.page_id, self._image_file(rec)) for rec in old]  # checked before any write
            view = self.view()
            # copies: searches keep using the view's engines until the commit is published
            engine = view.engine.snapshot() if hasattr(view.engine, "snapshot") else view.engine
            text_engine = view.text_engine
            if text_engine is view.engine:
                text_engine = engine
            elif text_engine is not None and hasattr(text_engine, "snapshot"):
                text_engine = text_engine.snapshot()
            vectors_dir, text_dir = engine_dirs(view.generation)
            try:
                engine.add(_concat(vectors))
                engine.save(self.directory / vectors_dir)
                if text_engine is not engine:
                    text_engine.add(self._text_tokens(sources))
                    text_engine.save(self.directory / text_dir)
                # word forms only where they will be recorded (not in a catalogue from before them)
                forms = self._word_forms(sources) if self.catalogue.records_forms_from(len(self.catalogue)) else None
                rows = self.catalogue.commit_sources(sources, forms)
            except BaseException:
                if engine is view.engine or getattr(view.engine, "_disk", True) is None:
                    self._reload_engine()  # engines without copies: drop the uncommitted rows
                raise
            self._publish(engine, text_engine)
            self._after_commit()
        new_ids = {p.page_id for src in sources for p in src.pages}
        images.remove([path for page_id, path in replaced if page_id not in new_ids])
        return rows

    def record_ingest(self, settings: Mapping[str, Any]) -> None:
        """Record the ingest settings (OCR) of an add in the manifest's `store.ingest`, under the lock.

        Called before the add's first commit; a later add with other settings marks them mixed
        (`dse.storage.manifest.with_ingest`).
        """
        with self._refresh_lock, self._write_lock():
            current = self._disk_manifest()
            updated = with_ingest(current, settings, earlier_pages=self.catalogue.counts().pages > 0)
            if updated is not current:
                write_manifest(self.directory, updated)
            self.manifest = updated

    def _word_forms(self, sources: Sequence[NewSource]) -> list[tuple[str, str]]:
        """The (token, word) pairs of the words of the sources' pages, for snippets (`dse.text.forms`)."""
        from dse.text.forms import word_forms

        return word_forms((p.text for src in sources for p in src.pages), self.tokenize)

    def _text_tokens(self, sources: Sequence[NewSource]) -> list[list[str]]:
        """The text side's tokens of the sources' pages, with their fields (`dse.text.fields`)."""
        fields = self.manifest.store.get("text_fields") or {}
        tokenize = lambda text: self.tokenize([text])[0]  # noqa: E731 - the index's tokenizer, one text
        items = [text_and_fields(p.text, src.path, src.digest, p.page, p.metadata, fields, tokenize)
                 for src in sources for p in src.pages]
        return [tokens + extra for tokens, (_, extra) in zip(self.tokenize([text for text, _ in items]), items)]

    def move_source(self, old: str, new: str, replaces: Sequence[str] = ()) -> bool:
        """Record the live source at `old` under `new` (a moved file, or an older spelling), one transaction.

        Live sources at `new` and at `replaces` (older versions this file's bytes replace) are
        tombstoned in the same transaction and their images removed. Returns False if no live
        source is at `old`.
        """
        with self._refresh_lock, self._write_lock():
            self.refresh()
            stale_paths = [p for p in dict.fromkeys((new, *replaces)) if p != old]
            stale = [self._image_file(rec) for rec in self.catalogue.live_pages(paths=stale_paths)]
            moved = self.catalogue.move_source(old, new, stale_paths)
            view = self.view()
            self._publish(view.engine, view.text_engine)  # tombstones of the stale versions
            self._after_commit()
        if moved:
            images.remove(stale)
        return moved

    def delete(self, page_ids: Sequence[str] = (), sources: Sequence[str] = (), *, as_indexed: bool = False) -> DeleteReport:
        """Delete pages by id and sources (all their pages) by path, in one transaction.

        The pages' rows are tombstoned (never returned by a search again); their vectors stay
        in the shards, their stored images are removed.

        Args:
            page_ids: Page ids.
            sources: Source paths, matched like `find_source` (any spelling of the file, `~`
                expanded; URLs as given).
            as_indexed: Match `sources` exactly as recorded (as `missing_sources` returns them).

        Raises:
            UnsafeIndexPathError: a row to delete names an image outside the index (nothing is deleted).
        """
        with self._refresh_lock, self._write_lock():
            self.refresh()
            given: dict[str, str] = {}  # recorded path -> the name the caller gave
            unknown: list[str] = []
            for source in (str(s) for s in sources):
                path = source if as_indexed else self.find_source(source)
                if path is None:
                    unknown.append(source)
                else:
                    given.setdefault(path, source)
            files = [self._image_file(rec) for rec in self.catalogue.live_pages(list(page_ids), list(given))]
            before = self.catalogue.counts()
            records, missing = self.catalogue.delete(list(page_ids), list(given))
            view = self.view()
            self._publish(view.engine, view.text_engine)
            self._after_commit()
            after = self.catalogue.counts()
        images.remove(files)
        missing = [given.get(m, m) for m in missing] + unknown
        return DeleteReport(len(records), after.deleted_sources - before.deleted_sources, tuple(missing))

    def compact(self, on_stage: Callable[[str], None] | None = None) -> CompactReport:
        """Rewrite the engines without the deleted pages' rows, under the lock (`dse.storage.compaction.run`)."""
        from dse.storage.compaction.run import compact

        return compact(self, on_stage)

    def reclaimable(self) -> Reclaimable:
        """What `compact` would reclaim now (deleted rows, estimated bytes), for `dse info`."""
        from dse.storage.compaction.run import reclaimable

        return reclaimable(self)

    def checkpoint(self) -> bool:
        """Fold the catalogue's WAL into `catalogue.sqlite` (every write does it; see `Catalogue.checkpoint`)."""
        return self.catalogue.checkpoint()

    # ---------------------------------------------------------------- internals
    def _image_file(self, rec: PageRecord) -> Path | None:
        return image_file(self.directory, rec.row, rec.page_id, rec.image)

    def _after_commit(self) -> None:
        """Counts into the manifest, then the WAL into the main file (under the lock)."""
        self._write_counts()
        self.catalogue.checkpoint()

    def _repair_counts(self) -> None:
        """Rewrite counts a crash left stale (the catalogue is the truth); skipped while locked or read-only."""
        if self.read_only:
            return
        try:
            with self._write_lock(timeout=0):
                self._write_counts()
        except (IndexLockedError, OSError):
            pass  # a writer is committing (it writes the counts) or the directory is read-only

    def _write_counts(self) -> None:
        """The catalogue's counts and format version (`format_for` its generation) into the manifest.

        Under the lock, on the manifest as it is on disk: what another process recorded since
        this one opened the index (ingest settings, a compaction's format) is kept.
        """
        counts = self.catalogue.counts()
        manifest = self._disk_manifest().with_counts(counts.pages, counts.sources)
        self.manifest = replace(manifest, format_version=format_for(self.catalogue.generation()))
        write_manifest(self.directory, self.manifest)

    def _disk_manifest(self) -> Manifest:
        """The manifest as the last writer left it (IndexFormatError if a newer dse rewrote it meanwhile)."""
        return read_manifest(self.directory)

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyIndexError(
                f"{self.directory}: opened read-only (read-only media or read_only=True); nothing can be added "
                f"or deleted: copy the index to writable storage (cp -r) to change it")

    def _write_lock(self, timeout: float = 60.0) -> WriteLock:
        self._check_writable()
        return WriteLock(self.directory / LOCK_NAME, timeout=timeout)


def _concat(parts: Sequence[Any]) -> Any:
    """The sources' vectors as one engine input: arrays joined along pages, anything else as one list."""
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, np.ndarray) for p in parts) and len({p.ndim for p in parts}) == 1:
        return np.concatenate(parts, axis=0)  # (pages, dim) or (pages, tokens, dim)
    return [row for part in parts for row in part]
