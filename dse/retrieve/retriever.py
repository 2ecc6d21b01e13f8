"""The retriever: an encoder and an index backend (`dse.backends.IndexBackend`), composed."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from PIL import Image

from dse.backends import (
    DEFAULT_BACKEND, DEFAULT_IMAGE_SIZE, CompactReport, DeleteReport, IndexBackend, backend_class, open_backend,
)
from dse.encoders.base import Encoder
from dse.encoders.queries import check_image_queries
from dse.retrieve.encoder_check import check_encoder
from dse.retrieve.first_stage import as_hits, check_query_modes, first_stage, search_mode
from dse.retrieve.hybrid import RRF_K, check_fusion
from dse.retrieve.lazy_encoder import EncoderLoader, encoder_from_manifest
from dse.retrieve.rerank import Candidate, Reranker, check_rerank
from dse.retrieve.rerank import rerank as rerank_hits
from dse.retrieve.results import AddReport, Hit, IndexProgress
from dse.storage.filters import compile_where

if TYPE_CHECKING:
    from ingest.limits import Limits
    from ingest.ocr import OcrOptions
    from ingest.web.pages import WebOptions

__all__ = ["Retriever", "encoder_from_manifest"]


class Retriever:
    """Search pages by text query: encodes with `encoder`, looks up in `index`.

    Example:
        >>> r = Retriever.create("idx", load_encoder("bm25"))
        >>> r.add(["docs/"])
        >>> r.search("revenue by segment", k=3)
    """

    def __init__(self, encoder: Encoder | None, index: IndexBackend, **encoder_options: Any) -> None:
        """Compose an encoder and an open index directory.

        Args:
            encoder: The encoder; it must match the one the index was built with
                (EncoderMismatchError otherwise; `Encoder.for_index` first lets a BM25 encoder's
                unset settings follow the index's, so an index built with older defaults opens). None: that one, loaded from the manifest the
                first time queries or pages are embedded (text search, info, delete and sync
                never load it).
            index: The open index.
            **encoder_options: With `encoder=None`: options such as `device` or `batch_size`
                that do not change the vectors (checked now, against the manifest).
        """
        if encoder is not None and encoder_options:
            raise TypeError(f"encoder options ({', '.join(sorted(encoder_options))}) apply only with encoder=None")
        self._loader: EncoderLoader | None = None
        if encoder is None:
            self._loader = EncoderLoader(index.manifest, **encoder_options)
        else:
            encoder = encoder.for_index(index.manifest.encoder)  # BM25: unset settings follow the index
            check_encoder(index.manifest, encoder.describe())
        self._encoder = encoder
        self.index = index
        # Optional replacement of `encoder.encode_queries` (same input and output), e.g. the
        # server's micro-batching, caching `dse.serve.batching.QueryBatcher`.
        self.query_encoder: Callable[[list[str]], Any] | None = None

    @property
    def encoder(self) -> Encoder:
        """The encoder; when the index was opened without one, loaded from its manifest on first use."""
        if self._encoder is None:
            assert self._loader is not None  # set by __init__ whenever no encoder was given
            self._encoder = self._loader.get()
        return self._encoder

    # ---------------------------------------------------------------- construction
    @classmethod
    def create(
        cls, directory: str | Path, encoder: Encoder, *,
        hnsw: bool = False,
        image_size: int = DEFAULT_IMAGE_SIZE,
        engine: Mapping[str, Any] | None = None,
        backend: str = DEFAULT_BACKEND,
    ) -> "Retriever":
        """Make a new index directory for `encoder`.

        Args:
            directory: Where the index goes (FileExistsError if an index is there).
            encoder: The encoder that fills and searches it.
            hnsw: Single-vector indexes only: approximate HNSW search instead of exact.
            image_size: Long side of the stored page images (0: store none).
            engine: Further engine options, e.g. {"mode": "cascade", "pool_factor": 2} (multi) or
                {"mode": "binary"} (single); see `dse.engines.registry.engine_for`. With
                backend="qdrant": {"qdrant": URL or path, "collection": ..., cluster settings}
                (`dse.backends.qdrant.backend.QdrantIndex.create`).
            backend: The index backend (`dse.backends.backend_class`): "directory" or "qdrant".
        """
        engine_options: dict[str, Any] = dict(engine or {})
        if hnsw:
            if encoder.kind != "single":
                raise ValueError(f"hnsw applies to single-vector encoders; {encoder.name!r} is {encoder.kind}")
            engine_options["hnsw"] = True
        index = backend_class(backend).create(directory, encoder.describe(), engine_options, image_size=image_size)
        return cls(encoder, index)

    @classmethod
    def open(cls, directory: str | Path, encoder: Encoder | None = None, **encoder_options: Any) -> "Retriever":
        """Open an index directory.

        Args:
            directory: The index.
            encoder: The encoder to use; it must match the one the index was built with
                (EncoderMismatchError otherwise). None: that one, loaded from the manifest on
                first use (a text search never loads it).
            **encoder_options: With `encoder=None`: options such as `device` or `batch_size`
                that do not change the vectors.
        """
        index = open_backend(directory)  # the backend its manifest names
        try:
            return cls(encoder, index, **(encoder_options if encoder is None else {}))
        except BaseException:
            index.close()
            raise

    def close(self) -> None:
        """Release the index."""
        self.index.close()

    def __enter__(self) -> "Retriever":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.index)

    # ---------------------------------------------------------------- use
    def add(
        self,
        sources: Iterable[str | Path] | str | Path,
        *,
        dpi: int | None = None,
        password: str | None = None,
        progress: bool = False,
        metadata: Mapping[str, Any] | None = None,
        allow_private: bool = False,
        workers: int | None = None,
        limits: Limits | None = None,
        commit_pages: int | None = None,
        on_progress: Callable[[IndexProgress], None] | None = None,
        web: WebOptions | None = None,
        ocr: OcrOptions | str | None = None,
    ) -> AddReport:
        """Index files, folders and web pages (http(s) URLs); already indexed sources are skipped.

        A file is recorded under its resolved absolute path (`~` expanded; URLs as given), so
        any spelling of it is the same source. A file indexed before whose bytes changed is
        updated: its new pages replace the old ones in one commit (`AddReport.updated`); a
        moved file whose bytes are indexed is re-recorded at its new path.

        Args:
            sources: A path or paths of PDFs, images and folders (`~` expanded).
            dpi: Rendering resolution for PDFs (None: ingest's default).
            password: Password for encrypted PDFs.
            progress: Show a progress bar on stderr.
            metadata: Recorded on every page of these sources, for `where` filters, e.g.
                {"collection": "legal"} (keys: plain names; values: str, number or bool).
            allow_private: Web pages may reach loopback, private and link-local addresses.
            workers: Processes rendering PDF pages beside the encoder (None: one per CPU;
                0: render in this process).
            limits: `ingest.Limits` on each source (pages, file size, image pixels, office
                conversion time); None: its defaults. A source over a limit fails, named.
            commit_pages: Encoded sources are committed together (one transaction, one shard of
                the index) once they hold this many pages, and at the end; a killed run loses
                at most that group. None: 1024; 1: every source on its own.
            on_progress: Called with an `IndexProgress` after each file (e.g. a server's job).
            web: How web pages and .html files load (`ingest.WebOptions`: time limits, tile
                size, Chromium's sandbox, local files); None: its defaults.
            ocr: OCR of PDF pages without a usable text layer (fewer than 20 letters and digits)
                and of images: "auto" (None: the default), "always" (every page; the OCR text
                replaces the text layer), "never", or an `ingest.OcrOptions` (language, dpi,
                time limit). OCR text is marked `text_source: "ocr"` in the page's metadata;
                pages whose OCR failed are listed in `AddReport.warnings`.
        """
        from dse.retrieve.indexing import index_sources
        from dse.storage.filters import check_metadata

        if isinstance(sources, (str, Path)):
            sources = [sources]
        meta = check_metadata(metadata)
        group = {} if commit_pages is None else {"commit_pages": commit_pages}
        return index_sources(
            self.encoder, self.index, sources, dpi=dpi, password=password, progress=progress, metadata=meta,
            allow_private=allow_private, workers=workers, limits=limits, on_progress=on_progress, web=web, ocr=ocr,
            **group,
        )

    def delete(self, page_ids: Iterable[str] = (), sources: Iterable[str | Path] = ()) -> DeleteReport:
        """Delete pages by id and whole sources by path, in one commit.

        A path is any spelling of the file (relative, absolute, `~`, through a symbolic link;
        a URL as indexed). Deleted pages are never returned again; their vectors stay in the
        index files (see the README on space). Ids and paths that match nothing are listed in
        the report.
        """
        if isinstance(page_ids, str) or isinstance(sources, (str, Path)):
            raise TypeError("delete takes lists: delete(page_ids=[...], sources=[...])")
        return self.index.delete([str(p) for p in page_ids], [str(s) for s in sources])

    def sync(self, folders: Iterable[str | Path]) -> DeleteReport:
        """Delete the indexed sources under `folders` (`~` expanded) whose files no longer exist on disk."""
        if isinstance(folders, (str, Path)):
            folders = [folders]
        return self.index.delete(sources=self.index.missing_sources(list(folders)), as_indexed=True)

    def compact(self) -> CompactReport:
        """Reclaim deleted pages' space (`dse compact`); searches keep answering meanwhile. A no-op with
        a message when nothing is deleted, or for a backend that reclaims space itself."""
        return self.index.compact()

    def refresh(self) -> int:
        """Pick up pages another process committed since this index was opened; returns how many rows."""
        return self.index.refresh()

    def search(self, query: Any, k: int = 10, **options: Any) -> list[Hit]:
        """The top-k pages for one query, best first (`options`: those of `search_many`).

        `query`: a text, or for the encoders that take them (dse-qwen2, gme-qwen2,
        qwen3-vl-embedding) a PIL image or an (image, text) pair.
        """
        return self.search_many([query], k, **options)[0]

    def search_many(
        self,
        queries: Sequence[Any],
        k: int = 10,
        *,
        mode: str | None = None,
        fusion: str = "rrf",
        rrf_k: float = RRF_K,
        weight: float = 1.0,
        rerank: Reranker | None = None,
        alpha: float = 0.5,
        depth: int = 50,
        where: Mapping[str, Any] | None = None,
        rewrite: Any = None,
    ) -> list[list[Hit]]:
        """The top-k pages for each query, best first.

        Args:
            queries: The queries: texts, or PIL images / (image, text) pairs (`search`).
            k: Pages per query.
            mode: "visual" (the index's encoder), "text" (BM25 over the pages' text layers) or
                "hybrid" (both, fused; `dse.retrieve.hybrid`). None: the index's own ranking
                (BM25 for an index built with `bm25`, visual otherwise).
            fusion: Hybrid only: "rrf" (reciprocal-rank fusion) or "weighted" (normalised
                BM25 + weight * normalised similarity).
            rrf_k: The RRF constant.
            weight: The weighted fusion's lambda (weight of the visual side).
            rerank: A second stage (`dse.retrieve.rerank.Reranker`) rescoring the top `depth`
                first-stage pages; final = alpha * first + (1 - alpha) * reranker, both normalised.
            alpha: Weight of the first stage when reranking.
            depth: First-stage candidates the reranker sees (at least k).
            where: Metadata filter applied before scoring, e.g. {"kind": "pdf", "page": {"gte": 2}}
                (syntax: `dse.storage.filters`); k pages come back when k pages match.
            rewrite: A `dse.rewrite.QueryRewriter` or its registry name ("prf"): each text query is
                rewritten first and the rewrite is what the encoder and BM25 see (the reranker too).
        """
        if isinstance(queries, (str, Image.Image)):
            raise TypeError("search_many takes a list of queries; use search() for one")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        mode = self._mode(mode)
        check_fusion(fusion, rrf_k, weight)
        if rerank is not None:
            check_rerank(rerank, alpha, depth)
        if where is not None:
            compile_where(where)  # a malformed filter fails before any encoding
        if not queries:
            return []
        queries = list(queries)
        if rewrite is not None:
            from dse.retrieve.rewriting import resolve_rewriter, rewrite_queries

            queries = [r.text for r in rewrite_queries(queries, resolve_rewriter(rewrite), self.index, where)]
        check_query_modes(queries, mode, rerank)
        depth_1 = max(k, depth) if rerank is not None else k
        first = self._first_stage(queries, depth_1, mode, fusion, rrf_k, weight, where)
        if rerank is None:
            return first
        return [rerank_hits(q, [self._candidate(h) for h in hits], rerank, k, alpha) for q, hits in zip(queries, first)]

    def _mode(self, mode: str | None) -> str:
        """The search mode, checked against what this index holds (`first_stage.search_mode`)."""
        return search_mode(self.index, mode)

    def _first_stage(
        self, queries: list[str], k: int, mode: str, fusion: str, rrf_k: float, weight: float,
        where: Mapping[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """Visual, text or fused hits for each query (`first_stage.first_stage`)."""
        return first_stage(self.index, self.encode_queries, queries, k, mode, fusion, rrf_k, weight, where)

    def encode_queries(self, queries: list[Any]) -> Any:
        """The queries embedded by the index's encoder (through `query_encoder` when one is set)."""
        text_only = all(isinstance(q, str) for q in queries)
        if self.query_encoder is not None and text_only:
            return self.query_encoder(queries)
        if not text_only:
            check_image_queries(self.encoder, queries)
        return self.encoder.encode_queries(queries)

    def _candidate(self, hit: Hit) -> Candidate:
        """A first-stage hit with its page's text and a loader of its stored image."""
        return Candidate(hit, self.page_text(hit.page_id), functools.partial(self.page_image, hit.page_id))

    def search_text(self, query: str, k: int = 10, where: Mapping[str, Any] | None = None) -> list[Hit]:
        """The top-k pages by BM25 over their text layers (any index keeps this text side)."""
        return as_hits(self.index.search_text([query], k, where)[0], drop_zero=True)

    def page_image(self, page_id: str) -> Image.Image:
        """The stored image of a page."""
        return self.index.page_image(page_id)

    def page_text(self, page_id: str) -> str:
        """The text layer of a page."""
        return self.index.page(page_id).text

    def info(self) -> dict[str, Any]:
        """The manifest with the counts `pages` and `sources` (live), `deleted_pages`, `deleted_sources`,
        and `ocr` (`IndexBackend.ocr_summary`: the OCR setting recorded, the live pages OCR read)."""
        counts = self.index.counts()  # live from the catalogue: commits by other processes count at once
        return {**self.index.manifest.to_json(), "pages": counts.pages, "sources": counts.sources,
                "deleted_pages": counts.deleted_pages, "deleted_sources": counts.deleted_sources,
                "ocr": self.index.ocr_summary()}

