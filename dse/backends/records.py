"""The records every index backend exchanges: pages to commit, catalogued pages, scored pages, counts, reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class Counts:
    """Row counts of a catalogue.

    Attributes:
        rows: Rows ever committed (live + deleted): the engines' row count.
        pages: Live pages.
        sources: Live sources.
        deleted_pages: Tombstoned rows (their vectors still take space in the shards).
        deleted_sources: Sources deleted or replaced by an update.
    """

    rows: int
    pages: int
    sources: int
    deleted_pages: int
    deleted_sources: int


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


@dataclass(frozen=True)
class NewSource:
    """A source about to be committed with its pages (in order).

    Attributes:
        replaces: Other paths whose live source this one replaces (an older version recorded
            under another spelling of the same file, e.g. a relative path); the live source at
            `path` is always replaced.
    """

    path: str
    digest: str
    kind: str
    pages: Sequence[NewPage]
    replaces: tuple[str, ...] = ()


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


@dataclass(frozen=True)
class CompactReport:
    """What one `compact` did (or why it did nothing).

    Attributes:
        compacted: True if a new generation of engine files was written and switched to.
        pages: Live pages (the rows the engines hold now).
        rows_removed: Rows of deleted pages dropped from the engines and the catalogue.
        sources_removed: Deleted sources dropped from the catalogue.
        bytes_before: Bytes of the engines' files before (vectors and text).
        bytes_after: Bytes of the engines' files after.
        seconds: Wall time.
        generation: The engine generation the index is at now (how many compactions).
        message: One line for a person: what was done, or why nothing was.
    """

    compacted: bool
    pages: int
    rows_removed: int
    sources_removed: int
    bytes_before: int
    bytes_after: int
    seconds: float
    generation: int
    message: str


@dataclass(frozen=True)
class Reclaimable:
    """What `compact` would reclaim now (`dse info`).

    Attributes:
        rows: Rows of deleted pages still in the engines.
        bytes: Bytes it would free: the deleted rows' share of the engines' files (estimated
            in proportion to rows), plus files of engine generations left by an interrupted
            compaction (exact).
        note: Set when the backend reclaims space itself (nothing for `compact` to do).
    """

    rows: int
    bytes: int
    note: str = ""
