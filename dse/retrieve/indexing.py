"""The indexing pipeline: render sources, embed pages in batches, commit source by source.

Pages stream from `ingest.render`; their stored image is written at once and the full image
dropped after encoding, so memory holds one encoder batch of images, whatever a document's
length. Batches span sources (a folder of single images still fills the encoder's batches),
and each source is committed in one transaction as soon as its last page is encoded: an
interrupted run keeps every source it finished, and the next run skips them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from dse.encoders.base import Encoder
from dse.indexes.catalogue import NewPage
from dse.indexes.store import PageIndex
from dse.retrieve.results import AddReport, Failure

if TYPE_CHECKING:
    from ingest.limits import Limits

logger = logging.getLogger(__name__)

TEXT_BATCH = 256  # pages a text encoder tokenises at once


@dataclass
class _Source:
    path: str
    digest: str
    kind: str = ""
    pages: list[NewPage] = field(default_factory=list)
    vectors: list[Any] = field(default_factory=list)
    rendered: bool = False
    failed: bool = False
    replaces: bool = False  # an older version of this path is indexed: committing replaces it


@dataclass
class _Run:
    encoder: Encoder
    index: PageIndex
    batch: int
    buffer: list[tuple[_Source, Any]] = field(default_factory=list)  # (source, encoder input)
    open_sources: list[_Source] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    pages: int = 0
    failures: list[Failure] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)  # user metadata given to every page
    updated: list[str] = field(default_factory=list)

    def push(self, source: _Source, page: Any) -> None:
        """Queue one rendered page for encoding."""
        stored = self.index.store_image(page.page_id, page.image)
        meta = {**dict(page.metadata), **self.metadata}
        source.pages.append(NewPage(page.page_id, page.page, page.text, stored, meta))
        source.kind = source.kind or str(page.metadata.get("kind", ""))
        item = page.text if self.encoder.input == "text" else page.image
        self.buffer.append((source, item))
        if len(self.buffer) >= self.batch:
            self.flush()

    def flush(self) -> None:
        """Encode the buffered pages, then commit every source that is complete."""
        if self.buffer:
            items = [item for _, item in self.buffer]
            owners = [src for src, _ in self.buffer]
            self.buffer = []
            try:
                vectors = self.encoder.encode_pages(items)
            except Exception as exc:  # noqa: BLE001 - reported per source, the batch goes on
                for src in dict.fromkeys(owners):
                    self.fail(src, f"{src.path}: encoding failed: {type(exc).__name__}: {exc}")
            else:
                for src, vec in zip(owners, vectors):
                    src.vectors.append(vec)
        self.commit_ready()

    def commit_ready(self) -> None:
        """Commit, in order, the sources whose pages are all rendered and encoded."""
        while self.open_sources:
            src = self.open_sources[0]
            if src.failed:
                self.open_sources.pop(0)
                continue
            if not (src.rendered and len(src.vectors) == len(src.pages)):
                return
            self.open_sources.pop(0)
            if not src.pages:
                self.failures.append(Failure(src.path, f"{src.path}: no pages"))
                continue
            vectors = _stack(self.encoder, src.vectors)
            try:
                self.index.add_source(src.path, src.digest, src.kind, src.pages, vectors)
            except Exception as exc:  # noqa: BLE001
                self.fail(src, f"{src.path}: could not be committed: {type(exc).__name__}: {exc}")
                continue
            self.added.append(src.path)
            self.pages += len(src.pages)
            if src.replaces:
                self.updated.append(src.path)

    def fail(self, src: _Source, message: str) -> None:
        """Drop a source from the run and record why."""
        if not src.failed:
            src.failed = True
            self.failures.append(Failure(src.path, message))
            logger.warning("%s", message)
        self.buffer = [(s, item) for s, item in self.buffer if s is not src]


def _stack(encoder: Encoder, vectors: list[Any]) -> Any:
    if encoder.kind == "single":
        import numpy as np

        return np.stack(vectors).astype("float32")  # (pages, dim)
    return vectors


def index_sources(
    encoder: Encoder,
    index: PageIndex,
    sources: Iterable[str | Path],
    *,
    dpi: int | None = None,
    password: str | None = None,
    progress: bool = False,
    metadata: Mapping[str, Any] | None = None,
    allow_private: bool = False,
    workers: int | None = None,
    limits: Limits | None = None,
) -> AddReport:
    """Render, embed and commit every file under `sources`; one bad file never stops the rest.

    A file whose path is indexed with the same bytes is skipped; with other bytes (it changed),
    its new pages replace the old ones in one transaction. Bytes already indexed from another
    path are skipped too (indexed once, under the first path), and an older version at this
    path is then deleted.

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

    Returns:
        What was added, updated, skipped and failed.
    """
    import ingest

    run = _Run(encoder, index, _batch_size(encoder), metadata=dict(metadata or {}))
    files: list[Path] = []
    for source in sources:
        try:
            files.extend(ingest.discover([source]))
        except ingest.IngestError as exc:
            run.failures.append(Failure(str(source), str(exc)))
    skipped: list[str] = []
    seen: set[str] = set()
    render_options: dict[str, Any] = {"password": password, "allow_private": allow_private, "limits": limits}
    if dpi is not None:
        render_options["dpi"] = dpi
    bar = _progress_bar(len(files), progress)
    pending: list[tuple[Path, _Source]] = []  # files to render, after the skip checks
    web: list[tuple[Any, _Source | None]] = []  # URLs and .html files, for the shared browser
    for file in files:
        path = str(file)
        if ingest.is_url(file):
            web.append((file, None))  # its digest (final URL + text) is known once rendered
            continue
        try:
            digest = ingest.file_digest(file)
        except (OSError, ingest.IngestError) as exc:
            run.failures.append(Failure(path, f"{path}: cannot be read: {exc}"))
            bar.update(1)
            continue
        live = index.source_digest(path)
        if digest in seen or digest == live or index.has_source(digest):
            if live is not None and digest != live:
                index.delete(sources=[path])  # this path now holds bytes indexed elsewhere
            skipped.append(path)
            bar.update(1)
            continue
        seen.add(digest)
        src = _Source(path, digest, replaces=live is not None)
        (web if Path(file).suffix.lower() in ingest.WEB_EXTENSIONS else pending).append((file, src))
    web_results = _render_web(web, allow_private)  # web pages load in the background meanwhile
    _render_files(run, pending, render_options, workers, bar)
    for (_, src), result in zip(web, web_results):
        _add_web_result(run, src, result, skipped, seen)
        bar.update(1)
    run.flush()
    bar.set_postfix(pages=run.pages, failed=len(run.failures))
    bar.close()
    return AddReport(tuple(run.added), run.pages, tuple(skipped), tuple(run.failures), tuple(run.updated))


def _render_files(
    run: _Run,
    pending: list[tuple[Path, _Source]],
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
            run.open_sources.append(src)
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
            bar.set_postfix(pages=run.pages + len(run.buffer), failed=len(run.failures))


def _render_web(web: list[tuple[Any, _Source | None]], allow_private: bool) -> Iterator[Any]:
    """Start rendering URLs and .html files with the shared browser, in parallel; results in order."""
    import ingest

    if not web:
        return iter(())
    return ingest.iter_web([file for file, _ in web], ingest.WebOptions(allow_private=allow_private))


def _add_web_result(
    run: _Run, src: _Source | None, result: Any, skipped: list[str], seen: set[str]
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
        src = _Source(result.source, digest, replaces=live is not None)
    run.open_sources.append(src)
    for page in result.pages:
        run.push(src, page)
    src.rendered = True
    run.commit_ready()


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    # disable=None: shown on a terminal only, so logs and CI output stay clean
    return tqdm(total=total, unit="file", desc="indexing", disable=None if enabled else True, dynamic_ncols=True)


def _batch_size(encoder: Encoder) -> int:
    return TEXT_BATCH if encoder.input == "text" else max(1, int(getattr(encoder, "batch_size", 8)))


def index_pages(
    encoder: Encoder, index: PageIndex, sources: Iterable[tuple[str, str, Iterable[Any]]]
) -> AddReport:
    """Embed and commit pages already in memory (a dataset's images), source by source.

    Args:
        encoder: The encoder the index was built with.
        index: The open index directory.
        sources: (path, digest, pages) for each source: the name hits will show, a digest of its
            content (a source whose digest is indexed is skipped) and its `ingest.Page` records.

    Returns:
        What was added, skipped and failed.
    """
    run = _Run(encoder, index, _batch_size(encoder))
    skipped: list[str] = []
    for path, digest, pages in sources:
        if index.has_source(digest):
            skipped.append(path)
            continue
        src = _Source(path, digest)
        run.open_sources.append(src)
        for page in pages:
            run.push(src, page)
        src.rendered = True
        run.commit_ready()
    run.flush()
    return AddReport(tuple(run.added), run.pages, tuple(skipped), tuple(run.failures))
