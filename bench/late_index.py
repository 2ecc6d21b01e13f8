"""bench/late.py's cascade index: built and searched the way `dse index` / `dse search` do.

The index is a real index directory (`Retriever.create(..., engine={"mode": "cascade"})`, what
`dse index --engine-mode cascade` passes: float16 exact tier and the other defaults), filled by
`PageIndex.add_sources` in groups of whole documents of at least `COMMIT_PAGES` pages (one
transaction and one shard each, as `dse.retrieve.run.IndexRun` commits). Queries go through
`Retriever.search` with an encoder whose `encode_queries` returns the bench's query vectors
(query encoding is excluded by construction; everything after it is measured).

    python bench/late_index.py cold DIR QUERIES.npz   # fresh process, index files evicted from the page cache
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dse.encoders.base import Encoder


class VectorEncoder(Encoder):
    """An encoder whose queries are "q<j>" and encode to the j-th of the given token matrices."""

    name = "bench-vectors"
    kind = "multi"

    def __init__(self, queries: Sequence[np.ndarray], dim: int) -> None:
        self.queries, self._dim = list(queries), dim

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model_id(self) -> str:
        return "bench/synthetic-vectors"

    def encode_queries(self, queries: Sequence[str]) -> list[np.ndarray]:
        return [self.queries[int(q[1:])] for q in queries]

    def encode_pages(self, pages: Sequence[Any]) -> Any:
        raise NotImplementedError("bench vectors are committed directly")


def page_id(i: int) -> str:
    return f"{hashlib.sha256(str(i).encode()).hexdigest()[:16]}-p{i:07d}"


def row_of(pid: str) -> int:
    return int(pid.rsplit("-p", 1)[1])


def create(directory: Path, queries: Sequence[np.ndarray], dim: int, engine: dict[str, Any]) -> Any:
    from dse.retrieve.retriever import Retriever

    return Retriever.create(directory, VectorEncoder(queries, dim), image_size=0, engine={"mode": "cascade", **engine})


def commit(retriever: Any, first: int, pages: list[np.ndarray], doc_starts: np.ndarray) -> float:
    """Commit pages [first, first + len(pages)) as one group of sources (whole documents); seconds taken."""
    from dse.backends.records import NewPage, NewSource

    stop = first + len(pages)
    bounds = [first, *[int(b) for b in doc_starts if first < b < stop], stop]
    sources, vectors = [], []
    for a, b in zip(bounds[:-1], bounds[1:]):
        new = tuple(NewPage(page_id(i), i - a + 1, "", None, {}) for i in range(a, b))
        sources.append(NewSource(f"doc-{a:07d}.pdf", hashlib.sha256(f"doc{a}".encode()).hexdigest(), "pdf", new))
        vectors.append(pages[a - first : b - first])
    t = time.perf_counter()
    retriever.index.add_sources(sources, vectors)
    return time.perf_counter() - t


def open_engine(directory: Path, queries: Sequence[np.ndarray], dim: int) -> Any:
    """The cascade engine of the index at `directory`, opened as `Retriever.open` opens it."""
    from dse.retrieve.retriever import Retriever

    return Retriever.open(directory, VectorEncoder(queries, dim)).index.view().engine


def search_rows(retriever: Any, j: int, k: int = 10) -> np.ndarray:
    """Rows of query j's hits through `Retriever.search` (padded with -1)."""
    hits = retriever.search(f"q{j}", k)
    rows = [row_of(h.page_id) for h in hits]
    return np.array(rows + [-1] * (k - len(rows)), np.int64)


def evict(directory: Path) -> None:
    """Drop `directory`'s files from the page cache (only these files; other jobs keep theirs)."""
    for path in Path(directory).rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd) if os.access(path, os.W_OK) else None
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def cold(directory: Path, queries_file: Path) -> dict[str, float]:
    """Open + first query in a fresh process after evicting the index files (run as a subprocess)."""
    data = np.load(queries_file)
    queries = [data["tokens"][a:b] for a, b in zip(data["offsets"][:-1], data["offsets"][1:])]
    evict(directory)
    t = time.perf_counter()
    from dse.retrieve.retriever import Retriever

    imported = time.perf_counter() - t
    t = time.perf_counter()
    r = Retriever.open(directory, VectorEncoder(queries, queries[0].shape[1]))
    open_s = time.perf_counter() - t
    t = time.perf_counter()
    first = search_rows(r, 0)
    first_ms = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    search_rows(r, 1)
    second_ms = (time.perf_counter() - t) * 1e3
    r.close()
    return {"import_s": imported, "open_s": open_s, "first_query_ms": first_ms, "second_query_ms": second_ms,
            "first_rows": first.tolist()}


if __name__ == "__main__" and sys.argv[1:2] == ["cold"]:
    print(json.dumps(cold(Path(sys.argv[2]), Path(sys.argv[3]))))
