"""Web pages as sources: http(s) URLs and local `.html`/`.htm` files, rendered by headless Chromium.

Each page is loaded in a fresh browser context, scrolled to the bottom (so lazy loaders fire),
given until `WebOptions.settle_timeout` for its network to go quiet (a page that never settles is
captured anyway, with metadata `settled: False` and a logged warning), then captured tile by tile
(overlapping tiles of `width x tile_height` pixels, each scrolled to and screenshot on its own,
with a retry and a fallback: `ingest.web.tiles`). Each tile is one `Page`:
`source` is the URL as given (or the file's path), `page` the 1-based tile number, `text` the
DOM text whose boxes intersect the tile, and metadata has `offset_y`, `full_height`, `title`,
`url` (final, after redirects), `settled`, `truncated`.

Page ids are stable: a local file's `source_digest` is the SHA-256 of its bytes (so an unchanged
file is skipped on re-indexing, like a PDF); a URL's is the SHA-256 of its final URL and the whole
page's visible text (`ingest.web.pages.url_digest`), so an unchanged page gets the same ids, and a
page whose text changed is indexed anew.

Safety: Chromium runs inside its sandbox (as an unprivileged user when dse runs as root;
`ingest.web.sandbox`). Only http, https and file sources. Every request of a page (redirect hops
and subresources included) goes through a filtering proxy that refuses loopback, private and
link-local addresses unless `allow_private=True`; a local file is read by dse, not the browser, and
may load files from its own folder only (`WebOptions.local_files`, `ingest.web.local`); scripts
never read local files; downloads are refused; JavaScript dialogs are dismissed; each page has a
hard time limit.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from ingest.base import RenderOptions, SourceFile
from ingest.digest import file_digest
from ingest.errors import IngestError, MissingToolError, UnsupportedSourceError
from ingest.page import Page
from ingest.web.browser import WebRenderer, close_shared_renderer, shared_renderer
from ingest.web.pages import WebOptions, build_pages, url_digest
from ingest.web.safety import is_url

WEB_EXTENSIONS = (".html", ".htm")

__all__ = [
    "WEB_EXTENSIONS",
    "WebOptions",
    "WebRenderer",
    "WebResult",
    "close_shared_renderer",
    "is_url",
    "iter_web",
    "render_html",
    "render_url",
    "render_web",
    "shared_renderer",
]


@dataclass(frozen=True)
class WebResult:
    """The tiles of one web source, or why it failed.

    Attributes:
        source: The URL as given, or the local file's normalised path.
        pages: The tiles in order (empty when `error` is set).
        error: The IngestError naming the source, or None.
    """

    source: str
    pages: tuple[Page, ...]
    error: IngestError | None = None


@dataclass(frozen=True)
class _Job:
    source: str
    digest: str | None
    future: concurrent.futures.Future | None
    error: IngestError | None = None


def _submit(
    renderer: WebRenderer, source: str | os.PathLike[str], options: WebOptions, digest: str | None
) -> _Job:
    """Resolve a source to a URL and start rendering it; a bad source becomes a failed job."""
    if is_url(source):
        label = str(source)
        return _Job(label, None, renderer.submit(label, label, options))
    label = os.path.normpath(os.fspath(source))
    path = Path(label)
    try:
        if not path.is_file():
            raise IngestError(label, "no such file (web sources are http(s) URLs or .html files)")
        if path.suffix.lower() not in WEB_EXTENSIONS:
            raise UnsupportedSourceError(label, f"not a web page: '{path.suffix}' is not .html/.htm")
        digest = digest or file_digest(path)
    except IngestError as error:
        return _Job(label, None, None, error)
    return _Job(label, digest, renderer.submit(label, path.resolve().as_uri(), options))


def _finish(job: _Job, options: WebOptions) -> WebResult:
    """Wait for a job and turn its capture into pages."""
    if job.future is None:
        return WebResult(job.source, (), job.error)
    try:
        capture = job.future.result(timeout=options.page_timeout + 60)
        digest = job.digest or url_digest(capture.final_url, capture.boxes)
        extra = {"file_name": Path(job.source).name} if job.digest else {}
        return WebResult(job.source, tuple(build_pages(job.source, digest, capture, options, extra)))
    except MissingToolError:
        raise  # the machine lacks Chromium or playwright: every source would fail
    except IngestError as error:
        return WebResult(job.source, (), error)
    except Exception as exc:  # noqa: BLE001 - a browser failure is still this source's failure
        reason = f"cannot render: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return WebResult(job.source, (), IngestError(job.source, reason))


def iter_web(
    sources: Iterable[str | os.PathLike[str]],
    options: WebOptions | None = None,
    *,
    renderer: WebRenderer | None = None,
) -> Iterator[WebResult]:
    """Render web sources in parallel; results come in input order, one per source.

    The first `renderer.max_parallel` sources start rendering before this returns, and at most
    that many results are held at once, so a caller can consume results while the next ones load.

    Args:
        sources: http(s) URLs and local .html/.htm files.
        options: Geometry, timeouts and address policy (default `WebOptions()`).
        renderer: The browser to use (default: the process-wide `shared_renderer()`).

    Returns:
        An iterator of `WebResult` (a failed source has `error` set; the others go on).

    Raises:
        MissingToolError: Chromium or playwright is not installed (while iterating).
    """
    renderer = renderer or shared_renderer()
    options = options or WebOptions()
    pending = iter(list(sources))
    jobs: deque[_Job] = deque()
    for source in pending:
        jobs.append(_submit(renderer, source, options, None))
        if len(jobs) >= renderer.max_parallel:
            break
    return _drain(renderer, jobs, pending, options)


def _drain(
    renderer: WebRenderer, jobs: deque[_Job], pending: Iterator, options: WebOptions
) -> Iterator[WebResult]:
    while jobs:
        result = _finish(jobs.popleft(), options)
        for source in pending:
            jobs.append(_submit(renderer, source, options, None))
            break
        yield result


def render_web(
    sources: Iterable[str | os.PathLike[str]],
    options: WebOptions | None = None,
    *,
    allow_private: bool = False,
    renderer: WebRenderer | None = None,
) -> list[WebResult]:
    """Render URLs and local .html files into tiles; one `WebResult` per source, in input order.

    Args:
        sources: http(s) URLs and local .html/.htm files.
        options: Geometry and timeouts (default `WebOptions()`).
        allow_private: Let pages reach loopback, private and link-local addresses.
        renderer: The browser to use (default: the process-wide one).

    Returns:
        The results (failed sources carry an IngestError naming them).
    """
    options = options or WebOptions()
    if allow_private and not options.allow_private:
        options = replace(options, allow_private=True)
    return list(iter_web(sources, options, renderer=renderer))


def _pages_or_raise(result: WebResult) -> Iterator[Page]:
    if result.error is not None:
        raise result.error
    return iter(result.pages)


def render_url(url: str, options: RenderOptions) -> Iterator[Page]:
    """Render one URL with the shared browser (what `ingest.render(url)` calls).

    Raises:
        IngestError: The URL is refused, unreachable or answers with an error.
    """
    web = WebOptions(allow_private=options.allow_private)
    return _pages_or_raise(_finish(_submit(shared_renderer(), url, web, None), web))


def render_html(file: SourceFile, options: RenderOptions) -> Iterator[Page]:
    """Renderer for local .html/.htm files (the `ingest.render` table entry).

    Raises:
        IngestError: The page cannot be rendered.
    """
    web = WebOptions(allow_private=options.allow_private)
    return _pages_or_raise(_finish(_submit(shared_renderer(), file.path, web, file.digest), web))
