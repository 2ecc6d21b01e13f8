"""The index directory: manifest + page catalogue + stored page images + the search engine.

Layout (relative paths only, so the directory can be moved)::

    INDEX/
      manifest.json        what built it (encoder, prompt version, dims, counts)
      catalogue.sqlite     rows -> pages -> sources
      images/<page_id>.jpg a stored copy of each page, long side <= image_size
      vectors/             the engine's files
      text/                BM25 over the pages' text layers, beside the visual vectors (for
                           text and hybrid search; an index built with `bm25` uses vectors/)

Adding a source is crash-safe: page images, then the engine's vectors, then one catalogue
transaction (the commit point), then the manifest's counts. A source interrupted before its
catalogue commit leaves no trace that counts, and re-adding it works. Deleting pages is one
catalogue transaction that tombstones their rows; their vectors stay in the append-only shards
and searches exclude them. Readers in other processes keep searching the rows they loaded
(`refresh` picks up newer commits); one writer at a time holds the directory's lock.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from dse.indexes.catalogue import Catalogue, Counts, NewPage, PageRecord
from dse.indexes.lock import IndexLockedError, WriteLock
from dse.indexes.manifest import Manifest, read_manifest, write_manifest
from dse.indexes.visible import RowMasks

DEFAULT_IMAGE_SIZE = 768
IMAGES_DIR = "images"
VECTORS_DIR = "vectors"
TEXT_DIR = "text"
LOCK_NAME = ".lock"


@dataclass(frozen=True)
class ScoredPage:
    """A catalogued page with its score for one query."""

    record: PageRecord
    score: float


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


def _dse_version() -> str:
    from dse import __version__

    return __version__


class PageIndex:
    """An index directory opened for searching and adding pages.

    Use `PageIndex.create` for a new directory and `PageIndex.open` for an existing one.
    """

    def __init__(
        self, directory: Path, manifest: Manifest, catalogue: Catalogue, engine: Any, text_engine: Any = None
    ) -> None:
        self.directory = Path(directory)
        self.manifest = manifest
        self.catalogue = catalogue
        self.engine = engine
        self.text_engine = engine if manifest.kind == "text" else text_engine
        self._tokenizer: Any = None
        self._masks = RowMasks(catalogue)

    # ---------------------------------------------------------------- lifecycle
    @classmethod
    def create(
        cls,
        directory: str | Path,
        encoder: Mapping[str, Any],
        engine_options: Mapping[str, Any] | None = None,
        image_size: int = DEFAULT_IMAGE_SIZE,
    ) -> "PageIndex":
        """Make a new, empty index directory.

        Args:
            directory: Where to create it (must not hold an index already).
            encoder: `Encoder.describe()` of the encoder that will fill it.
            engine_options: Options of the engine (e.g. {"hnsw": True} for single vectors).
            image_size: Long side, in pixels, of the stored page images (0: store none).
        """
        from dse.indexes.engines import engine_for

        directory = Path(directory)
        if (directory / "manifest.json").exists():
            raise FileExistsError(f"{directory}: an index already exists here; open it instead")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / IMAGES_DIR).mkdir(exist_ok=True)
        (directory / VECTORS_DIR).mkdir(exist_ok=True)
        options = dict(engine_options or {})
        if encoder["kind"] in ("single", "multi"):
            options.setdefault("dim", encoder["dim"])  # fixes the width before the first add
        engine = engine_for(encoder["kind"], options)(**options)
        store: dict[str, Any] = {"image_size": int(image_size)}
        text_engine = None
        if encoder["kind"] != "text":
            from dse.encoders.bm25 import BM25Encoder

            (directory / TEXT_DIR).mkdir(exist_ok=True)
            text_engine = engine_for("text")()
            store["text"] = {"tokenizer": BM25Encoder().options(), "engine": text_engine.options()}
        manifest = Manifest(encoder=dict(encoder), engine=engine.options(), store=store, dse_version=_dse_version())
        write_manifest(directory, manifest)
        return cls(directory, manifest, Catalogue(directory), engine, text_engine)

    @classmethod
    def open(cls, directory: str | Path) -> "PageIndex":
        """Open an existing index directory (IndexFormatError if it is not one)."""
        from dse.indexes.engines import engine_for

        directory = Path(directory)
        manifest = read_manifest(directory)
        catalogue = Catalogue(directory)
        rows = len(catalogue)
        engine = engine_for(manifest.kind, manifest.engine).load(directory / VECTORS_DIR, rows=rows, **dict(manifest.engine))
        text_engine = None
        if "text" in manifest.store:
            text_engine = engine_for("text").load(directory / TEXT_DIR, rows=rows, **manifest.store["text"]["engine"])
        index = cls(directory, manifest, catalogue, engine, text_engine)
        counts = catalogue.counts()
        if manifest.pages != counts.pages or manifest.sources != counts.sources:
            index._repair_counts()
        return index

    def _repair_counts(self) -> None:
        """Rewrite counts a crash left stale (the catalogue is the truth); skipped while locked or read-only."""
        try:
            with self._write_lock(timeout=0):
                self._write_counts()
        except (IndexLockedError, OSError):
            pass  # a writer is committing (it writes the counts) or the directory is read-only

    @staticmethod
    def exists(directory: str | Path) -> bool:
        """True if `directory` holds an index."""
        return (Path(directory) / "manifest.json").is_file()

    def close(self) -> None:
        """Release the catalogue."""
        self.catalogue.close()

    def __enter__(self) -> "PageIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        """Live pages (deleted ones excluded)."""
        return self.catalogue.counts().pages

    def counts(self) -> Counts:
        """Rows, live and deleted pages and sources."""
        return self.catalogue.counts()

    # ---------------------------------------------------------------- writing
    def has_source(self, digest: str) -> bool:
        """True if a live source with these bytes is indexed."""
        return self.catalogue.has_digest(digest)

    def source_digest(self, path: str) -> str | None:
        """Digest of the live source indexed from `path`, or None."""
        return self.catalogue.source_digest(path)

    def add_source(self, path: str, digest: str, kind: str, pages: Sequence[NewPage], vectors: Any) -> list[int]:
        """Commit one source: its pages and their vectors, all or nothing.

        A live source already indexed from `path` (an older version) is replaced: its pages are
        tombstoned in the transaction that commits the new ones, and their images removed after.

        Args:
            path: Source path as given.
            digest: SHA-256 of the source bytes.
            kind: Source kind ("pdf", "image", ...).
            pages: The source's pages, in order (images already stored with `store_image`).
            vectors: One vector entry per page, in the engine's input format.

        Returns:
            The rows given to the pages.
        """
        if len(pages) != len(vectors):
            raise ValueError(f"{path}: {len(pages)} pages but {len(vectors)} vectors")
        with self._write_lock():
            self.refresh()  # another writer may have committed since we opened
            replaced = self.catalogue.images_of(path)
            try:
                self.engine.add(vectors)
                self.engine.save(self.directory / VECTORS_DIR)
                if self.text_engine is not self.engine:
                    self.text_engine.add(self.tokenize([p.text for p in pages]))
                    self.text_engine.save(self.directory / TEXT_DIR)
                rows = self.catalogue.commit_source(path, digest, kind, pages)
            except BaseException:
                self._reload_engine()  # drop the uncommitted rows from memory
                raise
            self._masks.invalidate()
            self._write_counts()
        new_ids = {p.page_id for p in pages}
        self._remove_images([image for page_id, image in replaced if page_id not in new_ids])
        return rows

    def delete(self, page_ids: Sequence[str] = (), sources: Sequence[str] = ()) -> DeleteReport:
        """Delete pages by id and sources (all their pages) by path, in one transaction.

        The pages' rows are tombstoned (never returned by a search again); their vectors stay
        in the shards, their stored images are removed.
        """
        with self._write_lock():
            before = self.catalogue.counts()
            records, missing = self.catalogue.delete(list(page_ids), list(sources))
            self._masks.invalidate()
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

    def refresh(self) -> int:
        """Load the rows other processes committed since this index was opened; returns how many."""
        rows, before = len(self.catalogue), len(self.engine)
        if rows != before:
            engines = [self.engine] + ([self.text_engine] if self.text_engine is not self.engine else [])
            try:
                if rows < before or not all(hasattr(e, "extend") for e in engines):
                    raise ValueError("reload")
                for engine in engines:
                    engine.extend(rows)
            except ValueError:
                self._reload_engine()
        self._masks.invalidate()
        return rows - before

    def _reload_engine(self) -> None:
        from dse.indexes.engines import engine_for

        rows = len(self.catalogue)
        self.engine = engine_for(self.manifest.kind, self.manifest.engine).load(
            self.directory / VECTORS_DIR, rows=rows, **dict(self.manifest.engine)
        )
        if self.manifest.kind == "text":
            self.text_engine = self.engine
        else:
            self.text_engine = engine_for("text").load(
                self.directory / TEXT_DIR, rows=rows, **self.manifest.store["text"]["engine"]
            )

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        """BM25 tokens of texts (queries or pages) for the text side, as it was built."""
        if self._tokenizer is None:
            from dse.encoders.bm25 import BM25Encoder

            if self.manifest.kind == "text":
                options = dict(self.manifest.encoder.get("options") or {})
            else:
                options = dict(self.manifest.store["text"]["tokenizer"])
            self._tokenizer = BM25Encoder(**options)
        return self._tokenizer.encode_pages(list(texts))

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

    def _write_counts(self) -> None:
        counts = self.catalogue.counts()
        self.manifest = self.manifest.with_counts(counts.pages, counts.sources)
        write_manifest(self.directory, self.manifest)

    def _write_lock(self, timeout: float = 60.0) -> WriteLock:
        return WriteLock(self.directory / LOCK_NAME, timeout=timeout)

    # ---------------------------------------------------------------- reading
    def search(self, queries: Any, k: int, where: Mapping[str, Any] | None = None) -> list[list[ScoredPage]]:
        """Top-k live pages for each query (engine input format: vectors or token lists).

        Args:
            queries: Encoded queries.
            k: Depth; k pages come back when k pages match.
            where: Optional metadata filter (see `dse.indexes.filters`), applied before scoring.
        """
        return self._scored(self.engine, queries, k, where)

    def allowed(self, where: Mapping[str, Any] | None = None) -> np.ndarray | None:
        """Bool (n_rows,) mask of the engine rows a search may return (None: all of them)."""
        return self._masks.allowed(len(self.engine), where)

    def _scored(
        self, engine: Any, queries: Any, k: int, where: Mapping[str, Any] | None = None
    ) -> list[list[ScoredPage]]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        mask = self._masks.allowed(len(engine), where)  # (n_rows,) or None
        if len(engine) == 0 or (mask is not None and not mask.any()):
            return [[] for _ in range(len(queries))]
        options = {} if mask is None else {"allowed": mask}
        scores, rows = engine.search(queries, k, **options)  # (nq, k'), (nq, k')
        out = []
        for q_scores, q_rows in zip(scores, rows):
            records = self.catalogue.pages(int(r) for r in q_rows)
            out.append([ScoredPage(rec, float(s)) for rec, s in zip(records, np.asarray(q_scores))])
        return out

    def search_text(
        self, queries: Sequence[str], k: int, where: Mapping[str, Any] | None = None
    ) -> list[list[ScoredPage]]:
        """Top-k live pages by BM25 over the text layers, for each text query (score 0: no match)."""
        return self._scored(self.text_engine, self.tokenize(queries), k, where)

    def page(self, page_id: str) -> PageRecord:
        """The catalogued page with this id."""
        return self.catalogue.page(page_id)

    def page_image(self, page_id: str) -> Image.Image:
        """The stored image of a page (FileNotFoundError if images were not stored)."""
        rec = self.catalogue.page(page_id)
        if rec.image is None:
            raise FileNotFoundError(f"{self.directory}: no stored image for page {page_id!r} (image_size=0)")
        with Image.open(self.directory / rec.image) as img:
            return img.convert("RGB")
