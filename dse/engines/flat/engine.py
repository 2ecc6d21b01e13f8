"""Single-vector search with FAISS: exact inner product over memory-mapped shards, or approximate HNSW."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from dse.engines.files import load_npy, save_npy, shard_path
from dse.engines.flat.hnsw_file import GRAPH_BLOCK, GRAPH_FILE, lags, read_graph, write_graph
from dse.engines.results import check_allowed, check_k, empty_result, merge_topk_rows, sort_ties, topk
from dse.engines.shards import SegmentedEngine
from dse.types import VectorKind

_TIE_MARGIN = 8  # extra rows fetched to see whether equal scores continue past the cut
_OVERFETCH_MAX = 1024  # excluded rows up to which a filtered exact search asks FAISS for k + excluded
_HNSW_EXACT_ROWS = 4096  # allowed rows up to which a filtered HNSW search is exact on the subset
_BLOCK_SCORES = 1 << 22  # scores per block when scoring a gathered subset


@dataclass(frozen=True)
class _Rows:
    """One segment: float32 (rows, dim), in memory until saved, then a memory map of its shard."""

    vectors: np.ndarray

    @property
    def pages(self) -> int:
        return int(self.vectors.shape[0])


class FlatEngine(SegmentedEngine):
    """Float32 rows (n, dim) searched by inner product (cosine for the unit-norm vectors encoders give).

    By default the search is exact: each segment (one per shard, memory-mapped, never copied into
    memory) is scanned with FAISS's brute-force kernel (`faiss.knn`, BLAS) and the per-segment
    top-k merged. With `hnsw=True` it is approximate (`faiss.IndexHNSWFlat`, inner-product
    metric). The shards stay the source of truth; the graph is a cache beside them
    (`hnsw-graph.faiss`, written atomically after a save once it lags the rows by a tenth, and
    whenever a save finds no graph file): opening reads it, checks it holds these very rows (its
    size, parameters and sampled vectors), and adds only the rows after it, so `dse search` does
    not rebuild the graph at every start. A missing, stale or foreign graph is rebuilt from the
    shards, and so is one this machine did not write (FAISS's reader is not made for hostile
    files: see `dse.engines.hnsw_file.read_graph`). A snapshot copies the graph.

    On disk: `shard-NNNNNN.npy`, float32 (rows, dim) each.

    Args:
        dim: Vector width; inferred from the first add (or the shards) when None.
        hnsw: Use an HNSW graph instead of exact search.
        M: HNSW neighbours per node.
        ef_construction: HNSW candidate list size while building.
        ef_search: HNSW candidate list size while searching (raised to k when k is larger).
    """

    kind: ClassVar[VectorKind] = "single"
    marker: ClassVar[str] = ".npy"

    def __init__(
        self,
        dim: int | None = None,
        hnsw: bool = False,
        M: int = 32,  # noqa: N803 - the name FAISS and the HNSW paper use
        ef_construction: int = 200,
        ef_search: int = 128,
    ) -> None:
        super().__init__(dim)
        for name, value in (("M", M), ("ef_construction", ef_construction), ("ef_search", ef_search)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value!r}")
        self.hnsw = bool(hnsw)
        self.M, self.ef_construction, self.ef_search = int(M), int(ef_construction), int(ef_search)
        self._index: Any = None  # the HNSW graph (hnsw=True only); may lag the rows until `_graph`
        self._graph_lock = threading.Lock()
        if self.hnsw and self._dim is not None:
            self._index = self._new_index(self._dim)

    def options(self) -> dict[str, Any]:
        """Constructor options, recorded in the manifest."""
        opts: dict[str, Any] = {"dim": self._dim, "hnsw": self.hnsw}
        if self.hnsw:
            opts.update(M=self.M, ef_construction=self.ef_construction, ef_search=self.ef_search)
        return opts

    def _copy_containers(self) -> None:
        super()._copy_containers()
        self._graph_lock = threading.Lock()
        if self._index is not None:
            import faiss

            self._index = faiss.clone_index(self._index)  # the graph is appended in place: the copy holds it whole

    def _new_index(self, dim: int) -> Any:
        import faiss

        index = faiss.IndexHNSWFlat(dim, self.M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    def _check(self, vectors: Any, what: str, adopt: bool = True) -> np.ndarray:
        """Float32 C-contiguous (n, dim) rows of the right width; `adopt` sets an unknown width."""
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.ndim == 1 and arr.size == 0:
            arr = arr.reshape(0, self._dim or 0)
        if arr.ndim != 2:
            raise ValueError(f"{what} must be a 2-D array (n, dim), got shape {arr.shape}")
        if self._dim is None:
            if arr.shape[0] == 0 or not adopt:
                return np.ascontiguousarray(arr)
            self._dim = int(arr.shape[1])
            if self.hnsw:
                self._index = self._new_index(self._dim)
        if arr.shape[1] != self._dim:
            raise ValueError(f"{what} have dim {arr.shape[1]}, but this index expects dim {self._dim}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{what} contain NaN or infinite values")
        return np.ascontiguousarray(arr)

    def add(self, vectors: Any) -> None:
        """Append float32 (n, dim) rows.

        Raises:
            ValueError: not 2-D, wrong width, or non-finite values.
        """
        arr = self._check(vectors, "vectors")  # (n, dim)
        if arr.shape[0]:
            self._append(_Rows(arr.copy()))
            if self._index is not None:
                self._graph()  # adds the new rows to the graph

    def search(self, queries: Any, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows by inner product for each query row (ties: lower row first).

        With `allowed`, only rows whose entry is True are scored or returned. Exact search asks
        FAISS for k + excluded rows when few are excluded (tombstones), and otherwise scores the
        gathered allowed rows only. HNSW walks the graph with a FAISS `IDSelectorBitmap`, and is
        exact on the allowed rows when there are few of them (<= 4096 or 2% of the index).

        Args:
            queries: float32 (n_queries, dim).
            k: Depth; clipped to the number of (allowed) rows.
            allowed: Optional bool (n_rows,) mask; False rows are never returned.

        Returns:
            scores float32 (n_queries, k'), rows int64 (n_queries, k').
        """
        k = check_k(k)
        q = self._check(queries, "queries", adopt=False)  # (nq, dim)
        mask = check_allowed(allowed, len(self))
        if mask is not None:
            return self._search_allowed(q, k, mask)
        kk = min(k, len(self))
        if kk == 0 or q.shape[0] == 0:
            return empty_result(q.shape[0])
        if self.hnsw:
            return self._hnsw(q, kk, None)
        return self._exact(q, kk)

    def _hnsw(self, q: np.ndarray, kk: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Graph search (restricted to `mask` when given); walks that found fewer rows go exact."""
        import faiss

        params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, kk))
        if mask is not None:  # the bitmap and selector must outlive the search: keep local references
            bits = np.packbits(mask, bitorder="little")  # (ceil(n / 8),)
            selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
            params.sel = selector
        scores, rows = self._graph().search(q, kk, params=params)  # (nq, kk), (nq, kk)
        missing = (rows < 0).any(axis=1)  # graph walks that found fewer than kk rows
        if missing.any():
            if mask is None:
                scores[missing], rows[missing] = self._exact(q[missing], kk)
            else:
                scores[missing], rows[missing] = self._subset(q[missing], np.flatnonzero(mask), kk)
        return sort_ties(scores, rows)

    def _search_allowed(self, q: np.ndarray, k: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-k over the rows where `mask` is True (bool (n,), not all True)."""
        idx = np.flatnonzero(mask)  # (m,) allowed rows, ascending
        kk = min(k, idx.shape[0])
        if kk == 0 or q.shape[0] == 0:
            return empty_result(q.shape[0])
        excluded = len(self) - idx.shape[0]
        if self.hnsw:
            if idx.shape[0] <= max(_HNSW_EXACT_ROWS, len(self) // 50):
                return self._subset(q, idx, kk)
            return self._hnsw(q, kk, mask)
        if excluded > _OVERFETCH_MAX:
            return self._subset(q, idx, kk)
        scores, rows = self._exact(q, min(len(self), kk + excluded))  # (nq, kk + excluded) each
        keep = mask[rows]  # (nq, kk + excluded); at least kk True per query
        order = np.argsort(~keep, axis=1, kind="stable")[:, :kk]  # (nq, kk) allowed columns, in rank order
        return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)

    def _subset(self, q: np.ndarray, idx: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-kk over the rows `idx` (ascending) only, gathered in bounded blocks."""
        best = empty_result(q.shape[0])
        step = max(1, _BLOCK_SCORES // max(1, q.shape[0]))
        bounds = np.searchsorted(idx, np.asarray(self._starts + [self._n], np.int64))  # (segments + 1,)
        for seg, first, a0, z0 in zip(self._segments, self._starts, bounds[:-1], bounds[1:]):
            for a in range(int(a0), int(z0), step):
                rows = idx[a : min(a + step, int(z0))]  # (b,) ascending, inside this segment
                block = np.asarray(seg.vectors[rows - first])  # (b, dim)
                best = merge_topk_rows(best, q @ block.T, rows, kk)  # scores (nq, b)
        return best

    def _exact(self, q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-kk with ties at the cut resolved to the lower rows, like `topk`.

        Each segment is scanned by FAISS; FAISS picks arbitrary rows among equal scores at the
        cut, so it is asked for a few more rows, and a segment whose tie group may extend past
        them is rescored in full for that query. Segments come in row order, so merging keeps
        the lower row first among equal scores.
        """
        import faiss

        best = empty_result(q.shape[0])
        for seg, first in zip(self._segments, self._starts):
            xb = seg.vectors  # (rows, dim), memory-mapped once saved
            n = xb.shape[0]
            kseg = min(n, kk)
            k2 = min(n, kk + _TIE_MARGIN)
            scores, rows = sort_ties(*faiss.knn(q, xb, k2, metric=faiss.METRIC_INNER_PRODUCT))  # (nq, k2) each
            redo = (scores[:, k2 - 1] == scores[:, kseg - 1]) & (k2 < n)  # (nq,)
            scores, rows = scores[:, :kseg].copy(), rows[:, :kseg].copy()  # (nq, kseg), (nq, kseg)
            if redo.any():
                scores[redo], rows[redo] = topk(q[redo] @ np.asarray(xb).T, kseg)  # (n_redo, rows) -> kseg
            merged = sort_ties(np.concatenate([best[0], scores], axis=1),
                                np.concatenate([best[1], rows + first], axis=1))  # (nq, k' + kseg) each
            best = merged[0][:, :kk], merged[1][:, :kk]
        return best

    def vectors(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Copy of rows `[start, stop)` as float32 (n, dim)."""
        stop = len(self) if stop is None else stop
        parts = [np.asarray(seg.vectors[max(start - first, 0): stop - first])
                 for seg, first in zip(self._segments, self._starts) if first < stop and first + seg.pages > start]
        if not parts:
            return np.zeros((0, self._dim or 0), np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)  # (stop - start, dim)

    def _read_shard(self, directory: Path, number: int, keep: int) -> int:
        path = shard_path(directory, number, self.marker)
        arr = load_npy(path)  # (rows, dim), memory-mapped
        if arr.ndim != 2 or arr.dtype != np.float32:
            raise ValueError(f"{path} is not a float32 (rows, dim) array: {arr.dtype} {arr.shape}")
        if self._dim is not None and arr.shape[1] != self._dim:
            raise ValueError(f"{path}: vectors have dim {arr.shape[1]}, but this index expects dim {self._dim}")
        rows = arr[:keep]
        if rows.shape[0]:
            if self._dim is None:
                self._check(np.asarray(rows[:1]), "vectors")  # adopts the width (and makes the graph)
            self._append(_Rows(rows))  # the graph catches up with these rows when next used (`_graph`);
            # after a save (`SegmentedEngine._saved`) it already holds them
        return int(arr.shape[0])

    def _write_shard(self, directory: Path, number: int, start: int, stop: int) -> None:
        save_npy(shard_path(directory, number, self.marker), self.vectors(start, stop))

    # ------------------------------------------------------------------ the HNSW graph, cached on disk
    def prepare(self) -> None:
        """Bring the HNSW graph up to date now (read from disk, plus the rows after it)."""
        if self._index is not None:
            self._graph()

    def _graph(self) -> Any:
        """The HNSW graph holding every row: read from its file first if it is empty, then caught up."""
        index = self._index
        if index.ntotal >= self._n:
            return index
        with self._graph_lock:  # searches of one state may arrive together: one catches up
            index = self._index
            if index.ntotal == 0 and self._n and self._disk is not None:
                cached = read_graph(self._disk.directory / GRAPH_FILE, self)
                if cached is not None:
                    index = self._index = cached
            for start in range(int(index.ntotal), self._n, GRAPH_BLOCK):
                index.add(np.ascontiguousarray(self.vectors(start, min(self._n, start + GRAPH_BLOCK))))
        return index

    def save(self, directory: Path) -> None:
        """Append the unsaved rows as a shard (`ShardedEngine.save`), then refresh the graph's file if it lags."""
        super().save(directory)
        if self._index is None or self._disk is None:
            return
        path = self._disk.directory / GRAPH_FILE
        graph = self._graph()  # reads the file first when this process has not yet
        if lags(path, self._n):
            write_graph(path, graph)

    def _truncate_shard(self, directory: Path, number: int, keep: int) -> None:
        path = shard_path(directory, number, self.marker)
        save_npy(path, np.array(load_npy(path)[:keep]))
