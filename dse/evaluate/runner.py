"""The evaluation runner: index a test set's corpus with an encoder, run its queries, score them."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import itertools
import logging
import os
import platform
import random
import re
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from dse.encoders.base import Encoder
from dse.evaluate.corpus import CorpusPage, EvalDataset, FileCorpus, PageCorpus
from dse.evaluate.metrics import METRICS, mean_scores, per_query_scores
from dse.evaluate.report import SCOPES, DatasetScores, EvalResult
from dse.retrieve.results import Hit
from dse.retrieve.retriever import Retriever

if TYPE_CHECKING:
    from ingest.ocr import OcrOptions

logger = logging.getLogger(__name__)

CHUNK_PAGES = 128  # dataset pages committed together as one index source
QUERY_BATCH = 64  # queries searched at once


def evaluate(
    datasets: EvalDataset | Sequence[EvalDataset],
    encoder: str | Encoder,
    *,
    model: str | None = None,
    index_dir: str | Path | None = None,
    k: int = 100,
    mode: str | None = None,
    scopes: Sequence[str] = SCOPES,
    metrics: Sequence[str] = METRICS,
    dpi: int | None = None,
    progress: bool = False,
    search_options: Mapping[str, Any] | None = None,
    backend: str = "directory",
    backend_options: Mapping[str, Any] | None = None,
    ocr: str | OcrOptions | None = None,
    **encoder_options: Any,
) -> EvalResult:
    """Index each dataset's corpus with `encoder`, run its queries and score the rankings.

    Args:
        datasets: One test set or several (`load_dataset`, `load_vidore`, `load_local`).
        encoder: A registry name ("bm25", "tiny-dse", "colqwen2", ...) or an `Encoder`.
        model: With a registry name: the checkpoint (hub id or local directory).
        index_dir: Keep the indexes in `index_dir/<dataset name>` (re-running reuses them and
            indexes only what is missing); None: a temporary directory, deleted afterwards.
        k: Pages retrieved per query (the run's depth).
        mode: "visual", "text" or "hybrid", passed to `Retriever.search_many` when it takes a
            mode (None: the retriever's default).
        scopes: "corpus" ranks every page; "document" ranks only the pages of the question's
            own document (sets whose questions name a document, e.g. local sets).
        metrics: Metric names (default `METRICS`).
        dpi: Rendering resolution of PDF corpora (None: ingest's default).
        progress: Show a progress bar while indexing files (on a terminal).
        search_options: Further `Retriever.search_many` options, e.g. {"fusion": "weighted",
            "weight": 0.3} with mode="hybrid" (recorded in the result's configuration).
        backend: The backend of new indexes ("directory" or "qdrant"; a kept index is opened
            with the backend its manifest names).
        backend_options: Options of new indexes: with backend="qdrant", {"qdrant": URL, path or
            "edge:PATH", ...} (`QdrantIndex.create`); the collection defaults to the dataset's
            slug.
        ocr: OCR of file corpora's pages without a text layer: "auto", "always", "never" or an
            `ingest.OcrOptions` (None: ingest's default, "auto"); a kept index keeps the text it
            was built with.
        **encoder_options: With a registry name: options such as device, batch_size, dim.

    Returns:
        The figures per dataset and scope, with the configuration that produced them.
    """
    from dse import __version__
    from dse.encoders.registry import load_encoder

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    bad = [s for s in scopes if s not in SCOPES]
    if bad:
        raise ValueError(f"unknown scope(s) {bad}; use {list(SCOPES)}")
    if mode is not None and "mode" not in inspect.signature(Retriever.search_many).parameters:
        raise ValueError("this version of dse has no search modes; leave mode unset")
    sets = [datasets] if isinstance(datasets, EvalDataset) else list(datasets)
    if isinstance(encoder, str):
        encoder = load_encoder(encoder, model=model, **encoder_options)
    scores: list[DatasetScores] = []
    for dataset in sets:
        store = (backend, dict(backend_options or {}))
        scores.extend(_evaluate_one(dataset, encoder, index_dir, k, mode, scopes, metrics, dpi, progress,
                                    dict(search_options or {}), store, ocr))
    config = {
        "encoder": encoder.describe(), "k": k, "mode": mode, "search_options": _recorded(search_options),
        "scopes": list(scopes), "dpi": dpi,
        "ocr": dataclasses.asdict(ocr) if dataclasses.is_dataclass(ocr) else ocr,
        "index_dir": str(index_dir) if index_dir else None, "backend": backend, "datasets": [d.describe() for d in sets],
        "dse_version": __version__, "machine": _machine(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return EvalResult(config, tuple(scores))


def _recorded(search_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The search options as the result records them: a rewriter object by its `describe()`."""
    out = dict(search_options or {})
    rewrite = out.get("rewrite")
    if rewrite is not None and not isinstance(rewrite, str) and hasattr(rewrite, "describe"):
        out["rewrite"] = rewrite.describe()
    return out


def _evaluate_one(
    dataset: EvalDataset, encoder: Encoder, index_dir: str | Path | None, k: int, mode: str | None,
    scopes: Sequence[str], metrics: Sequence[str], dpi: int | None, progress: bool,
    search_options: Mapping[str, Any] | None = None,
    store: tuple[str, dict[str, Any]] = ("directory", {}),
    ocr: str | OcrOptions | None = None,
) -> list[DatasetScores]:
    with tempfile.TemporaryDirectory(prefix="dse-eval-") as tmp:
        name = _slug(dataset.corpus_name or dataset.name)
        directory = Path(index_dir) / name if index_dir else Path(tmp) / "index"
        backend, options = store
        if backend != "directory":
            options = {"collection": name, **options}
        retriever = _open_or_create(directory, encoder, index_dir is not None, backend, options)
        with retriever:
            started = time.perf_counter()
            failures, ocr_info = _index(dataset, retriever, dpi, progress, ocr)
            if len(retriever) == 0:
                raise ValueError(f"{dataset.name}: no page could be indexed"
                                 + (f"; first failure: {failures[0]}" if failures else " (empty corpus)"))
            indexed = time.perf_counter()
            runs = _search(dataset, retriever, k, mode, [s for s in scopes if _has_scope(dataset, s)],
                           search_options or {})
            info = {**dataset.describe(), "pages_indexed": len(retriever), "failures": failures,
                    "encoder_options": retriever.encoder.options(),  # as the index records (`Encoder.for_index`)
                    "index_seconds": round(indexed - started, 2), **ocr_info,
                    "search_seconds": round(time.perf_counter() - indexed, 2)}
    out = []
    for scope, run in runs.items():
        per_query = per_query_scores(dataset.qrels, run, metrics)
        out.append(DatasetScores(dataset.name, scope, mean_scores(per_query, metrics), per_query, info))
    return out


def _has_scope(dataset: EvalDataset, scope: str) -> bool:
    return scope == "corpus" or bool(dataset.query_documents)


def _open_or_create(directory: Path, encoder: Encoder, store_images: bool, backend: str = "directory",
                    options: Mapping[str, Any] | None = None) -> Retriever:
    from dse.backends import DEFAULT_IMAGE_SIZE
    from dse.backends import index_exists

    if index_exists(directory):
        return Retriever.open(directory, encoder)
    return Retriever.create(directory, encoder, image_size=DEFAULT_IMAGE_SIZE if store_images else 0,
                            engine=options or None, backend=backend)


def _index(
    dataset: EvalDataset, retriever: Retriever, dpi: int | None, progress: bool, ocr: str | OcrOptions | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """Add the corpus to the index (what is there already is skipped); its failure messages, and
    for a file corpus what OCR did in this run (pages, seconds, warnings)."""
    from dse.retrieve.indexing import index_pages

    corpus = dataset.corpus
    if isinstance(corpus, FileCorpus):
        report = retriever.add([corpus.root / f for f in corpus.files], dpi=dpi, progress=progress, ocr=ocr)
        ocr_info = {"ocr_pages": report.ocr_pages, "ocr_seconds": report.ocr_seconds,
                    "ocr_warnings": [w.error for w in report.warnings]}
    else:
        report, ocr_info = index_pages(retriever.encoder, retriever.index, _page_sources(dataset.name, corpus)), {}
    for failure in report.failures:
        logger.warning("%s", failure.error)
    return [f.error for f in report.failures], ocr_info


def _page_sources(name: str, corpus: PageCorpus) -> Iterator[tuple[str, str, Iterator[Any]]]:
    """(path, digest, pages) per chunk of `CHUNK_PAGES` dataset pages, streamed."""
    pages = corpus.pages()
    for start in range(0, corpus.size, CHUNK_PAGES):
        chunk = itertools.islice(pages, CHUNK_PAGES)
        end = min(start + CHUNK_PAGES, corpus.size)
        digest = hashlib.sha256(f"{corpus.fingerprint}:{start}:{end}".encode()).hexdigest()
        path = f"{name}[{start}:{end}]"
        yield path, digest, (_page(p, path, digest, n) for n, p in enumerate(chunk, 1))
        for _ in chunk:  # a chunk already indexed was skipped: move past its pages
            pass


def _page(page: CorpusPage, source: str, digest: str, number: int) -> Any:
    from ingest.images import to_rgb
    from ingest.page import Page, make_page_id

    image = to_rgb(page.image)
    metadata = {"kind": "dataset", "doc_id": page.doc_id, "document": page.document,
                "width": image.width, "height": image.height}
    return Page(make_page_id(digest, number), source, number, image, page.text, digest, metadata)


def _search(
    dataset: EvalDataset, retriever: Retriever, k: int, mode: str | None, scopes: Sequence[str],
    search_options: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """{scope: run}; a run maps query id -> {doc id: score}.

    Every ranking is `min(k, pages in scope)` long, whatever the mode: BM25 returns only pages
    that share a word with the query, so its list is padded with the other pages, scored below
    every match, in a pseudo-random order seeded by the query id (see `_pad`). Without it a text
    ranking would be shorter than a visual or hybrid one (which rank every page), and the longer
    list's extra pages, even random ones, would look like a gain. The padding is random rather
    than in page order because page order is itself a ranking (on mmlongbench-dev, a worse one
    than chance within a document), which would favour whichever side does not use it.
    """
    qids = [q for q in dataset.queries if q in dataset.qrels]
    depth = max(k, len(retriever)) if "document" in scopes else k  # a document's pages may rank low
    doc_id, document = _namers(dataset)
    runs: dict[str, dict[str, dict[str, float]]] = {scope: {} for scope in scopes}
    options = {**(search_options or {}), **({"mode": mode} if mode is not None else {})}
    text = retriever._mode(mode) == "text"
    pages = _pages_in_order(retriever) if text else []
    for start in range(0, len(qids), QUERY_BATCH):
        batch = qids[start : start + QUERY_BATCH]
        results = retriever.search_many([dataset.queries[q] for q in batch], depth, **options)
        for qid, hits in zip(batch, results):
            if text:
                hits = _pad(hits, pages, depth, qid)
            if "corpus" in runs:
                runs["corpus"][qid] = _run_row(hits[:k], doc_id)
            if "document" in runs:
                own = dataset.query_documents.get(qid)
                runs["document"][qid] = _run_row([h for h in hits if document(h) == own][:k], doc_id)
    return runs


def _pages_in_order(retriever: Retriever) -> list[Hit]:
    """Every live page as a zero-score hit, in index order (sources as added, pages in order)."""
    records = retriever.index.live_pages()  # any backend (IndexBackend), in commit order
    return [Hit(r.page_id, r.source, r.page, 0.0, 0, r.metadata) for r in records]


def _pad(hits: Sequence[Hit], pages: Sequence[Hit], depth: int, seed: str) -> list[Hit]:
    """`hits` followed by the other `pages` in a pseudo-random order seeded by `seed`, up to `depth` hits.

    The order depends only on `seed` (a query id) and `pages`, so every run pads alike. The
    padding's scores are -1, -2, ... (BM25 scores of matches are > 0), so every metric,
    trec_eval's tie-breaking included, ranks the padding after the matches and in this order.
    """
    out = list(hits[:depth])
    seen = {h.page_id for h in out}
    extra = [p for p in pages if p.page_id not in seen]
    random.Random(f"dse-eval-pad:{seed}").shuffle(extra)  # a str seed is hashed with SHA-512: stable
    for i, page in enumerate(extra[: max(0, depth - len(out))], start=1):
        out.append(dataclasses.replace(page, score=-float(i), rank=len(out) + 1))
    return out


def _run_row(hits: Sequence[Hit], doc_id: Callable[[Hit], str]) -> dict[str, float]:
    row: dict[str, float] = {}
    for hit in hits:
        key = doc_id(hit)
        row[key] = max(row.get(key, hit.score), hit.score)
    return row


def _namers(dataset: EvalDataset) -> tuple[Callable[[Hit], str], Callable[[Hit], str]]:
    """(doc id of a hit, document of a hit) for the dataset's corpus."""
    corpus = dataset.corpus
    if isinstance(corpus, FileCorpus):
        documents: dict[str, str] = {}

        def document(hit: Hit) -> str:
            if hit.source not in documents:
                documents[hit.source] = corpus.document(hit.source)
            return documents[hit.source]

        return (lambda hit: f"{document(hit)}#{hit.page}"), document
    return (lambda hit: str(hit.metadata["doc_id"])), (lambda hit: str(hit.metadata.get("document", "")))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "dataset"


def _machine() -> Mapping[str, Any]:
    return {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version()}
