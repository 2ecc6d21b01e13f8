"""The indexing pipeline: render sources, embed pages in batches, commit sources in groups.

Pages stream from `ingest.render`; their stored image is written at once and the full image
dropped after encoding, so memory holds one encoder batch of images, whatever a document's
length. Batches span sources (a folder of single images still fills the encoder's batches).
A source whose last page is encoded is *ready*; ready sources are committed together, in order,
in one transaction (one engine shard) once they hold `commit_pages` pages, and at the end of the
run. An interrupted run keeps every group it committed (it loses at most the ready sources not
yet committed), and the next run skips the committed sources by digest.

A file is recorded under its key (`dse.storage.layout.source_key`: resolved absolute path, `~`
expanded), so another spelling of the same file (relative, from another directory, through a
symbolic link) is the same source; a path an older index recorded (as typed) is matched too and
re-recorded under the key. A moved file whose bytes are indexed at a path that no longer exists
is re-recorded at its new path (one transaction; nothing is rendered again).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping

from dse.backends import IndexBackend
from dse.encoders.base import Encoder
from dse.retrieve.progress import progress_bar
from dse.retrieve.results import AddReport, Failure, IndexProgress
from dse.retrieve.run import COMMIT_PAGES, TEXT_BATCH, IndexRun, PendingSource
from dse.storage.layout import source_key

if TYPE_CHECKING:
    from ingest.limits import Limits
    from ingest.ocr import OcrOptions
    from ingest.web.pages import WebOptions

logger = logging.getLogger(__name__)


def index_sources(
    encoder: Encoder,
    index: IndexBackend,
    sources: Iterable[str | Path],
    *,
    dpi: int | None = None,
    password: str | None = None,
    progress: bool = False,
    metadata: Mapping[str, Any] | None = None,
    allow_private: bool = False,
    workers: int | None = None,
    limits: Limits | None = None,
    commit_pages: int = COMMIT_PAGES,
    on_progress: Callable[[IndexProgress], None] | None = None,
    web: WebOptions | None = None,
    ocr: OcrOptions | str | None = None,
) -> AddReport:
    """Render, embed and commit every file under `sources`; one bad file never stops the rest.

    A file indexed with the same bytes is skipped; with other bytes (it changed), its new pages
    replace the old ones in one transaction. Bytes already indexed from another path are skipped
    too: indexed once, under the first path while that file exists, else (the file was moved)
    re-recorded under the new path; an older version at this path is then deleted. Files are
    keyed by resolved absolute path (see the module docstring).

    Args:
        encoder: The encoder the index was built with.
        index: The open index directory.
        sources: Files and folders (folders are walked recursively).
        dpi: Rendering resolution for PDFs (None: ingest's default).
        password: Password for encrypted PDFs.
        progress: Show a progress bar on stderr.
        metadata: Checked user metadata recorded on every page of these sources (filterable).
        allow_private: Web pages may reach loopback, private and link-local addresses.
        workers: Processes rendering PDF pages (None: one per CPU; 0: render in this process).
        limits: Per-source limits (`ingest.Limits`; None: its defaults); a source over one fails.
        commit_pages: Encoded sources are committed together (one transaction, one engine shard)
            once they hold this many pages, and at the end (1: each source on its own).
        on_progress: Called with an `IndexProgress` after each file (and at the end).
        web: How web pages and .html files are loaded (`ingest.WebOptions`; None: its
            defaults); `allow_private=True` above also opens it to private addresses.
        ocr: OCR of PDF pages without a usable text layer and of images (`ingest.OcrOptions`
            or a mode: "auto", "always", "never"; None: "auto"). A page whose OCR fails keeps
            what text it has and its source is listed in `AddReport.warnings`.

    Returns:
        What was added, updated, skipped and failed.
    """
    from ingest.ocr import ocr_options

    ocr = ocr_options(ocr)  # ValueError for an unknown mode, before anything is written
    run = IndexRun(encoder, index, _batch_size(encoder), _check_commit_pages(commit_pages), metadata=dict(metadata or {}),
                   ingest={"ocr": ocr.record()})
    with index.writing_run():
        try:
            return _index_files(run, sources, dpi, password, progress, allow_private, workers, limits, on_progress,
                                web, ocr)
        except BaseException:
            run.abandon()  # Ctrl-C or an error: no stored image of an uncommitted source stays
            raise


def _index_files(
    run: IndexRun, sources: Iterable[str | Path], dpi: int | None, password: str | None, progress: bool,
    allow_private: bool, workers: int | None, limits: Limits | None,
    on_progress: Callable[[IndexProgress], None] | None, web_options: WebOptions | None,
    ocr: OcrOptions | str | None = None,
) -> AddReport:
    """The body of `index_sources`, inside the run guard."""
    import ingest

    index = run.index
    files: list[Path] = []
    for source in sources:
        try:
            files.extend(ingest.discover([source]))
        except ingest.IngestError as exc:
            run.failures.append(Failure(str(source), str(exc)))
    skipped: list[str] = []
    seen: set[str] = set()
    render_options: dict[str, Any] = {"password": password, "allow_private": allow_private, "limits": limits,
                                      "ocr": ocr}
    if dpi is not None:
        render_options["dpi"] = dpi
    bar = progress_bar(len(files), progress, on_progress)
    pending: list[tuple[Path, PendingSource]] = []  # files to render, after the skip checks
    web: list[tuple[Any, PendingSource | None]] = []  # URLs and .html files, for the shared browser
    for file in files:
        if ingest.is_url(file):
            web.append((file, None))  # its digest (final URL + text) is known once rendered
            continue
        try:
            digest = ingest.file_digest(file)
        except (OSError, ingest.IngestError) as exc:
            run.failures.append(Failure(str(file), f"{file}: cannot be read: {exc}"))
            bar.update(1)
            continue
        src = _pending(index, file, digest, seen)
        if src is None:
            skipped.append(source_key(file))
            bar.update(1)
            continue
        (web if Path(file).suffix.lower() in ingest.WEB_EXTENSIONS else pending).append((file, src))
    web_results = _render_web(web, allow_private, web_options)  # web pages load in the background meanwhile
    _render_files(run, pending, render_options, workers, bar)
    for (_, src), result in zip(web, web_results):
        _add_web_result(run, src, result, skipped, seen)
        bar.update(1)
    run.finish()
    _warn_no_tesseract(run, ocr)
    bar.set_postfix(pages=run.pages, failed=len(run.failures))
    bar.close()
    return AddReport(tuple(run.added), run.pages, tuple(skipped), tuple(run.failures), tuple(run.updated),
                     tuple(run.warnings), run.ocr_pages, round(run.ocr_seconds, 3))


def _warn_no_tesseract(run: IndexRun, ocr: OcrOptions | str | None) -> None:
    """A run-wide warning when OCR was on ("auto") but tesseract is missing and pages got no text."""
    from ingest.ocr import MISSING, ocr_options, tesseract_path

    if run.textless and run.pages and ocr_options(ocr).mode == "auto" and tesseract_path() is None:
        run.warnings.append(Failure("tesseract", f"{MISSING}: {run.textless} page(s) without a usable text layer "
                                                 f"got no text"))


def _pending(index: IndexBackend, file: str | Path, digest: str, seen: set[str]) -> PendingSource | None:
    """The source to render for a local file, or None when its bytes need no rendering.

    None: the bytes were seen earlier in this run, or are indexed (under this file's key or an
    older spelling of it: re-recorded under the key; at a path whose file is gone: moved here;
    at a path that still exists: a copy, indexed once, and a stale version here is deleted).
    """
    if digest in seen:
        return None
    key = source_key(file)
    recorded = index.find_source(file)  # the key, or a path an older index recorded
    live = index.source_digest(recorded) if recorded is not None else None
    older = (recorded,) if recorded is not None and recorded != key else ()
    if digest == live:
        if older:
            index.move_source(recorded, key)  # an older spelling: recorded under the key from now on
        return None
    holder = index.source_of_digest(digest)
    if holder is not None:
        if _still_there(holder) and source_key(holder) != key:
            if recorded is not None:
                index.delete(sources=[recorded], as_indexed=True)  # this path now holds bytes indexed there
        else:
            index.move_source(holder, key, replaces=older)  # moved: one transaction, nothing re-rendered
            logger.info("%s: indexed at %s, which is gone; recorded at its new path", key, holder)
        return None
    seen.add(digest)
    return PendingSource(key, digest, replaces=live is not None, old_paths=older)


def _still_there(path: str) -> bool:
    """True if a recorded source still exists (URLs always do; relative paths: from the current directory)."""
    import ingest

    return ingest.is_url(path) or os.path.exists(path)


def _render_files(
    run: IndexRun,
    pending: list[tuple[Path, PendingSource]],
    render_options: dict[str, Any],
    workers: int | None,
    bar: Any,
) -> None:
    """Render the files in worker processes, in order; queue their pages and commit each file.

    A file that fails midway is dropped whole: its pages already queued are discarded by `fail`.
    """
    from contextlib import closing

    import ingest

    digests = {str(file): src.digest for file, src in pending}
    rendered = ingest.render_many(
        [file for file, _ in pending], workers=workers, digests=digests, **render_options
    )
    with closing(rendered):  # Ctrl-C or an error: the workers stop at once
        for (file, src), item in zip(pending, rendered):
            run.start(src)
            try:
                for page in item.pages:
                    run.push(src, page)
            except ingest.IngestError as exc:
                run.fail(src, str(exc))
            except Exception as exc:  # noqa: BLE001 - an unexpected renderer crash still names the file
                run.fail(src, f"{src.path}: {type(exc).__name__}: {exc}")
            src.rendered = True
            run.commit_ready()
            bar.update(1)
            bar.set_postfix(pages=run.seen_pages(), failed=len(run.failures))


def _render_web(
    web: list[tuple[Any, PendingSource | None]], allow_private: bool, options: WebOptions | None
) -> Iterator[Any]:
    """Start rendering URLs and .html files with the shared browser, in parallel; results in order."""
    import dataclasses

    import ingest

    if not web:
        return iter(())
    options = options or ingest.WebOptions()
    if allow_private and not options.allow_private:
        options = dataclasses.replace(options, allow_private=True)
    return ingest.iter_web([file for file, _ in web], options)


def _add_web_result(
    run: IndexRun, src: PendingSource | None, result: Any, skipped: list[str], seen: set[str]
) -> None:
    """Queue a rendered web page's tiles and commit it.

    A URL (`src` None) is skipped when its content (final URL + text) is already indexed; an
    .html file was checked by its bytes before rendering.
    """
    if result.error is not None:
        run.failures.append(Failure(result.source, str(result.error)))
        logger.warning("%s", result.error)
        return
    if src is None:
        digest = result.pages[0].source_digest
        live = run.index.source_digest(result.source)
        if digest in seen or digest == live or run.index.has_source(digest):
            skipped.append(result.source)
            return
        seen.add(digest)
        src = PendingSource(result.source, digest, replaces=live is not None)
    run.start(src)
    for page in result.pages:
        run.push(src, page)
    src.rendered = True
    run.commit_ready()


def _check_commit_pages(commit_pages: int) -> int:
    if isinstance(commit_pages, bool) or not isinstance(commit_pages, int) or commit_pages < 1:
        raise ValueError(f"commit_pages must be an integer >= 1, got {commit_pages!r}")
    return commit_pages


def _batch_size(encoder: Encoder) -> int:
    return TEXT_BATCH if encoder.input == "text" else max(1, int(getattr(encoder, "batch_size", 8)))


def index_pages(
    encoder: Encoder,
    index: IndexBackend,
    sources: Iterable[tuple[str, str, Iterable[Any]]],
    commit_pages: int = COMMIT_PAGES,
) -> AddReport:
    """Embed and commit pages already in memory (a dataset's images), sources in groups.

    Args:
        encoder: The encoder the index was built with.
        index: The open index directory.
        sources: (path, digest, pages) for each source: the name hits will show, a digest of its
            content (a source whose digest is indexed is skipped) and its `ingest.Page` records.
        commit_pages: Pages per commit (see `index_sources`).

    Returns:
        What was added, skipped and failed.
    """
    run = IndexRun(encoder, index, _batch_size(encoder), _check_commit_pages(commit_pages))
    skipped: list[str] = []
    with index.writing_run():
        try:
            for path, digest, pages in sources:
                if index.has_source(digest):
                    skipped.append(path)
                    continue
                src = PendingSource(path, digest)
                run.start(src)
                for page in pages:
                    run.push(src, page)
                src.rendered = True
                run.commit_ready()
            run.finish()
        except BaseException:
            run.abandon()
            raise
    return AddReport(tuple(run.added), run.pages, tuple(skipped), tuple(run.failures), (),
                     tuple(run.warnings), run.ocr_pages, round(run.ocr_seconds, 3))
