"""The index directory: manifest + page catalogue + stored page images + the search engine.

Layout (relative paths only, so the directory can be moved; names in `dse.indexes.layout`)::

    INDEX/
      manifest.json        what built it (encoder, prompt version, dims, counts)
      catalogue.sqlite     rows -> pages -> sources
      images/<page_id>.jpg a stored copy of each page, long side <= image_size
      vectors/             the engine's files
      text/                BM25 over the pages' text layers, beside the visual vectors (for
                           text and hybrid search; an index built with `bm25` uses vectors/)

This module holds `PageIndex` and its read path (open, search, lookups); the write path
(commits, deletes, sync, counts) is `dse.indexes.writer.IndexWriter`, a mixin of it. Readers in
other processes keep searching the rows they loaded (`refresh` picks up newer commits); one
writer at a time holds the directory's lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dse.indexes.catalogue import Catalogue, Counts, PageRecord
from dse.indexes.layout import (
    DEFAULT_IMAGE_SIZE,
    IMAGES_DIR,
    LOCK_NAME,
    TEXT_DIR,
    VECTORS_DIR,
    load_engines,
)
from dse.indexes.lock import IndexLockedError
from dse.indexes.manifest import Manifest, read_manifest, write_manifest
from dse.indexes.visible import RowMasks
from dse.indexes.writer import DeleteReport, IndexWriter

# Importers use these names from here (the layout, lock and writer modules are where they live).
__all__ = [
    "DEFAULT_IMAGE_SIZE", "IMAGES_DIR", "LOCK_NAME", "TEXT_DIR", "VECTORS_DIR",
    "DeleteReport", "IndexLockedError", "PageIndex", "ScoredPage",
]


@dataclass(frozen=True)
class ScoredPage:
    """A catalogued page with its score for one query."""

    record: PageRecord
    score: float


def _dse_version() -> str:
    from dse import __version__

    return __version__


class PageIndex(IndexWriter):
    """An index directory opened for searching and adding pages.

    Use `PageIndex.create` for a new directory and `PageIndex.open` for an existing one. The
    writing methods (`store_image`, `add_source`, `delete`, `missing_sources`, ...) come from
    `IndexWriter`.
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
    ) -> PageIndex:
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
    def open(cls, directory: str | Path) -> PageIndex:
        """Open an existing index directory (IndexFormatError if it is not one)."""
        directory = Path(directory)
        manifest = read_manifest(directory)
        catalogue = Catalogue(directory)
        engine, text_engine = load_engines(directory, manifest, len(catalogue))
        index = cls(directory, manifest, catalogue, engine, text_engine)
        counts = catalogue.counts()
        if manifest.pages != counts.pages or manifest.sources != counts.sources:
            index._repair_counts()
        return index

    @staticmethod
    def exists(directory: str | Path) -> bool:
        """True if `directory` holds an index."""
        return (Path(directory) / "manifest.json").is_file()

    def close(self) -> None:
        """Release the catalogue."""
        self.catalogue.close()

    def __enter__(self) -> PageIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        """Live pages (deleted ones excluded)."""
        return self.catalogue.counts().pages

    def counts(self) -> Counts:
        """Rows, live and deleted pages and sources."""
        return self.catalogue.counts()

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
        """Reload the engines from disk at the catalogue's row count (drops uncommitted rows)."""
        self.engine, self.text_engine = load_engines(self.directory, self.manifest, len(self.catalogue))

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
