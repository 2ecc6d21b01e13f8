"""The index directory: manifest + page catalogue + stored page images + the search engine.

Layout (relative paths only, so the directory can be moved; names in `dse.storage.layout`)::

    INDEX/
      manifest.json        what built it (encoder, prompt version, dims, counts)
      catalogue.sqlite     rows -> pages -> sources
      images/<page_id>.jpg a stored copy of each page, long side <= image_size
      vectors/             the engine's files (`vectors.N/` after the N-th `dse compact`)
      text/                BM25 over the pages' text layers, beside the visual vectors (for
                           text and hybrid search; a `bm25` index uses vectors/); `text.N/`

This module holds `PageIndex` and its read path (open, search; lookups of pages by id are
`dse.storage.page_reads.PageReads`, a mixin of it); the write path
(commits, deletes, sync, counts) is `dse.storage.writer.IndexWriter`, a mixin of it. Readers in
other processes keep searching the rows they loaded (`refresh` picks up newer commits); one
writer at a time holds the directory's lock.

An index may come from elsewhere: a stored image is read only as `images/<page id>.jpg` inside
the index, never through a symbolic link (`layout.image_file`). On read-only media (or with
`open(read_only=True)`) the index opens for searching and writes nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dse.backends.base import DEFAULT_IMAGE_SIZE, IndexBackend
from dse.backends.records import Counts, ScoredPage
from dse.storage.catalogue import Catalogue
from dse.storage.compaction.generations import consistent, load_current
from dse.storage.layout import IMAGES_DIR, TEXT_DIR, VECTORS_DIR, media_read_only
from dse.storage.manifest import Manifest, format_for, read_manifest, write_manifest
from dse.storage.page_reads import PageReads
from dse.storage.views import IndexView, prepare
from dse.storage.visible import RowMasks
from dse.storage.writer import IndexWriter
from dse.text.fields import DOCUMENT_WEIGHT, new_fields_record, source_name_weight

__all__ = ["IndexView", "PageIndex"]


def _dse_version() -> str:
    from dse import __version__

    return __version__


class PageIndex(IndexWriter, PageReads, IndexBackend):
    """An index directory opened for searching and adding pages.

    Use `PageIndex.create` for a new directory and `PageIndex.open` for an existing one. The
    writing methods (`store_image`, `add_source`, `delete`, `missing_sources`, ...) come from
    `IndexWriter`.
    """

    def __init__(
        self, directory: Path, manifest: Manifest, catalogue: Catalogue, engine: Any, text_engine: Any = None,
        state: tuple[int, int, list[int]] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.manifest = manifest
        self.catalogue = catalogue
        self.read_only = catalogue.read_only  # writes raise ReadOnlyIndexError
        self._tokenizer: Any = None
        self._masks = RowMasks(catalogue)
        self._refresh_lock = threading.RLock()  # refreshes and this process's writes, one at a time
        self._view = self._view_of(engine, engine if manifest.kind == "text" else text_engine, state)

    # ---------------------------------------------------------------- committed state
    @property
    def engine(self) -> Any:
        """The engine of the current view (read-only use: writes go through `add_sources`)."""
        return self._view.engine

    @property
    def text_engine(self) -> Any:
        """The BM25 text side of the current view."""
        return self._view.text_engine

    def view(self) -> IndexView:
        """The committed state searches use now (pass it to `search`/`search_text` to pin one state)."""
        return self._view

    def _view_of(self, engine: Any, text_engine: Any, state: tuple[int, int, list[int]] | None = None) -> IndexView:
        """A view of engines loaded at the catalogue state `state` (generation, rows, tombstones; None: now).

        Raises:
            RuntimeError: the engines hold another number of rows than the state (a bug: every
                caller loads them at the state's rows, or holds the writer lock).
        """
        generation, rows, deleted = self.catalogue.state() if state is None else state
        if len(engine) != rows or (text_engine is not None and len(text_engine) != rows):
            raise RuntimeError(f"{self.directory}: the engines hold {len(engine)} rows, the catalogue state {rows}")
        return IndexView(engine, text_engine, rows, np.asarray(deleted, dtype=np.int64), generation)

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
        from dse.engines.registry import engine_for

        directory = Path(directory).expanduser()
        if (directory / "manifest.json").exists():
            raise FileExistsError(f"{directory}: an index already exists here; open it instead")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / IMAGES_DIR).mkdir(exist_ok=True)
        (directory / VECTORS_DIR).mkdir(exist_ok=True)
        options = dict(engine_options or {})
        if encoder["kind"] in ("single", "multi"):
            options.setdefault("dim", encoder["dim"])  # fixes the width before the first add
        if encoder["kind"] == "text":
            options.setdefault("documents", DOCUMENT_WEIGHT)  # document, then page (dse.engines.bm25.documents)
        engine = engine_for(encoder["kind"], options)(**options)
        store: dict[str, Any] = {"image_size": int(image_size), "text_fields": new_fields_record()}
        text_engine = None
        if encoder["kind"] != "text":
            from dse.text.tokenizer import Tokenizer

            (directory / TEXT_DIR).mkdir(exist_ok=True)
            text_engine = engine_for("text")(documents=DOCUMENT_WEIGHT)
            store["text"] = {"tokenizer": Tokenizer().options(), "engine": text_engine.options()}
        manifest = Manifest(encoder=dict(encoder), engine=engine.options(), store=store, dse_version=_dse_version())
        write_manifest(directory, manifest)
        engine.save(directory / VECTORS_DIR)  # no rows yet: binds the engines to their directories,
        if text_engine is not None:  # as loading does, so copies of them append to the same shards
            text_engine.save(directory / TEXT_DIR)
        return cls(directory, manifest, Catalogue(directory), engine, text_engine)

    @classmethod
    def open(cls, directory: str | Path, read_only: bool | None = None) -> PageIndex:
        """Open an existing index directory (IndexFormatError if it is not one).

        Args:
            directory: The index.
            read_only: Open for searching only: no file of the index is written (SQLite `mode=ro`,
                which may create the catalogue's `-shm`, or `immutable=1` on read-only media);
                adds and deletes raise ReadOnlyIndexError. None: read-only when the directory
                cannot be written (read-only mount, or no write permission).
        """
        directory = Path(directory).expanduser()
        manifest = read_manifest(directory)
        if read_only is None:
            read_only = media_read_only(directory)
        catalogue = Catalogue(directory, read_only=read_only)
        (engine, text_engine), state = load_current(directory, manifest, catalogue)  # one committed state
        index = cls(directory, manifest, catalogue, engine, text_engine, state)
        counts = catalogue.counts()  # stale counts, or the format of a compaction killed before its switch:
        if (manifest.pages, manifest.sources, manifest.format_version) != (counts.pages, counts.sources, format_for(state[0])):
            index._repair_counts()
        return index

    @staticmethod
    def exists(directory: str | Path) -> bool:
        """True if `directory` holds an index."""
        return (Path(directory).expanduser() / "manifest.json").is_file()

    def close(self) -> None:
        """Release the catalogue."""
        self.catalogue.close()

    def __len__(self) -> int:
        """Live pages committed (deleted ones excluded), from the catalogue."""
        return self.catalogue.counts().pages

    def counts(self) -> Counts:
        """Rows, live and deleted pages and sources."""
        return self.catalogue.counts()

    def refresh(self) -> int:
        """Load what other processes committed since the current view; returns how many rows were added.

        Thread-safe, and searches never wait for it: the new rows are read into copies of the
        engines (sharing every row already loaded), which are prepared for searching and then
        published as the next view. Deletions committed elsewhere become visible here too.
        """
        with self._refresh_lock:
            old = self._view
            if self.catalogue.state_key() == (old.generation, old.rows, len(old.deleted)):
                return 0
            # committed rows never change within a generation: load exactly these (a compaction: all anew)
            (engine, text_engine), state = load_current(self.directory, self.manifest, self.catalogue, old)
            self._view = self._view_of(engine, text_engine, state)
            return self._view.rows - old.rows if state[0] == old.generation else 0

    def _reload_engine(self) -> None:
        """Reload the engines from disk at the catalogue's row count (drops uncommitted rows)."""
        with self._refresh_lock:
            (engine, text_engine), state = load_current(self.directory, self.manifest, self.catalogue)
            self._view = self._view_of(engine, text_engine, state)

    def _publish(self, engine: Any, text_engine: Any) -> None:
        """Make engines that hold every committed row the current view (under the refresh lock)."""
        for e in {id(engine): engine, id(text_engine): text_engine}.values():
            if e is not None:
                prepare(e)
        self._view = self._view_of(engine, text_engine)

    @property
    def source_name_weight(self) -> int:
        """How many times a page's source name is added to its BM25 text (`dse.text.fields`)."""
        return source_name_weight(self.manifest.store)

    @property
    def text_fields(self) -> Mapping[str, Any]:
        """The manifest's text-field record (`dse.text.fields`)."""
        return dict(self.manifest.store.get("text_fields") or {})

    def tokenize(self, texts: Sequence[str], queries: bool = False) -> list[list[str]]:
        """BM25 tokens of texts for the text side, as it was built (`queries`: with its glossary's expansions)."""
        if self._tokenizer is None:
            from dse.text.tokenizer import Tokenizer

            text = self.manifest.kind == "text"
            options = self.manifest.encoder.get("options") if text else self.manifest.store["text"]["tokenizer"]
            self._tokenizer = Tokenizer(**dict(options or {}))
        return self._tokenizer.tokenize_all(list(texts), "queries" if queries else "pages", queries=queries)

    # ---------------------------------------------------------------- reading
    def search(
        self, queries: Any, k: int, where: Mapping[str, Any] | None = None, view: IndexView | None = None
    ) -> list[list[ScoredPage]]:
        """Top-k live pages for each query (engine input format: vectors or token lists).

        Args:
            queries: Encoded queries.
            k: Depth; k pages come back when k pages match.
            where: Optional metadata filter (see `dse.storage.filters`), applied before scoring.
            view: The committed state to search (None: the current one).
        """
        return self._scored(view or self._view, False, queries, k, where)

    def allowed(self, where: Mapping[str, Any] | None = None, view: IndexView | None = None) -> np.ndarray | None:
        """Bool (n_rows,) mask of the engine rows a search may return (None: all of them)."""
        view = view or self._view
        return self._masks.allowed(view.rows, view.deleted, where, view.generation)

    def unchanged(self, view: Any) -> bool:
        """True unless the index was compacted since `view` (a search on it then ran on the compacted state)."""
        return view is None or view.generation == self._view.generation

    def _scored(
        self, view: IndexView, text: bool, queries: Any, k: int, where: Mapping[str, Any] | None = None
    ) -> list[list[ScoredPage]]:
        """A view's top-k, its rows resolved in a catalogue of its generation: a view outdated by a
        compaction is refreshed and the search run on the compacted state (never old rows, new pages)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")

        def scored(view: IndexView) -> list[list[ScoredPage]]:
            engine = view.text_engine if text else view.engine
            mask = self._masks.allowed(view.rows, view.deleted, where, view.generation)  # (n_rows,) or None
            if len(engine) == 0 or (mask is not None and not mask.any()):
                return [[] for _ in range(len(queries))]
            scores, rows = engine.search(queries, k, **({} if mask is None else {"allowed": mask}))  # (nq, k')
            out = []
            for q_scores, q_rows in zip(scores, rows):
                records = self.catalogue.pages((int(r) for r in q_rows), generation=view.generation)
                view.remember_texts(records)
                out.append([ScoredPage(rec, float(s)) for rec, s in zip(records, np.asarray(q_scores))])
            return out

        return consistent(self, scored, view)

    def search_text(
        self, queries: Sequence[str], k: int, where: Mapping[str, Any] | None = None, view: IndexView | None = None
    ) -> list[list[ScoredPage]]:
        """Top-k live pages by BM25 over the text layers, for each text query (score 0: no match)."""
        return self._scored(view or self._view, True, self.tokenize(queries, queries=True), k, where)
