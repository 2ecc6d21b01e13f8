"""bench/single.py's project engines: real index directories built and searched as `dse index` / `dse search` do.

Each engine is an index directory (`Retriever.create(dir, encoder, image_size=0, engine=...)`,
what `dse index [--hnsw | --engine-mode binary|int8 [--n-lists N]]` passes), filled by
`PageIndex.add_sources` in groups of whole documents of at least `COMMIT_PAGES` pages (one
transaction and one shard each, as `dse.retrieve.run.IndexRun` commits: bench/late_index.py's
`commit`). Queries go through `Retriever.search` with an encoder whose `encode_queries` returns
the bench's query vectors (query encoding excluded by construction).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dse.encoders.base import Encoder

import late_index  # noqa: E402 - bench/ is on sys.path (bench/single.py puts it there)


class SingleVectorEncoder(Encoder):
    """A single-vector encoder whose queries are "q<j>" and encode to row j of the given array."""

    name = "bench-vectors"
    kind = "single"

    def __init__(self, queries: np.ndarray) -> None:
        self.queries = np.asarray(queries, np.float32)  # (nq, dim)

    @property
    def dim(self) -> int:
        return int(self.queries.shape[1])

    @property
    def model_id(self) -> str:
        return "bench/synthetic-vectors"

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.queries[[int(q[1:]) for q in queries]]  # (n, dim)

    def encode_pages(self, pages: Sequence[Any]) -> Any:
        raise NotImplementedError("bench vectors are committed directly")


def label(options: dict[str, Any]) -> str:
    """A short name of engine options: flat, hnsw, binary, binary-ivf1024, int8-ivf1024."""
    if options.get("hnsw"):
        return "hnsw"
    mode = options.get("mode", "flat")
    return mode + (f"-ivf{options['n_lists']}" if options.get("n_lists") else "")


def create(directory: Path, queries: np.ndarray, options: dict[str, Any]) -> Any:
    from dse.retrieve.retriever import Retriever

    return Retriever.create(directory, SingleVectorEncoder(queries), image_size=0, engine=options)


def commit(retriever: Any, first: int, pages: np.ndarray, doc_starts: np.ndarray) -> float:
    """Commit pages [first, first + len(pages)) as one group of whole documents; seconds taken."""
    return late_index.commit(retriever, first, pages, doc_starts)


def open_index(directory: Path, queries: np.ndarray) -> Any:
    from dse.retrieve.retriever import Retriever

    return Retriever.open(directory, SingleVectorEncoder(queries))


def search_rows(retriever: Any, j: int, k: int = 10) -> np.ndarray:
    """Rows of query j's hits through `Retriever.search` (padded with -1)."""
    return late_index.search_rows(retriever, j, k)


def resident_bytes(engine: Any) -> int:
    """Bytes an opened engine keeps in memory (not memory-mapped): codes, lists, centroids, graph."""
    if hasattr(engine, "_codes_resident"):  # QuantizedFlatEngine: codes, plus the list layout with lists
        res = engine._codes_resident()
        extra = [] if res.layout is None else [res.layout.items, res.layout.offsets, res.labels, engine.centroids]
        return sum(c.nbytes for c in res.codes) + sum(a.nbytes for a in extra + list(engine._lists.labels))
    if getattr(engine, "hnsw", False):  # FlatEngine with hnsw: FAISS's graph holds its own float32 copy
        import faiss

        return int(faiss.serialize_index(engine._graph()).nbytes)
    return 0  # exact FlatEngine: memory-mapped shards only


def disk_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in (directory / "vectors").rglob("*") if f.is_file())


def padded(rows: np.ndarray, k: int = 10) -> np.ndarray:
    """`rows` (m <= k,) padded with -1 to k (an engine returns fewer rows when its probed lists hold fewer)."""
    return np.concatenate([np.asarray(rows, np.int64)[:k], np.full(max(0, k - len(rows)), -1, np.int64)])


def timed(fn, n: int) -> tuple[float, float, np.ndarray, float]:  # noqa: ANN001
    """p50 / p95 ms of fn(j) for j < n (one query per call, after one warm-up call), its rows, CPU ms p50."""
    fn(0)
    times, rows, cpu = [], [], []
    for j in range(n):
        t, c = time.perf_counter(), time.process_time()
        rows.append(fn(j))
        times.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95)), np.stack(rows), float(np.median(cpu))


def describe(options: dict[str, Any], engine: Any) -> str:
    return f"{label(options)} {json.dumps(engine.options())}"
