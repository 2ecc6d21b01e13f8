"""The interface of an index backend: what the Retriever, the server and the CLI need from an index.

The embedded backend is the index directory (`dse.storage.page_index.PageIndex`: manifest,
SQLite catalogue, page images and the engines' shard files). Another backend (e.g. vectors and
payloads in a vector database, the directory keeping the manifest and the page images)
implements the same methods, so `dse.retrieve` composes an encoder with either.

Rows, shards and engines are the backend's own business: callers see pages (`PageRecord`),
sources (by path and digest), scored pages (`ScoredPage`) and one opaque committed state
(`view`) that both sides of a hybrid search rank.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Mapping, Sequence

from PIL import Image

from dse.backends.records import CompactReport, Counts, DeleteReport, NewSource, PageRecord, Reclaimable, ScoredPage

if TYPE_CHECKING:
    from dse.storage.manifest import Manifest

DEFAULT_IMAGE_SIZE = 768  # long side, in pixels, of the stored page images
SELF_RECLAIMING = ("this backend keeps the vectors in its own store, which reclaims the space of deleted pages "
                   "itself (Qdrant: deleted points are vacuumed by its optimizer); there is nothing for dse to compact")


def check_vector_kind(kind: str, directory: Path) -> str:
    """`kind` if the index stores page vectors ("multi" or "single"); ValueError naming the index if not."""
    if kind not in ("multi", "single"):
        raise ValueError(f"{directory} is a text (bm25) index: it stores no page vectors")
    return kind


class IndexBackend(ABC):
    """An index opened for searching and adding pages.

    Attributes:
        directory: The index directory (it holds at least the manifest and the page images).
        manifest: What built the index (encoder, engine options, counts).
        read_only: Writes raise `dse.storage.layout.ReadOnlyIndexError`.
    """

    directory: Path
    manifest: Manifest
    read_only: bool

    # ---------------------------------------------------------------- lifecycle
    @classmethod
    @abstractmethod
    def create(
        cls, directory: str | Path, encoder: Mapping[str, Any], engine_options: Mapping[str, Any] | None = None,
        image_size: int = DEFAULT_IMAGE_SIZE,
    ) -> IndexBackend:
        """Make a new, empty index for the encoder described by `encoder` (`Encoder.describe()`).

        Args:
            directory: Where the index goes (it keeps at least the manifest and the page images).
            encoder: `Encoder.describe()` of the encoder that will fill it.
            engine_options: Options of the search engine, recorded in the manifest.
            image_size: Long side, in pixels, of the stored page images (0: store none).

        Raises:
            FileExistsError: an index is already there.
        """

    @classmethod
    @abstractmethod
    def open(cls, directory: str | Path, read_only: bool | None = None) -> IndexBackend:
        """Open an existing index (`IndexFormatError` if it is not one; None: read-only when it cannot be written)."""

    @staticmethod
    @abstractmethod
    def exists(directory: str | Path) -> bool:
        """True if `directory` holds an index of this backend."""

    @abstractmethod
    def close(self) -> None:
        """Release what the index holds open (it cannot be used after)."""

    def __enter__(self) -> IndexBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def refresh(self) -> int:
        """Load what other writers committed since the current view; returns how many rows were added."""

    # ---------------------------------------------------------------- counts and lookups
    @abstractmethod
    def __len__(self) -> int:
        """Live pages committed."""

    @abstractmethod
    def counts(self) -> Counts:
        """Rows, live and deleted pages and sources."""

    @abstractmethod
    def page(self, page_id: str) -> PageRecord:
        """The live page with this id (KeyError naming it if absent)."""

    def page_texts(self, page_ids: Sequence[str]) -> dict[str, str]:
        """The text layers of the live pages among `page_ids` (a page that is not live is left out).

        A backend that can read them in one request overrides this loop over `page`.
        """
        out = {}
        for page_id in page_ids:
            try:
                out[page_id] = self.page(page_id).text
            except KeyError:
                pass
        return out

    @abstractmethod
    def live_pages(self) -> list[PageRecord]:
        """Every live page, in commit order (sources as added, pages in order)."""

    @abstractmethod
    def page_vectors(self, page_ids: Sequence[str]) -> list[Any]:
        """The stored vectors of live pages, in the encoder's page output format.

        Multi-vector: float32 (tokens, dim) per page; single-vector: float32 (dim,) per page.

        Raises:
            KeyError: a page is not live.
            ValueError: the index is a text (bm25) index, which stores no vectors.
        """

    @abstractmethod
    def page_image(self, page_id: str) -> Image.Image:
        """The stored image of a page, RGB (errors: `open_page_image`)."""

    @abstractmethod
    def open_page_image(self, page_id: str) -> BinaryIO:
        """The stored JPEG of a page, opened for reading in binary (the caller closes it).

        Raises:
            KeyError: no live page has this id.
            FileNotFoundError: images were not stored (image_size=0), or the file is missing.
        """

    @abstractmethod
    def sources(self) -> list[dict[str, Any]]:
        """Every live source: path, digest, kind, pages, added."""

    @abstractmethod
    def metadata_keys(self) -> list[str]:
        """Top-level metadata keys recorded on live pages, sorted (for `where` error messages)."""

    @abstractmethod
    def metadata_count(self, key: str, value: Any) -> int:
        """Live pages whose metadata `key` equals `value`, counted by the store in one query (OCR pages:
        `metadata_count("text_source", "ocr")`)."""

    def ocr_summary(self) -> dict[str, Any]:
        """How the index's text was made by OCR, for `dse info` and `GET /v1/index`.

        Returns:
            `setting`: the OCR setting of the latest add (`ingest.OcrOptions.record`; None: not
            recorded, an index older than the record or filled without OCR), `mixed`: adds used
            other settings too (`earlier`: those), `unrecorded`: pages were added before the
            setting was recorded, `pages`: live pages whose text OCR read (one count by the store).
        """
        ingest = dict(self.manifest.store.get("ingest") or {})
        return {"setting": ingest.get("ocr"), "mixed": bool(ingest.get("ocr_mixed")),
                "earlier": list(ingest.get("ocr_earlier") or []), "unrecorded": bool(ingest.get("ocr_unrecorded")),
                "pages": self.metadata_count("text_source", "ocr")}

    @abstractmethod
    def has_source(self, digest: str) -> bool:
        """True if a live source with these bytes is indexed."""

    @abstractmethod
    def source_digest(self, path: str) -> str | None:
        """Digest of the live source recorded at exactly `path`, or None."""

    @abstractmethod
    def source_of_digest(self, digest: str) -> str | None:
        """Path of the live source holding these bytes, or None."""

    @abstractmethod
    def find_source(self, source: str | os.PathLike[str]) -> str | None:
        """The path a live source given by any spelling (`dse.storage.layout.source_spellings`) is recorded under."""

    @abstractmethod
    def missing_sources(self, folders: Sequence[str | Path]) -> list[str]:
        """Live sources under `folders` whose file no longer exists, as recorded (for `delete(as_indexed=True)`)."""

    # ---------------------------------------------------------------- searching
    @abstractmethod
    def view(self) -> Any:
        """The committed state searches use now (pass it to `search` / `search_text` to pin one state)."""

    def unchanged(self, view: Any) -> bool:
        """True if searches on `view` saw one committed state (a backend whose views pin it: always).

        A backend without snapshots (Qdrant) returns False when a write landed since `view` was
        taken, and the caller re-runs the searches that must agree (a hybrid search's two sides).
        """
        return True

    @abstractmethod
    def search(
        self, queries: Any, k: int, where: Mapping[str, Any] | None = None, view: Any = None
    ) -> list[list[ScoredPage]]:
        """Top-k live pages for each encoded query (vectors or token lists), best first.

        Args:
            queries: The encoder's query output.
            k: Depth (>= 1); k pages come back when k pages match.
            where: Metadata filter (`dse.storage.filters`), applied before scoring.
            view: The committed state to search (None: the current one).
        """

    @abstractmethod
    def search_text(
        self, queries: Sequence[str], k: int, where: Mapping[str, Any] | None = None, view: Any = None
    ) -> list[list[ScoredPage]]:
        """Top-k live pages by BM25 over the pages' text, for each text query (score 0: no match)."""

    @abstractmethod
    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        """BM25 tokens of texts (queries or pages), as the index's text side was built."""

    @property
    @abstractmethod
    def source_name_weight(self) -> int:
        """How many times a page's source name is added to its BM25 text (`dse.text.fields`)."""

    @property
    def text_fields(self) -> Mapping[str, Any]:
        """The index's text-field record (`dse.text.fields`); by default version 1 with `source_name_weight`."""
        return {"source_name": self.source_name_weight}

    # ---------------------------------------------------------------- writing
    @abstractmethod
    def store_image(self, page_id: str, image: Image.Image) -> str | None:
        """Store a page's image before the commit that names it; returns its name in the index (None: not stored)."""

    @abstractmethod
    def writing_run(self) -> AbstractContextManager[None]:
        """Held for the length of an indexing run (cleans up what an interrupted run left)."""

    @abstractmethod
    def discard_images(self, page_ids: Sequence[str]) -> None:
        """Remove the stored images of pages no committed page names (a failed or interrupted source's)."""

    @abstractmethod
    def record_ingest(self, settings: Mapping[str, Any]) -> None:
        """Record in the manifest the ingest settings (OCR) an add uses, before its first commit, under the lock.

        Kept under `store["ingest"]`; another setting than the one recorded marks it mixed, never
        overwrites it silently (`dse.storage.manifest.with_ingest`).
        """

    @abstractmethod
    def add_sources(self, sources: Sequence[NewSource], vectors: Sequence[Any]) -> list[list[int]]:
        """Commit sources with their pages and vectors, all or nothing; returns the rows of each source's pages.

        A live source at a source's path (or at one of its `replaces` paths) is replaced in the
        same commit.

        Args:
            sources: The sources, in order (page images already stored with `store_image`).
            vectors: For each source, one vector entry per page, in the encoder's output format.
        """

    def add_source(self, path: str, digest: str, kind: str, pages: Sequence[Any], vectors: Any) -> list[int]:
        """Commit one source: its `NewPage`s and their vectors, all or nothing; returns the pages' rows."""
        return self.add_sources([NewSource(path, digest, kind, tuple(pages))], [vectors])[0]

    @abstractmethod
    def move_source(self, old: str, new: str, replaces: Sequence[str] = ()) -> bool:
        """Record the live source at `old` under `new` (a moved file), replacing those at `new` and `replaces`.

        Returns False if no live source is at `old`.
        """

    @abstractmethod
    def delete(
        self, page_ids: Sequence[str] = (), sources: Sequence[str] = (), *, as_indexed: bool = False
    ) -> DeleteReport:
        """Delete pages by id and sources (all their pages) by path, in one commit.

        Args:
            page_ids: Page ids.
            sources: Source paths, matched like `find_source`.
            as_indexed: Match `sources` exactly as recorded (as `missing_sources` returns them).
        """

    # ---------------------------------------------------------------- space
    def compact(self, on_stage: Any = None) -> CompactReport:
        """Reclaim the space of deleted pages (`dse compact`); by default a no-op saying the store does it.

        The index directory rewrites its engines (`dse.storage.compaction`); a backend whose
        store vacuums deleted vectors itself (Qdrant) keeps this default.
        """
        n = self.counts().pages
        return CompactReport(False, n, 0, 0, 0, 0, 0.0, 0, f"{self.directory}: {SELF_RECLAIMING}")

    def reclaimable(self) -> Reclaimable:
        """What `compact` would reclaim now (by default nothing: the store reclaims space itself)."""
        return Reclaimable(0, 0, SELF_RECLAIMING)
