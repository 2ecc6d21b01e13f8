"""Render many sources in worker processes: chunks of PDF pages in parallel, yielded in input order.

The work unit is a chunk of pages of one PDF, so a single long PDF keeps every worker busy too.
At most `max_in_flight` chunks are submitted and not yet handed to the caller, so memory depends on
the chunk size and the number of workers, never on a document's length. Pages travel from the
workers as pdftoppm's raw PPM files in a spool folder in shared memory (`/dev/shm` where there is
one): no PNG encoding, and no pixel is copied through a pipe. Images and other non-PDF sources
render in the caller's process, while the workers go on with the chunks of the PDFs that follow.
Workers run under a memory cap; one that dies fails only the file it was rendering
(`ingest.parallel.scheduler`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ingest.base import DEFAULT_CHUNK_PAGES, DEFAULT_DPI, RenderOptions
from ingest.errors import IngestError
from ingest.limits import Limits
from ingest.ocr import OcrOptions, check_available, ocr_options
from ingest.page import Page
from ingest.parallel.scheduler import _Scheduler, _serial_pages, _source_name
from ingest.render import discover

IN_FLIGHT_PER_WORKER = 2
"""Default bound on chunks in flight, per worker: one rendering, one waiting to be consumed."""


@dataclass(frozen=True)
class SourcePages:
    """One source and its pages, streamed in document order.

    Attributes:
        path: The file as given (or found in a folder), or the URL string.
        source: The path normalised (or the URL), as in `Page.source` and `IngestError.source`.
        pages: Lazy iterator over the pages. It raises IngestError if the source cannot be read,
            before its first page or midway; no page of the source follows the error. Read it
            before taking the next `SourcePages`: what is left of it is then dropped.
    """

    path: Path | str
    source: str
    pages: Iterator[Page] = field(repr=False, compare=False)


def _expand(sources: Iterable[str | os.PathLike[str]]) -> Iterator[Path | str]:
    """Expand folders lazily; a missing source is passed on as is (it fails when opened)."""
    for source in sources:
        try:
            yield from discover([source])
        except IngestError:
            yield Path(os.path.normpath(os.fspath(source)))


def render_many(
    sources: Iterable[str | os.PathLike[str]],
    *,
    workers: int | None = None,
    dpi: int = DEFAULT_DPI,
    password: str | None = None,
    chunk_pages: int = DEFAULT_CHUNK_PAGES,
    max_in_flight: int | None = None,
    digests: Mapping[str, str] | None = None,
    allow_private: bool = False,
    limits: Limits | None = None,
    ocr: OcrOptions | str | None = None,
) -> Iterator[SourcePages]:
    """Render files and folders in parallel; yield each source with its pages, in input order.

    A source that cannot be rendered raises IngestError from its own `pages` and the batch goes
    on. Pages equal `ingest.render`'s (ids, numbers, texts, pixels). Workers start once, from a
    clean interpreter (forkserver, else spawn), and stop when the iterator ends, is closed or
    garbage-collected, or an exception (Ctrl-C included) goes through it.

    Args:
        sources: Files and folders (folders are walked like `discover`).
        workers: Worker processes (None: `os.cpu_count()`; 0: render in this process).
        dpi: Rendering resolution for PDFs.
        password: User password for encrypted PDFs.
        chunk_pages: Pages of a PDF per work unit.
        max_in_flight: Most chunks submitted and not yet consumed (None: 2 per worker).
        digests: Known SHA-256 digests by path (`str(path)`), looked up when a source is opened.
        allow_private: Web pages may reach loopback, private and link-local addresses.
        limits: Per-source limits (None: `Limits()`'s defaults).
        ocr: OCR of pages without a usable text layer and of images (`ingest.ocr.OcrOptions` or
            a mode; None: "auto"), in the workers for PDF pages.

    Returns:
        A lazy iterator of `SourcePages`, one per file, in input order.

    Raises:
        ValueError: A numeric option is out of range.
        MissingToolError: poppler is not installed.
    """
    workers = (os.cpu_count() or 1) if workers is None else workers
    bad_bound = max_in_flight is not None and max_in_flight <= 0
    if workers < 0 or dpi <= 0 or chunk_pages <= 0 or bad_bound:
        raise ValueError(
            f"need workers >= 0, dpi, chunk_pages and max_in_flight > 0; got workers={workers}, "
            f"dpi={dpi}, chunk_pages={chunk_pages}, max_in_flight={max_in_flight}"
        )
    options = RenderOptions(
        dpi=dpi, password=password, chunk_pages=chunk_pages, allow_private=allow_private,
        limits=limits or Limits(), ocr=check_available(ocr_options(ocr)),
    )
    in_flight = max_in_flight or IN_FLIGHT_PER_WORKER * max(1, workers)
    return _run(sources, options, workers, in_flight, digests or {})


def _run(
    sources: Iterable[str | os.PathLike[str]],
    options: RenderOptions,
    workers: int,
    max_in_flight: int,
    digests: Mapping[str, str],
) -> Iterator[SourcePages]:
    """The generator behind `render_many`."""
    paths = _expand(sources)
    if workers == 0:
        for path in paths:
            pages = _serial_pages(path, options, digests.get(str(path)))
            yield SourcePages(path, _source_name(path), pages)
        return
    scheduler = _Scheduler(paths, options, workers, max_in_flight, digests)
    clean = False
    try:
        while (src := scheduler.next_source()) is not None:
            yield SourcePages(src.path, src.source, scheduler.pages(src))
            scheduler.finish(src)
        clean = True
    finally:
        scheduler.shutdown(clean)
