"""The scheduler behind `render_many`: opens sources ahead, keeps chunks of PDF pages in flight in
worker processes, hands their pages out in order, and recovers when a worker dies."""

from __future__ import annotations

import os
import shutil
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.base import RenderOptions, SourceFile
from ingest.errors import IngestError, WorkerCrashedError
from ingest.page import Page
from ingest.parallel.workers import (
    ChunkResult,
    PageFile,
    WorkerPool,
    delete_files,
    make_spool,
    render_chunk,
)
from ingest.pdf import render as pdf
from ingest.render import check_source, open_source, render


@dataclass
class _Chunk:
    """Pages first..last of a source, and the future of the worker task rendering them."""

    first: int
    last: int
    future: Any = None


@dataclass
class _Source:
    """A source opened by the scheduler: its chunks and the futures submitted for them."""

    path: Path | str  # str: a URL, rendered in this process
    source: str
    file: SourceFile | None = None
    error: IngestError | None = None
    opened: pdf.OpenedPdf | None = None  # a PDF: what poppler reads, its info
    spent: float = 0.0  # seconds of poppler time used so far (Limits.file_timeout)
    chunks: deque[tuple[int, int]] = field(default_factory=deque)  # not yet submitted
    futures: deque[_Chunk] = field(default_factory=deque)  # submitted, in page order
    done: bool = False

    @property
    def info(self) -> pdf.PdfInfo | None:
        return None if self.opened is None else self.opened.info


def _succeeded(future: Any) -> bool:
    """Whether a future finished with a result (its worker did not die)."""
    return future.done() and not future.cancelled() and future.exception() is None


class _Scheduler:
    """Opens sources ahead, keeps at most `max_in_flight` chunks out, hands out pages in order.

    A worker that dies breaks the pool: `_recover` starts a fresh one, re-runs the chunk being
    waited for alone (if it kills its worker again, its source fails with WorkerCrashedError)
    and resubmits the other chunks that were in flight.
    """

    def __init__(
        self,
        paths: Iterator[Path | str],
        options: RenderOptions,
        workers: int,
        max_in_flight: int,
        digests: Mapping[str, str],
    ) -> None:
        self.paths, self.options, self.digests = paths, options, digests
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.peak_in_flight = 0
        self.restarts = 0
        self.opened: deque[_Source] = deque()
        self.pool = WorkerPool(workers, options.limits.max_memory_bytes)
        self.spool = ""

    @property
    def executor(self) -> Any:
        """The live ProcessPoolExecutor, or None (started at the first chunk)."""
        return self.pool.executor

    def _open(self, path: Path | str) -> _Source:
        """Check (and for a PDF, probe) one file in this process; never raises IngestError."""
        src = _Source(path, _source_name(path))
        if isinstance(path, str):
            return src  # a URL
        try:
            src.file = check_source(path, self.digests.get(str(path)), self.options.limits)
            if path.suffix.lower() in pdf.PDF_EXTENSIONS:
                src.opened = pdf.open_pdf(src.file, self.options)
                src.spent = src.opened.spent
                src.chunks.extend(
                    pdf.chunk_ranges(src.opened.info.num_pages, self.options.chunk_pages)
                )
        except IngestError as exc:
            src.error = exc
        return src

    def _submit(self, src: _Source, chunk: _Chunk) -> None:
        """Start rendering a chunk in a worker."""
        from concurrent.futures import Future
        from concurrent.futures.process import BrokenProcessPool

        assert src.opened is not None
        if not self.spool:
            self.spool = make_spool()
        try:
            chunk.future = self.pool.submit(
                render_chunk, src.opened.file, self.options, src.opened.info, chunk.first,
                chunk.last, self.spool, src.spent,
            )
        except BrokenProcessPool as exc:  # a worker died since: recovered when it is read
            chunk.future = Future()
            chunk.future.set_exception(exc)

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
            chunk = _Chunk(*src.chunks.popleft())
            self._submit(src, chunk)
            src.futures.append(chunk)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def _recover(self, src: _Source, chunk: _Chunk) -> ChunkResult:
        """A worker died: start fresh workers, re-run `chunk` alone, resubmit the others."""
        from concurrent.futures.process import BrokenProcessPool

        lost = [(s, c) for s in self.opened for c in s.futures if not _succeeded(c.future)]
        self.pool.restart()
        self.restarts += 1
        self._submit(src, chunk)
        try:
            result = chunk.future.result()
        except BrokenProcessPool:
            cause = self.pool.death()
            self.pool.restart()
            where = f"page {chunk.first}" if chunk.first == chunk.last else (
                f"pages {chunk.first}-{chunk.last}")
            reason = (f"the render worker died while rendering {where} ({cause}); "
                      "the other files go on with a fresh worker")
            result = ChunkResult(error=(WorkerCrashedError, src.source, reason))
        for other_src, other in lost:
            if other_src is not src or result.error is None:
                self._submit(other_src, other)
        return result

    def next_source(self) -> _Source | None:
        """The next source in input order, or None when all are done."""
        self.fill()
        return self.opened[0] if self.opened else None

    def finish(self, src: _Source) -> None:
        """Drop what is left of a source (unread chunks are cancelled or discarded)."""
        src.done = True
        src.chunks.clear()
        while src.futures:
            future = src.futures.popleft().future
            if not future.cancel():
                future.add_done_callback(delete_files)
            self.in_flight -= 1
        if src.opened is not None:
            src.opened.close()
        if self.opened and self.opened[0] is src:
            self.opened.popleft()

    def pages(self, src: _Source) -> Iterator[Page]:
        """Yield the pages of `src` in order; raise its IngestError where it fails."""
        from concurrent.futures.process import BrokenProcessPool

        if src.error is not None:
            raise src.error
        if isinstance(src.path, str):
            yield from _serial_pages(src.path, self.options, None)
            return
        assert src.file is not None
        if src.opened is None:  # not a PDF: rendered here
            yield from open_source(src.file, self.options)
            return
        while True:
            if src.done:
                raise RuntimeError(f"{src.source}: pages read after the next source was taken")
            if not (src.futures or src.chunks):
                return
            if not src.futures:
                self.fill()
            chunk = src.futures.popleft()
            self.in_flight -= 1
            try:
                result: ChunkResult = chunk.future.result()
            except BrokenProcessPool:
                result = self._recover(src, chunk)
            src.spent += result.seconds
            self.fill()
            if result.error is not None:
                error_type, source, reason = result.error
                self.finish(src)
                raise error_type(source, reason)
            try:
                for number, page_file in enumerate(result.pages, start=chunk.first):
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
        return pdf.pdf_page(src.file, src.info, number, page_file.dpi, image, page_file.text, page_file.extra)

    def shutdown(self, clean: bool) -> None:
        """Stop the workers (wait after a clean run, terminate otherwise); delete the spool."""
        for src in self.opened:
            if src.opened is not None:
                src.opened.close()
        self.pool.shutdown(clean)
        if self.spool:
            shutil.rmtree(self.spool, ignore_errors=True)


def _source_name(path: Path | str) -> str:
    """`Page.source` of a path (normalised) or a URL (as given)."""
    return path if isinstance(path, str) else os.path.normpath(path)


def _serial_pages(path: Path | str, options: RenderOptions, digest: str | None) -> Iterator[Page]:
    """Render one file or URL in this process, like `ingest.render`."""
    if isinstance(path, str):
        yield from render(
            path,
            dpi=options.dpi,
            password=options.password,
            allow_private=options.allow_private,
            limits=options.limits,
            ocr=options.ocr,
        )
        return
    yield from open_source(check_source(path, digest, options.limits), options)
