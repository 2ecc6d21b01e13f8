"""Render many sources in worker processes: chunks of PDF pages in parallel, yielded in input order.

The work unit is a chunk of pages of one PDF, so a single long PDF keeps every worker busy too.
At most `max_in_flight` chunks are submitted and not yet handed to the caller, so memory depends on
the chunk size and the number of workers, never on a document's length. Pages travel from the
workers as pdftoppm's raw PPM files in a spool folder in shared memory (`/dev/shm` where there is
one): no PNG encoding, and no pixel is copied through a pipe. Images and other non-PDF sources
render in the caller's process, while the workers go on with the chunks of the PDFs that follow.
"""

from __future__ import annotations

import os
import shutil
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest import pdf
from ingest.base import DEFAULT_CHUNK_PAGES, DEFAULT_DPI, RenderOptions, SourceFile
from ingest.errors import IngestError
from ingest.limits import Limits
from ingest.page import Page
from ingest.render import check_source, discover, open_source, render
from ingest.workers import (
    ChunkResult,
    PageFile,
    delete_files,
    ignore_sigint,
    main_module_hidden,
    make_spool,
    render_chunk,
)

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


@dataclass
class _Source:
    """A source opened by the scheduler: its chunks and the futures submitted for them."""

    path: Path | str  # str: a URL, rendered in this process
    source: str
    file: SourceFile | None = None
    error: IngestError | None = None
    info: pdf.PdfInfo | None = None
    chunks: deque[tuple[int, int]] = field(default_factory=deque)  # not yet submitted
    futures: deque[tuple[int, Any]] = field(default_factory=deque)  # (first page, Future)
    done: bool = False


class _Scheduler:
    """Opens sources ahead, keeps at most `max_in_flight` chunks out, hands out pages in order."""

    def __init__(
        self,
        paths: Iterator[Path | str],
        options: RenderOptions,
        workers: int,
        max_in_flight: int,
        digests: Mapping[str, str],
    ) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        methods = multiprocessing.get_all_start_methods()
        # fork after torch is loaded can deadlock: workers start from a clean interpreter
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        self.paths, self.options, self.digests = paths, options, digests
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.peak_in_flight = 0
        self.opened: deque[_Source] = deque()
        self.executor: Any = None  # started at the first chunk: a run of images spawns nothing
        self._start = lambda: ProcessPoolExecutor(
            workers, mp_context=context, initializer=ignore_sigint
        )
        self.spool = ""

    def _open(self, path: Path | str) -> _Source:
        """Check (and for a PDF, probe) one file in this process; never raises IngestError."""
        src = _Source(path, _source_name(path))
        if isinstance(path, str):
            return src  # a URL
        try:
            src.file = check_source(path, self.digests.get(str(path)), self.options.limits)
            if path.suffix.lower() in pdf.PDF_EXTENSIONS:
                limit = self.options.limits.max_pages
                src.info = pdf.probe_pdf(src.file, self.options.password, limit)
                src.chunks.extend(pdf.chunk_ranges(src.info.num_pages, self.options.chunk_pages))
        except IngestError as exc:
            src.error = exc
        return src

    def fill(self) -> None:
        """Submit chunks, sources in order, until `max_in_flight` are out or no work is left."""
        while self.in_flight < self.max_in_flight:
            src = next((s for s in self.opened if s.chunks and not s.done), None)
            if src is None:
                if len(self.opened) > self.max_in_flight:
                    return  # enough sources opened ahead (images hold no chunks)
                path = next(self.paths, None)
                if path is None:
                    return
                self.opened.append(self._open(path))
                continue
            first, last = src.chunks.popleft()
            if self.executor is None:
                self.spool = make_spool()
                self.executor = self._start()
            with main_module_hidden():  # submit() starts the workers, one at a time
                future = self.executor.submit(
                    render_chunk, src.file, self.options, src.info, first, last, self.spool
                )
            src.futures.append((first, future))
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def next_source(self) -> _Source | None:
        """The next source in input order, or None when all are done."""
        self.fill()
        return self.opened[0] if self.opened else None

    def finish(self, src: _Source) -> None:
        """Drop what is left of a source (unread chunks are cancelled or discarded)."""
        src.done = True
        src.chunks.clear()
        while src.futures:
            future = src.futures.popleft()[1]
            if not future.cancel():
                future.add_done_callback(delete_files)
            self.in_flight -= 1
        if self.opened and self.opened[0] is src:
            self.opened.popleft()

    def pages(self, src: _Source) -> Iterator[Page]:
        """Yield the pages of `src` in order; raise its IngestError where it fails."""
        if src.error is not None:
            raise src.error
        if isinstance(src.path, str):
            yield from _serial_pages(src.path, self.options, None)
            return
        assert src.file is not None
        if src.info is None:  # not a PDF: rendered here
            yield from open_source(src.file, self.options)
            return
        while True:
            if src.done:
                raise RuntimeError(f"{src.source}: pages read after the next source was taken")
            if not (src.futures or src.chunks):
                return
            if not src.futures:
                self.fill()
            first, future = src.futures.popleft()
            self.in_flight -= 1
            result: ChunkResult = future.result()
            self.fill()
            if result.error is not None:
                error_type, source, reason = result.error
                self.finish(src)
                raise error_type(source, reason)
            try:
                for number, page_file in enumerate(result.pages, start=first):
                    yield self._page(src, number, page_file)
            finally:
                delete_files(result)

    def _page(self, src: _Source, number: int, page_file: PageFile) -> Page:
        """Read a worker's page file into the Page the serial renderer would have made."""
        from PIL import Image

        assert src.file is not None and src.info is not None
        with Image.open(page_file.path) as ppm:
            image = ppm.convert("RGB")  # decoded here: (height, width, 3)
        os.unlink(page_file.path)
        return pdf.pdf_page(src.file, src.info, number, page_file.dpi, image, page_file.text)

    def shutdown(self, clean: bool) -> None:
        """Stop the workers: wait for them after a clean run, terminate them otherwise."""
        if self.executor is None:
            return
        if clean:
            self.executor.shutdown(wait=True)
        else:
            processes = list((getattr(self.executor, "_processes", None) or {}).values())
            self.executor.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            for process in processes:
                process.join()
        shutil.rmtree(self.spool, ignore_errors=True)


def _source_name(path: Path | str) -> str:
    """`Page.source` of a path (normalised) or a URL (as given)."""
    return path if isinstance(path, str) else os.path.normpath(path)


def _expand(sources: Iterable[str | os.PathLike[str]]) -> Iterator[Path | str]:
    """Expand folders lazily; a missing source is passed on as is (it fails when opened)."""
    for source in sources:
        try:
            yield from discover([source])
        except IngestError:
            yield Path(os.path.normpath(os.fspath(source)))


def _serial_pages(path: Path | str, options: RenderOptions, digest: str | None) -> Iterator[Page]:
    """Render one file or URL in this process, like `ingest.render`."""
    if isinstance(path, str):
        yield from render(
            path,
            dpi=options.dpi,
            password=options.password,
            allow_private=options.allow_private,
            limits=options.limits,
        )
        return
    yield from open_source(check_source(path, digest, options.limits), options)


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
        limits=limits or Limits(),
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
