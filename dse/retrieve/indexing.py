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
from typing import Any, Iterable

from dse.encoders.base import Encoder
from dse.indexes.catalogue import NewPage
from dse.indexes.store import PageIndex
from dse.retrieve.results import AddReport, Failure

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

    def push(self, source: _Source, page: Any) -> None:
        """Queue one rendered page for encoding."""
        stored = self.index.store_image(page.page_id, page.image)
        source.pages.append(NewPage(page.page_id, page.page, page.text, stored, dict(page.metadata)))
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
) -> AddReport:
    """Render, embed and commit every file under `sources`; one bad file never stops the rest.

    Args:
        encoder: The encoder the index was built with.
        index: The open index directory.
        sources: Files and folders (folders are walked recursively).
        dpi: Rendering resolution for PDFs (None: ingest's default).
        password: Password for encrypted PDFs.
        progress: Show a progress bar on stderr.

    Returns:
        What was added, skipped and failed.
    """
    import ingest

    batch = TEXT_BATCH if encoder.input == "text" else max(1, int(getattr(encoder, "batch_size", 8)))
    run = _Run(encoder, index, batch)
    files: list[Path] = []
    for source in sources:
        try:
            files.extend(ingest.discover([source]))
        except ingest.IngestError as exc:
            run.failures.append(Failure(str(source), str(exc)))
    skipped: list[str] = []
    seen: set[str] = set()
    render_options: dict[str, Any] = {"password": password}
    if dpi is not None:
        render_options["dpi"] = dpi
    bar = _progress_bar(len(files), progress)
    for file in files:
        path = str(file)
        try:
            digest = ingest.file_digest(file)
        except (OSError, ingest.IngestError) as exc:
            run.failures.append(Failure(path, f"{path}: cannot be read: {exc}"))
            bar.update(1)
            continue
        if digest in seen or index.has_source(digest):
            skipped.append(path)
            bar.update(1)
            continue
        seen.add(digest)
        src = _Source(path, digest)
        run.open_sources.append(src)
        try:
            for page in ingest.render(file, **render_options):
                run.push(src, page)
        except ingest.IngestError as exc:
            run.fail(src, str(exc))
        except Exception as exc:  # noqa: BLE001 - an unexpected renderer crash still names the file
            run.fail(src, f"{path}: {type(exc).__name__}: {exc}")
        src.rendered = True
        run.commit_ready()
        bar.update(1)
        bar.set_postfix(pages=run.pages + len(run.buffer), failed=len(run.failures))
    run.flush()
    bar.set_postfix(pages=run.pages, failed=len(run.failures))
    bar.close()
    return AddReport(tuple(run.added), run.pages, tuple(skipped), tuple(run.failures))


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    # disable=None: shown on a terminal only, so logs and CI output stay clean
    return tqdm(total=total, unit="file", desc="indexing", disable=None if enabled else True, dynamic_ncols=True)
