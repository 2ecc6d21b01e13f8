"""What the server shares across requests: one retriever, the query batcher, jobs and the refresher.

Every request thread uses the same `Retriever` (its index is safe to share: searches read an
immutable committed view, writes publish a new one). A background thread refreshes the view
every `refresh_interval` seconds, so what a `dse index` process beside the server commits is
searchable within a second, without a restart; only the new shards are read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dse.serve.lru import LruCache
from dse.serve.problems import ApiError
from dse.serve.snippets.sources import SnippetTexts

logger = logging.getLogger(__name__)

T = TypeVar("T")
UPLOADS_DIR = "uploads"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one server.

    Attributes:
        index: The index directory.
        token: Bearer token that writes need (None: writes are refused).
        max_upload_bytes: Largest request body of an upload.
        max_k: Largest `k` a search may ask for.
        max_query_chars: Longest query accepted.
        max_batch_queries: Most queries in one search request.
        batch_queries: Visual queries encoded together at most (micro-batching).
        batch_wait_ms: How long the first query of a batch waits for more.
        query_cache: Query embeddings kept in the LRU cache.
        map_cache: Similarity maps (page, query) kept in the LRU cache.
        max_searches: Searches scored at once; more wait their turn (0: one at a time). Visual
            queries are encoded before, in shared batches.
        search_threads: Threads that run search requests (scoring, snippets, the answer's JSON);
            more requests wait for one on the event loop.
        refresh_interval: Seconds between checks for commits made elsewhere.
        allow_private: URLs submitted for indexing may reach loopback / private addresses.
        runtime: Encoder options that do not change the vectors (device, batch_size, dtype).
        rerank: Multi-vector encoders offered as rerankers (`"rerank": NAME` in a search).
        rewrite: Query rewriters offered (`"rewrite": NAME` in a search), built at start.
        rewrite_options: Their options (`dse.rewrite.load_rewriters`: each goes to the rewriters
            that take it), e.g. (("model", "/models/qwen2.5-0.5b-instruct"),).
        model: The weights the index was built with, at another path or named to confirm them.
        allow_index_model: Load the hub model the manifest names without it being named.
        preload: Load a visual index's encoder when the server starts (in the background)
            rather than at the first visual query.
        encoder_threads: Threads torch may use to encode queries (None: its default, one per
            core). One by default: a batch of short queries gains little from more, and torch's
            OpenMP team, spinning beside the scoring's own thread pool (numba, FAISS), made
            multi-vector searches several times slower on 2 busy cores.
    """

    index: Path
    token: str | None = None
    max_upload_bytes: int = 200 * 1024 * 1024
    max_k: int = 100
    max_query_chars: int = 2000
    max_batch_queries: int = 64
    batch_queries: int = 16
    batch_wait_ms: float = 5.0
    query_cache: int = 1024
    map_cache: int = 32
    max_searches: int = 0
    search_threads: int = 2
    refresh_interval: float = 0.25
    allow_private: bool = False
    runtime: tuple[tuple[str, Any], ...] = ()
    rerank: tuple[str, ...] = ()
    rewrite: tuple[str, ...] = ()
    rewrite_options: tuple[tuple[str, Any], ...] = ()
    preload: bool = True
    model: str | None = None
    allow_index_model: bool = False
    encoder_threads: int | None = 1


def check_page_id(page_id: str) -> str:
    """The page id if it has the id format (so no path is ever built from request text), else 422."""
    from ingest.page import is_page_id

    if not is_page_id(page_id):
        raise ApiError(422, f"{page_id!r} is not a page id (16 hex digits, '-p', the page number: "
                            "'3f2a9c0d1e2b4a5c-p00007')")
    return page_id


def safe_filename(name: str) -> str:
    """A file name from an upload, reduced to its last component and plain characters."""
    base = re.split(r"[\\/]", name or "")[-1].strip().strip(".")
    base = _SAFE_NAME.sub("_", base)[:120].strip(" ")
    return base or "upload"


