"""The index directory's write path: store images, commit sources, delete, sync, keep counts.

Adding sources is crash-safe: page images, then the engine's vectors (one shard per commit,
whether it holds one source or a group), then one catalogue transaction (the commit point), then
the manifest's counts. Sources interrupted before their catalogue commit leave no trace that
counts, and re-adding them works. Deleting pages is one
catalogue transaction that tombstones their rows; their vectors stay in the append-only shards
and searches exclude them. One writer at a time holds the directory's lock.

`IndexWriter` is a mixin of `dse.indexes.store.PageIndex`, which holds the state it works on.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dse.indexes.catalogue import Catalogue, NewPage, NewSource
from dse.indexes.layout import (
    DEFAULT_IMAGE_SIZE,
    IMAGES_DIR,
    LOCK_NAME,
    TEXT_DIR,
    VECTORS_DIR,
)
from dse.indexes.lock import IndexLockedError, WriteLock
from dse.indexes.manifest import Manifest, write_manifest
from dse.indexes.visible import RowMasks


@dataclass(frozen=True)
class DeleteReport:
    """What one delete did.

    Attributes:
        pages: Pages deleted (tombstoned).
        sources: Sources of which every page is now deleted, among those touched.
        missing: Page ids or source paths that matched no live page.
    """

    pages: int
    sources: int
    missing: tuple[str, ...] = ()


class IndexWriter:
    """Writing methods of `PageIndex`: adding, replacing and deleting sources under the lock."""

    # State and read-path methods provided by PageIndex.
    directory: Path
    manifest: Manifest
    catalogue: Catalogue
    engine: Any
    text_engine: Any
    _masks: RowMasks
    _refresh_lock: Any
    refresh: Callable[[], int]
    view: Callable[[], Any]
    _publish: Callable[[Any, Any], None]
    tokenize: Callable[[Sequence[str]], list[list[str]]]
    _reload_engine: Callable[[], None]

    def has_source(self, digest: str) -> bool:
        """True if a live source with these bytes is indexed."""
        return self.catalogue.has_digest(digest)

    def source_digest(self, path: str) -> str | None:
        """Digest of the live source indexed from `path`, or None."""
        return self.catalogue.source_digest(path)

    def store_image(self, page_id: str, image: Image.Image) -> str | None:
        """Save the stored copy of a page's image; returns its path relative to the index."""
        size = int(self.manifest.store.get("image_size", DEFAULT_IMAGE_SIZE))
        if size <= 0:
            return None
        rel = f"{IMAGES_DIR}/{page_id}.jpg"
        thumb = image.convert("RGB")
        thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
        fd, tmp = tempfile.mkstemp(prefix=".img-", suffix=".jpg", dir=self.directory / IMAGES_DIR)
        with os.fdopen(fd, "wb") as fh:
            thumb.save(fh, format="JPEG", quality=85)
        os.replace(tmp, self.directory / rel)
        return rel

    def add_source(self, path: str, digest: str, kind: str, pages: Sequence[NewPage], vectors: Any) -> list[int]:
        """Commit one source: its pages and their vectors, all or nothing (a one-source `add_sources`).

        Args:
            path: Source path as given.
            digest: SHA-256 of the source bytes.
            kind: Source kind ("pdf", "image", ...).
            pages: The source's pages, in order (images already stored with `store_image`).
            vectors: One vector entry per page, in the engine's input format.

        Returns:
            The rows given to the pages.
        """
        return self.add_sources([NewSource(path, digest, kind, tuple(pages))], [vectors])[0]

    def add_sources(self, sources: Sequence[NewSource], vectors: Sequence[Any]) -> list[list[int]]:
        """Commit several sources, all or nothing: one engine shard and one catalogue transaction.

        A live source already indexed from a source's path (an older version) is replaced: its
        pages are tombstoned in the transaction that commits the new ones, and their images
        removed after. On any error the engines drop the uncommitted rows and nothing counts.

        Args:
            sources: The sources, in order (page images already stored with `store_image`).
            vectors: For each source, one vector entry per page, in the engine's input format.

        Returns:
            The rows given to each source's pages (consecutive, in order).
        """
        if len(sources) != len(vectors):
            raise ValueError(f"{len(sources)} sources but {len(vectors)} vector groups")
        for src, vecs in zip(sources, vectors):
            if len(src.pages) != len(vecs):
                raise ValueError(f"{src.path}: {len(src.pages)} pages but {len(vecs)} vectors")
        if not sources:
            return []
        with self._refresh_lock, self._write_lock():
            self.refresh()  # another writer may have committed since we opened
            replaced = [image for src in sources for image in self.catalogue.images_of(src.path)]
            view = self.view()
            # copies: searches keep using the view's engines until the commit is published
            engine = view.engine.snapshot() if hasattr(view.engine, "snapshot") else view.engine
            text_engine = view.text_engine
            if text_engine is view.engine:
                text_engine = engine
            elif text_engine is not None and hasattr(text_engine, "snapshot"):
                text_engine = text_engine.snapshot()
            try:
                engine.add(_concat(vectors))
                engine.save(self.directory / VECTORS_DIR)
                if text_engine is not engine:
                    text_engine.add(self.tokenize([p.text for src in sources for p in src.pages]))
                    text_engine.save(self.directory / TEXT_DIR)
                rows = self.catalogue.commit_sources(sources)
            except BaseException:
                if engine is view.engine or getattr(view.engine, "_disk", True) is None:
                    self._reload_engine()  # engines without copies: drop the uncommitted rows
                raise
            self._publish(engine, text_engine)
            self._write_counts()
        new_ids = {p.page_id for src in sources for p in src.pages}
        self._remove_images([image for page_id, image in replaced if page_id not in new_ids])
        return rows

    def delete(self, page_ids: Sequence[str] = (), sources: Sequence[str] = ()) -> DeleteReport:
        """Delete pages by id and sources (all their pages) by path, in one transaction.

        The pages' rows are tombstoned (never returned by a search again); their vectors stay
        in the shards, their stored images are removed.
        """
        with self._refresh_lock, self._write_lock():
            self.refresh()
            before = self.catalogue.counts()
            records, missing = self.catalogue.delete(list(page_ids), list(sources))
            view = self.view()
            self._publish(view.engine, view.text_engine)
            self._write_counts()
            after = self.catalogue.counts()
        self._remove_images([rec.image for rec in records])
        return DeleteReport(len(records), after.deleted_sources - before.deleted_sources, tuple(missing))

    def missing_sources(self, folders: Sequence[str | Path]) -> list[str]:
        """Live sources under `folders` whose file no longer exists.

        Paths are compared as indexed, relative ones against the current directory. A folder
        that does not exist is ignored (a typo or another working directory must not empty
        the index).
        """
        roots = [os.path.abspath(f) for f in folders if os.path.isdir(f)]
        gone = []
        for src in self.catalogue.sources():
            path = os.path.abspath(src["path"])
            if any(os.path.commonpath([path, root]) == root for root in roots) and not os.path.exists(path):
                gone.append(src["path"])
        return gone

    def _remove_images(self, images: Sequence[str | None]) -> None:
        for rel in images:
            if rel:
                (self.directory / rel).unlink(missing_ok=True)

    def _repair_counts(self) -> None:
        """Rewrite counts a crash left stale (the catalogue is the truth); skipped while locked or read-only."""
        try:
            with self._write_lock(timeout=0):
                self._write_counts()
        except (IndexLockedError, OSError):
            pass  # a writer is committing (it writes the counts) or the directory is read-only

    def _write_counts(self) -> None:
        counts = self.catalogue.counts()
        self.manifest = self.manifest.with_counts(counts.pages, counts.sources)
        write_manifest(self.directory, self.manifest)

    def _write_lock(self, timeout: float = 60.0) -> WriteLock:
        return WriteLock(self.directory / LOCK_NAME, timeout=timeout)


def _concat(parts: Sequence[Any]) -> Any:
    """The sources' vectors as one engine input: arrays joined along pages, anything else as one list."""
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, np.ndarray) for p in parts) and len({p.ndim for p in parts}) == 1:
        return np.concatenate(parts, axis=0)  # (pages, dim) or (pages, tokens, dim)
    return [row for part in parts for row in part]
