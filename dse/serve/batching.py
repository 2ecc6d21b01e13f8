"""Micro-batching and caching of query embeddings, for many users searching at once.

A visual query costs one encoder forward pass. On a GPU a batch of 16 queries costs about what
one does, so queries that arrive together (within `max_wait_ms` of the first) are encoded in one
batch by one worker thread; threads wait for their own rows. The first query waits for others
only while more are on the way: the server announces its searches (`expecting`), so a query
alone is encoded at once. Embeddings are kept in an LRU cache
keyed by the query text, so a repeated query (a shared link, a refreshed page) is not encoded
again. The encoder runs in one thread only, which also keeps torch from oversubscribing cores.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from dse.serve.lru import LruCache


class QueryBatcher:
    """Encodes queries in shared batches, with an LRU cache; a drop-in `encode_queries`.

    Args:
        encode: The encoder's `encode_queries` (list[str] -> float32 (n, dim), or a list of
            (tokens_i, dim) arrays).
        max_batch: Queries encoded together at most.
        max_wait_ms: How long the first query of a batch waits for others.
        cache_size: Query embeddings kept (0: no cache).
    """

    def __init__(
        self, encode: Callable[[list[str]], Any], max_batch: int = 16, max_wait_ms: float = 5.0, cache_size: int = 1024
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0 or cache_size < 0:
            raise ValueError(f"need max_batch >= 1, max_wait_ms >= 0, cache_size >= 0; got {max_batch}, "
                             f"{max_wait_ms}, {cache_size}")
        self._encode = encode
        self.max_batch, self.max_wait, self.cache_size = int(max_batch), max_wait_ms / 1000.0, int(cache_size)
        self._cache = LruCache(self.cache_size)
        self._hits_lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, Future] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._expected = 0  # queries of the searches under way (`expecting`), submitted or not yet
        self._expected_lock = threading.Lock()
        self.batches = 0  # encoder calls made (for tests and the bench)
        self.encoded = 0  # queries encoded
        self.hits = 0  # cache hits

    def __call__(self, queries: Sequence[str]) -> Any:
        """Embeddings of `queries`, in the encoder's output format."""
        queries = list(queries)
        rows: list[Any] = [self._cached(q) for q in queries]
        waiting = {i: self._submit(q) for i, q in enumerate(queries) if rows[i] is None}
        for i, future in waiting.items():
            rows[i] = future.result()
        if rows and all(isinstance(r, np.ndarray) and r.ndim == 1 for r in rows):
            return np.stack(rows)  # (n, dim): a single-vector encoder
        return rows  # list of (tokens_i, dim): a multi-vector encoder

    @contextlib.contextmanager
    def expecting(self, n: int) -> Iterator[None]:
        """Announce `n` queries coming from one search: a batch waits for them, and for no others.

        Without announcements (callers that do not use this) the first query of a batch waits the
        full `max_wait_ms` for others, as before.
        """
        with self._expected_lock:
            self._expected += n
        try:
            yield
        finally:
            with self._expected_lock:
                self._expected -= n

    def close(self) -> None:
        """Stop the worker thread (queries still queued are answered first)."""
        self._closed = True
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=30)

    # ------------------------------------------------------------------ internals
    def _cached(self, query: str) -> Any:
        row = self._cache.get(query)
        if row is not None:
            with self._hits_lock:
                self.hits += 1
        return row

    def _remember(self, query: str, row: Any) -> None:
        self._cache.put(query, row)

    def _submit(self, query: str) -> Future:
        if self._closed:
            raise RuntimeError("the query batcher is closed")
        if self._worker is None:
            with self._start_lock:
                if self._worker is None:
                    self._worker = threading.Thread(target=self._run, name="dse-query-batcher", daemon=True)
                    self._worker.start()
        future: Future = Future()
        self._queue.put((query, future))
        return future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                if 0 < self._expected <= len(batch) and self._queue.empty():
                    break  # every query announced is here: nothing to wait for
                timeout = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=max(timeout, 0)) if timeout > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            self._encode_batch(batch)

    def _encode_batch(self, batch: list[tuple[str, Future]]) -> None:
        texts = list(dict.fromkeys(q for q, _ in batch))  # each distinct text once
        try:
            out = self._encode(texts)  # (n, dim) or list of (tokens_i, dim)
            rows = {q: (np.array(out[i]) if isinstance(out, np.ndarray) else out[i]) for i, q in enumerate(texts)}
        except BaseException as exc:  # noqa: BLE001 - every waiting request gets the error
            for _, future in batch:
                future.set_exception(exc)
            return
        self.batches += 1
        self.encoded += len(texts)
        for q, row in rows.items():
            self._remember(q, row)
        for q, future in batch:
            future.set_result(rows[q])