class Service:
    """The shared state of `dse serve`.

    Args:
        config: The server's settings.
    """

    def __init__(self, config: ServeConfig) -> None:
        from dse.retrieve.retriever import Retriever
        from dse.serve.batching import QueryBatcher
        from dse.serve.jobs import JobQueue

        self.config = config
        self.rewriters = _rewriters(config)  # first: a rewriter that does not load fails before any thread starts
        chosen = {"model": config.model} if config.model else {}
        if config.allow_index_model:
            chosen["allow_index_model"] = True
        self.retriever = Retriever.open(config.index, **dict(config.runtime), **chosen)
        self.index = self.retriever.index
        self.batcher = QueryBatcher(self._encode, config.batch_queries, config.batch_wait_ms, config.query_cache)
        self.retriever.query_encoder = self.batcher
        self.jobs = JobQueue(self.retriever.add, allow_private=config.allow_private, pages_of=_pages_of)
        self.uploads = Path(config.index) / UPLOADS_DIR
        runtime = {k: v for k, v in config.runtime if k != "trust_remote_code"}  # the index's model only
        self.rerankers = {name: _reranker(name, runtime) for name in config.rerank}
        self.texts = SnippetTexts(self.index)  # page texts and word forms, kept for the pages shown most
        # (page_id, query tokens) -> Snippet; the texts of a search's pages are read together
        self.snippets = self.texts.cache()
        self.similarity_maps = LruCache(config.map_cache)  # (page_id, query) -> (token maps, image size)
        # one search at a time by default: each is parallel inside (BLAS, FAISS, numba) where it
        # can be, and concurrent searches only fight over the GIL (2 cores, BM25, 8 threads sharing
        # a Retriever: 219 searches/s at once, 477 one at a time)
        self.search_slots = threading.BoundedSemaphore(config.max_searches or 1)
        if config.search_threads < 1:
            raise ValueError(f"search_threads must be >= 1, got {config.search_threads}")
        self._search_limiter: Any = None  # anyio.CapacityLimiter(search_threads), made in the event loop
        self._stop = threading.Event()
        self._threads_set = False
        self._file_checks: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256
        self._refresher = threading.Thread(target=self._refresh_loop, name="dse-refresh", daemon=True)
        self._refresher.start()
        if config.preload and self.index.manifest.kind != "text":
            threading.Thread(target=self._preload, name="dse-preload", daemon=True).start()

    async def run_search(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on one of the `search_threads` threads (awaited on the event loop)."""
        import anyio

        if self._search_limiter is None:
            self._search_limiter = anyio.CapacityLimiter(self.config.search_threads)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._search_limiter)

    def _preload(self) -> None:
        """Load the index's encoder now, so the first visual query does not wait for the model."""
        try:
            self._encoder()
        except Exception:  # noqa: BLE001 - a search reports the error to its user (503)
            logger.exception("loading the encoder of %s", self.config.index)

    def _encoder(self) -> Any:
        """The index's encoder (loaded once; a request arriving meanwhile waits for it), torch's threads set."""
        encoder = self.retriever.encoder
        if not self._threads_set and self.config.encoder_threads is not None:
            import torch

            torch.set_num_threads(self.config.encoder_threads)  # the process's intra-op pool
            self._threads_set = True
        return encoder

    def _encode(self, queries: list[str]) -> Any:
        return self._encoder().encode_queries(queries)

    def close(self) -> None:
        """Stop the background threads and release the index."""
        self._stop.set()
        self._refresher.join(timeout=5)
        self.jobs.close()
        self.batcher.close()
        self.retriever.close()

    # ------------------------------------------------------------------ freshness
    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.config.refresh_interval):
            try:
                self.retriever.refresh()
            except Exception:  # noqa: BLE001 - keep serving the last good view
                logger.exception("refreshing %s", self.config.index)

    # ------------------------------------------------------------------ auth
    def check_token(self, authorization: str | None) -> None:
        """Allow a write, or raise 403 (no token configured) / 401 (missing or wrong token)."""
        import hmac

        if not self.config.token:
            raise ApiError(403, "this server is read-only: start it with --token-file FILE to allow writes")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.config.token.encode()):
            raise ApiError(401, "writes need the header 'Authorization: Bearer TOKEN' with the server's token",
                           headers={"WWW-Authenticate": "Bearer"})

    # ------------------------------------------------------------------ uploads
    def new_upload(self) -> tuple[int, str]:
        """A temporary file for an upload's bytes, inside the uploads folder: (fd, path)."""
        self.uploads.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=".upload-", dir=self.uploads)

    def keep_upload(self, tmp: str, name: str) -> str:
        """Move an upload's temporary file to `uploads/<digest>/<name>`; returns its absolute path."""
        digest = _sha256(Path(tmp))
        folder = self.uploads / digest[:16]
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / safe_filename(name)
        os.replace(tmp, target)
        return str(target.resolve())

    def drop_unindexed(self, paths: list[str]) -> None:
        """Remove uploaded files that no live source records (failed, or bytes indexed elsewhere)."""
        for path in paths:
            if self.index.source_digest(path) is None:
                Path(path).unlink(missing_ok=True)
                try:
                    Path(path).parent.rmdir()
                except OSError:
                    pass

    # ------------------------------------------------------------------ sources
    def source_file(self, source: str) -> Path:
        """The original file of a live local source, if its bytes still match the indexed digest.

        The digest check means only a file whose exact bytes were indexed is ever served, whatever
        a catalogue copied from elsewhere says its path is.
        """
        digest = self.index.source_digest(source)
        if digest is None:
            raise ApiError(404, f"no source {source!r} in this index")
        path = Path(source)
        try:
            st = path.stat()
        except OSError:
            raise ApiError(404, f"{source}: the file is no longer there") from None
        if not path.is_file():
            raise ApiError(404, f"{source}: not a file")
        key = (str(path), st.st_size, st.st_mtime_ns)
        found = self._file_checks.get(key)
        if found is None:
            found = _sha256(path)
            self._file_checks[key] = found
        if found != digest:
            raise ApiError(404, f"{source}: the file changed since it was indexed")
        return path


def _reranker(name: str, runtime: dict[str, Any]) -> Any:
    """A MaxSim reranker with the registered encoder `name` (loaded now, so errors show at start)."""
    from dse.encoders.registry import load_encoder
    from dse.retrieve.rerank import MaxSimReranker

    return MaxSimReranker(load_encoder(name, **runtime))


def _rewriters(config: ServeConfig) -> dict[str, Any]:
    """The query rewriters offered, built now (a model that does not load fails the start, named)."""
    from dse.rewrite import load_rewriters

    return load_rewriters(list(config.rewrite), dict(config.rewrite_options)) if config.rewrite else {}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _pages_of(target: str) -> int | None:
    """Expected pages of a job's target: a PDF's page count, 1 for an image, else unknown."""
    suffix = Path(target).suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"):
        return 1
    if suffix != ".pdf":
        return None
    try:
        from pdf2image import pdfinfo_from_path

        return int(pdfinfo_from_path(target, timeout=10)["Pages"])
    except Exception:  # noqa: BLE001 - unknown until rendered (the job reports the real error)
        return None


def remove_tree(path: Path) -> None:
    """Remove a folder, ignoring what is already gone."""
    shutil.rmtree(path, ignore_errors=True)
