"""Result types of the retriever: search hits and the report of an add."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Hit:
    """One page found for a query.

    Attributes:
        page_id: Stable id of the page.
        source: Path of the source file, as it was given when indexed.
        page: 1-based page number within the source.
        score: Similarity (dot product, MaxSim or BM25 score; for hybrid or reranked searches the
            fused or interpolated score; higher is better).
        rank: 1-based rank in the result list.
        metadata: Facts recorded at ingest (kind, dpi, width, height, ...).
    """

    page_id: str
    source: str
    page: int
    score: float
    rank: int
    metadata: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The fields the CLI prints: source, page, score, page_id, rank."""
        return {"source": self.source, "page": self.page, "score": self.score, "page_id": self.page_id,
                "rank": self.rank}


@dataclass(frozen=True)
class Failure:
    """A source that could not be indexed, and why (the message names the source)."""

    source: str
    error: str


@dataclass(frozen=True)
class AddReport:
    """What one `Retriever.add` call did.

    Attributes:
        added: Sources committed, in order (updated ones included).
        pages: Pages committed.
        skipped: Sources skipped because the same bytes were already indexed (at that path or
            another one).
        failures: Sources that could not be indexed.
        updated: Sources among `added` whose earlier version (same path, other bytes) was replaced.
        warnings: Sources indexed with pages short of their text: OCR failed on those pages
            (`ingest.ocr`); one entry per source, naming the pages and why.
        ocr_pages: Pages whose text OCR read (`text_source: "ocr"` in their metadata).
        ocr_seconds: Time tesseract took over the run's pages (summed over the render workers).
    """

    added: tuple[str, ...] = ()
    pages: int = 0
    skipped: tuple[str, ...] = ()
    failures: tuple[Failure, ...] = ()
    updated: tuple[str, ...] = ()
    warnings: tuple[Failure, ...] = ()
    ocr_pages: int = 0
    ocr_seconds: float = field(default=0.0, compare=False)  # a time: reports of equal runs are equal

    @property
    def ok(self) -> bool:
        """True unless sources failed and none was indexed or already present."""
        return not self.failures or bool(self.added or self.skipped)


@dataclass(frozen=True)
class IndexProgress:
    """How far an indexing run is (given to `Retriever.add(on_progress=...)` after each file).

    Attributes:
        files_done: Files rendered (or skipped, or failed) so far.
        files_total: Files the run found under its sources.
        pages: Pages committed, ready to commit or waiting for the encoder.
        failed: Files that failed so far.
    """

    files_done: int
    files_total: int
    pages: int
    failed: int
