"""One indexing run's state: pages waiting for the encoder, sources ready to commit, the report.

A source whose last page is encoded is *ready*; ready sources are committed together, in order,
in one transaction (one engine shard) once they hold `commit_pages` pages, and at the end of the
run. If a group's commit fails, its sources are committed one by one, so only a bad source fails.
The stored images of a source that fails, or that an interrupted run never committed, are removed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from dse.backends import IndexBackend, NewPage, NewSource
from dse.encoders.base import Encoder
from dse.retrieve.results import Failure
from dse.text.fields import text_and_fields

logger = logging.getLogger(__name__)

TEXT_BATCH = 256  # pages a text encoder tokenises at once
# Pages per commit (one engine shard each). 1024 = 4x the 256 pages from which a cascade shard
# trains its codebook and inverted lists, so every full group gets them; 100k pages make ~100
# shards, not one per document. The cost: a killed run redoes at most ~1024 pages, and the
# ready vectors wait in memory (multi-vector: ~1024 x 750 tokens x 128 x 4 B ~ 0.4 GB).
COMMIT_PAGES = 1024


@dataclass
class PendingSource:
    """A source being indexed: its pages (images stored), and their vectors as they are encoded."""

    path: str
    digest: str
    kind: str = ""
    pages: list[NewPage] = field(default_factory=list)
    vectors: list[Any] = field(default_factory=list)
    rendered: bool = False
    failed: bool = False
    replaces: bool = False  # an older version of this file is indexed: committing replaces it
    old_paths: tuple[str, ...] = ()  # other paths it is recorded under (older spellings), replaced too
    committed: bool = False
    ocr_errors: list[tuple[int, str]] = field(default_factory=list)  # (page, why OCR failed)


@dataclass
class IndexRun:
    """The state of one `index_sources` / `index_pages` call and what it reports."""

    encoder: Encoder
    index: IndexBackend
    batch: int
    commit_pages: int = COMMIT_PAGES
    buffer: list[tuple[PendingSource, Any]] = field(default_factory=list)  # (source, encoder input)
    open_sources: list[PendingSource] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    pages: int = 0
    failures: list[Failure] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)  # user metadata given to every page
    updated: list[str] = field(default_factory=list)
    ready: list[PendingSource] = field(default_factory=list)  # encoded, not yet committed, in order
    ready_pages: int = 0
    started: list[PendingSource] = field(default_factory=list)  # every source opened, in order
    warnings: list[Failure] = field(default_factory=list)  # sources whose OCR failed on some pages
    ocr_pages: int = 0
    ocr_seconds: float = 0.0
    textless: int = 0  # pages queued without a usable text layer, OCR text or not
    ingest: dict[str, Any] | None = None  # the settings recorded in the manifest before the first commit

    def start(self, source: PendingSource) -> None:
        """Open a source: its pages follow with `push`."""
        self.open_sources.append(source)
        self.started.append(source)

    def push(self, source: PendingSource, page: Any) -> None:
        """Queue one rendered page for encoding (dropped if its source already failed)."""
        if source.failed:
            return
        stored = self.index.store_image(page.page_id, page.image)
        meta = {**dict(page.metadata), **self.metadata}
        self._count_ocr(source, page, meta)
        source.pages.append(NewPage(page.page_id, page.page, page.text, stored, meta))
        source.kind = source.kind or str(page.metadata.get("kind", ""))
        if self.encoder.input == "text":  # BM25: the text layer, and its document's fields (dse.text.fields)
            item = text_and_fields(page.text, source.path, source.digest, page.page, meta, self.index.text_fields,
                                   self.encoder.tokenize)
        else:
            item = page.image
        self.buffer.append((source, item))
        if len(self.buffer) >= self.batch:
            self.flush()

    def _count_ocr(self, source: PendingSource, page: Any, meta: dict[str, Any]) -> None:
        """Count OCR pages, pages left without text, OCR time (`ingest.ocr`); note the pages whose OCR failed."""
        from ingest.ocr import usable_text

        self.ocr_seconds += float(getattr(page, "ocr_seconds", 0.0) or 0.0)
        if meta.get("text_source") == "ocr":
            self.ocr_pages += 1
        elif not usable_text(page.text):
            self.textless += 1
        if meta.get("ocr_error"):
            source.ocr_errors.append((page.page, str(meta["ocr_error"])))

    def flush(self) -> None:
        """Encode the buffered pages, then move the complete sources to the ready group."""
        if self.buffer:
            items = [item for _, item in self.buffer]
            owners = [src for src, _ in self.buffer]
            self.buffer = []
            text = self.encoder.input == "text"
            try:
                vectors = self.encoder.encode_pages([item[0] for item in items] if text else items)
                if text:  # the field tokens follow the text's
                    vectors = [list(vec) + item[1] for vec, item in zip(vectors, items)]
            except Exception as exc:  # noqa: BLE001 - reported per source, the batch goes on
                for src in dict.fromkeys(owners):
                    self.fail(src, f"{src.path}: encoding failed: {type(exc).__name__}: {exc}")
            else:
                for src, vec in zip(owners, vectors):
                    src.vectors.append(vec)
        self.commit_ready()

    def finish(self) -> None:
        """End of a run: encode what is buffered and commit every ready source."""
        self.flush()
        self.commit_group()

    def seen_pages(self) -> int:
        """Pages committed, ready to commit or waiting for the encoder (for the progress bar)."""
        return self.pages + self.ready_pages + len(self.buffer)

    def commit_ready(self) -> None:
        """Move the sources whose pages are all encoded to the ready group, in order; commit the
        group once it holds `commit_pages` pages."""
        while self.open_sources:
            src = self.open_sources[0]
            if src.failed:
                self.open_sources.pop(0)
                continue
            if not (src.rendered and len(src.vectors) == len(src.pages)):
                break
            self.open_sources.pop(0)
            if not src.pages:
                self.failures.append(Failure(src.path, f"{src.path}: no pages"))
                continue
            self.ready.append(src)
            self.ready_pages += len(src.pages)
            if self.ready_pages >= self.commit_pages:
                self.commit_group()

    def commit_group(self) -> None:
        """Commit the ready sources in one transaction; if that fails, one by one (only bad ones fail)."""
        group, self.ready, self.ready_pages = self.ready, [], 0
        if not group:
            return
        try:
            self._add(group)
        except Exception:  # noqa: BLE001 - retried source by source below, so the error is named
            if len(group) == 1:
                self._add_or_fail(group[0])
            else:
                logger.info("a group commit of %d sources failed; committing them one by one", len(group))
                for src in group:
                    self._add_or_fail(src)

    def _add_or_fail(self, src: PendingSource) -> None:
        try:
            self._add([src])
        except Exception as exc:  # noqa: BLE001
            self.fail(src, f"{src.path}: could not be committed: {type(exc).__name__}: {exc}")

    def _add(self, group: list[PendingSource]) -> None:
        """Commit `group` (one shard, one transaction) and count it in the report."""
        if self.ingest is not None:  # once, before the run's first commit
            self.index.record_ingest(self.ingest)
            self.ingest = None
        self.index.add_sources(
            [NewSource(src.path, src.digest, src.kind, tuple(src.pages), src.old_paths) for src in group],
            [stack_vectors(self.encoder, src.vectors) for src in group],
        )
        for src in group:
            src.committed = True
            self.added.append(src.path)
            self.pages += len(src.pages)
            if src.replaces:
                self.updated.append(src.path)
            if src.ocr_errors:
                self.warnings.append(Failure(src.path, ocr_warning(src.path, src.ocr_errors)))
                logger.warning("%s", self.warnings[-1].error)

    def fail(self, src: PendingSource, message: str) -> None:
        """Drop a source from the run and record why."""
        if not src.failed:
            src.failed = True
            self.failures.append(Failure(src.path, message))
            logger.warning("%s", message)
        self.buffer = [(s, item) for s, item in self.buffer if s is not src]
        self.index.discard_images([p.page_id for p in src.pages])

    def abandon(self) -> None:
        """An interrupted run: remove the stored images of every source it did not commit."""
        self.buffer, self.ready, self.open_sources = [], [], []
        lost = [p.page_id for src in self.started if not (src.committed or src.failed) for p in src.pages]
        self.index.discard_images(lost)


def ocr_warning(path: str, errors: list[tuple[int, str]]) -> str:
    """One line naming a source's pages whose OCR failed, grouped by reason."""
    reasons: dict[str, list[int]] = {}
    for number, reason in errors:
        reasons.setdefault(reason, []).append(number)
    parts = []
    for reason, numbers in reasons.items():
        shown = ", ".join(map(str, numbers[:10])) + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")
        parts.append(f"page{'s' if len(numbers) > 1 else ''} {shown}: {reason}")
    return f"{path}: OCR failed, those pages have no OCR text: {'; '.join(parts)}"


def stack_vectors(encoder: Encoder, vectors: list[Any]) -> Any:
    """One source's page vectors in the engine's input format."""
    if encoder.kind == "single":
        import numpy as np

        return np.stack(vectors).astype("float32")  # (pages, dim)
    return vectors
