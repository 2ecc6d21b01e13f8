"""The HNSW graph a flat engine caches beside its shards (`hnsw-graph.faiss`): written atomically, read only if trusted.

The shards stay the source of truth. FAISS's reader is not hardened against hostile files and an
index may come from elsewhere, so only a graph file whose digest this machine recorded when
writing it is read (`$DSE_CACHE_DIR/hnsw-graphs.sha256`); any other is rebuilt from the shards.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from dse.engines.files import atomic_write

GRAPH_FILE = "hnsw-graph.faiss"
GRAPH_BLOCK = 65_536  # rows added to the graph at a time when it catches up
_GRAPH_MIN_LAG = 4096  # rows a graph file may lag behind before a save rewrites it
_GRAPH_ROWS: dict[str, tuple[int, int]] = {}  # path -> (mtime_ns, rows) of graph files read or written


def _trusted_graphs() -> Path:
    """The digests of the graph files this machine wrote (`$DSE_CACHE_DIR`, else ~/.cache/dse)."""
    root = os.environ.get("DSE_CACHE_DIR") or Path.home() / ".cache" / "dse"
    return Path(root) / "hnsw-graphs.sha256"


def _trust(data: bytes) -> None:
    """Record a graph file's digest as written here (FAISS's reader is not hardened against hostile files)."""
    path = _trusted_graphs()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="ascii") as fh:
            fh.write(hashlib.sha256(data).hexdigest() + "\n")
    except OSError:
        pass  # not recorded: the graph is rebuilt at the next open instead of read


def _trusted(data: bytes) -> bool:
    try:
        known = set(_trusted_graphs().read_text(encoding="ascii").split())
    except OSError:
        return False
    return hashlib.sha256(data).hexdigest() in known


def _graph_rows(path: Path) -> int | None:
    """Rows held by the graph file at `path` (None: no file), remembered by modification time."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    known = _GRAPH_ROWS.get(str(path))
    if known is not None and known[0] == mtime:
        return known[1]
    return -1  # a file this process has not read: counts as lagging, so the next save rewrites it


def read_graph(path: Path, engine: Any) -> Any:
    """The graph cached at `path` if this machine wrote it for `engine`'s rows and parameters, else None.

    `engine` is the `FlatEngine` the graph is for (its `dim`, `M`, `ef_search`, rows and `vectors`).

    An index may come from elsewhere, and FAISS's reader trusts its input: only a file whose
    digest this machine recorded when writing it is read (a copied index rebuilds its graph once).
    """
    import faiss

    try:
        data = np.fromfile(path, dtype=np.uint8)
        if not _trusted(data.tobytes()):
            return None
        hnsw = index = faiss.deserialize_index(data)  # already of its own class (and owning its memory)
    except (OSError, RuntimeError, ValueError):
        return None
    n = int(index.ntotal)
    if (not isinstance(hnsw, faiss.IndexHNSWFlat) or index.d != engine.dim or n > len(engine) or n == 0
            or index.metric_type != faiss.METRIC_INNER_PRODUCT or hnsw.hnsw.nb_neighbors(1) != engine.M):
        return None
    for row in sorted({0, n // 2, n - 1}):  # the same rows as the shards (not a graph of other vectors)
        if not np.array_equal(hnsw.reconstruct(row), engine.vectors(row, row + 1)[0]):
            return None
    hnsw.hnsw.efSearch = engine.ef_search
    _GRAPH_ROWS[str(path)] = (path.stat().st_mtime_ns, n)
    return hnsw


def lags(path: Path, rows: int) -> bool:
    """True if the graph file at `path` is missing, or lags `rows` by a tenth (at least `_GRAPH_MIN_LAG` rows)."""
    written = _graph_rows(path)
    return written is None or rows - written >= max(_GRAPH_MIN_LAG, rows // 10)


def write_graph(path: Path, graph: Any) -> None:
    """Write `graph` to `path` atomically, recording its digest as written by this machine."""
    import faiss

    data = faiss.serialize_index(graph).tobytes()
    _trust(data)
    atomic_write(path, lambda fh: fh.write(data))
    _GRAPH_ROWS[str(path)] = (path.stat().st_mtime_ns, int(graph.ntotal))
