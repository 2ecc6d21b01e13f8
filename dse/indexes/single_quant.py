"""Single-vector search on compact codes with exact rescoring: binary (sign bits) or int8.

Every allowed row is scored on its resident code (binary: ``dim - 2 * hamming`` by the compiled
popcount kernel, 1 bit a dimension; int8: inner product with per-row scaled int8 codes,
1 byte a dimension); the best `n_candidates` are rescored exactly on the float32 vectors,
which stay memory-mapped on disk. `n_candidates` is the recall/speed knob; 0 scores every
row exactly (the exact mode). FlatEngine stays the default (exact) single-vector engine.

On disk per shard: ``.bits.npy`` uint64 (binary) or ``.int8.npy`` + ``.scales.npy`` (int8),
then ``.vectors.npy`` float32 (rows, dim), written last: it commits the shard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from dse.encoders.base import VectorKind
from dse.indexes.base import as_float32_rows, topk
from dse.indexes.quantize import int8_encode, pack_signs
from dse.indexes.shards import ShardedEngine, check_k, empty_result, load_npy, save_npy, shard_path

_CODES = {"binary": (".bits.npy",), "int8": (".int8.npy", ".scales.npy")}


class QuantizedFlatEngine(ShardedEngine):
    """Float32 rows searched through binary or int8 codes, then rescored exactly.

    Args:
        dim: Vector width; inferred from the first add (or the shards) when None.
        mode: "binary" or "int8".
        n_candidates: Rows rescored exactly per query (0: all rows, exact search).
    """

    kind: ClassVar[VectorKind] = "single"
    marker: ClassVar[str] = ".vectors.npy"

    def __init__(self, dim: int | None = None, mode: str = "binary", n_candidates: int = 512) -> None:
        super().__init__()
        if mode not in _CODES:
            raise ValueError(f"mode must be one of {', '.join(_CODES)}, got {mode!r}")
        if dim is not None and (isinstance(dim, bool) or int(dim) != dim or dim < 1):
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if isinstance(n_candidates, bool) or int(n_candidates) != n_candidates or n_candidates < 0:
            raise ValueError(f"n_candidates must be an integer >= 0, got {n_candidates!r}")
        self.mode, self.n_candidates = mode, int(n_candidates)
        self._dim = None if dim is None else int(dim)
        self._vectors: list[np.ndarray] = []  # float32 (rows_i, dim) per segment (memory-mapped once saved)
        self._codes: list[tuple[np.ndarray, ...]] = []  # per segment: (bits,) or (int8, scales)
        self._starts: list[int] = []
        self._n = 0
        self._resident: tuple[np.ndarray, ...] | None = None  # all codes concatenated (built lazily)

    @property
    def dim(self) -> int | None:
        """Vector width (None until known)."""
        return self._dim

    def __len__(self) -> int:
        return self._n

    def options(self) -> dict[str, Any]:
        """Constructor options, recorded in the manifest."""
        return {"mode": self.mode, "dim": self._dim, "n_candidates": self.n_candidates}

    def _encode(self, vectors: np.ndarray) -> tuple[np.ndarray, ...]:
        return (pack_signs(vectors),) if self.mode == "binary" else int8_encode(vectors)

    def _append(self, vectors: np.ndarray, codes: tuple[np.ndarray, ...]) -> None:
        if len(vectors):
            self._vectors.append(vectors)
            self._codes.append(codes)
            self._starts.append(self._n)
            self._n += len(vectors)
            self._resident = None

    def add(self, vectors: Any) -> None:
        """Append float32 rows (n, dim).

        Raises:
            ValueError: not 2-D, wrong width, or non-finite values.
        """
        arr = as_float32_rows(vectors)  # (n, dim)
        if self._dim is not None and arr.shape[1] != self._dim:
            raise ValueError(f"vectors have dim {arr.shape[1]}, but this index expects dim {self._dim}")
        if not np.isfinite(arr).all():
            raise ValueError("vectors contain NaN or infinite values")
        self._dim = int(arr.shape[1])
        self._append(arr.copy(), self._encode(arr))

    def search(
        self, queries: Any, k: int, allowed: np.ndarray | None = None, n_candidates: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows per query by exact inner product among the code scan's candidates.

        Args:
            queries: float32 (n_queries, dim).
            k: Depth; clipped to the number of allowed rows.
            allowed: Optional bool (n_rows,) mask; False rows are never returned.
            n_candidates: Override of the engine's `n_candidates` for this call (0: exact).

        Returns:
            scores float32 (n_queries, k'), rows int64 (n_queries, k'), best first (ties: lower row).
        """
        from dse.indexes.kernels import hamming_scores, int8_scores, top_hamming

        k = check_k(k)
        q = as_float32_rows(queries)  # (nq, dim)
        if self._dim is not None and q.shape[1] != self._dim:
            raise ValueError(f"queries have dim {q.shape[1]}, but this index expects dim {self._dim}")
        mask = np.ones(self._n, np.bool_) if allowed is None else np.asarray(allowed)  # (n,)
        if mask.dtype != np.bool_ or mask.shape != (self._n,):
            raise ValueError(f"allowed must be a bool array of shape ({self._n},), got {mask.dtype} {mask.shape}")
        kk = min(k, int(mask.sum()))
        if kk == 0:
            return empty_result(len(q))
        n_cand = self.n_candidates if n_candidates is None else int(n_candidates)
        n_cand = max(n_cand, kk) if n_cand else self._n
        codes = self._all_codes()
        if n_cand >= self._n:
            cands = [np.flatnonzero(mask)] * len(q)
        elif self.mode == "binary":
            scores = hamming_scores(pack_signs(q), codes[0], self._dim)  # (nq, n)
            cands = [np.sort(top_hamming(s, mask, self._dim, n_cand)) for s in scores]
        else:
            scores = np.where(mask, int8_scores(q, codes[0], codes[1]), -np.inf)  # (nq, n)
            cands = [np.sort(np.argpartition(-s, n_cand - 1)[:n_cand]) for s in scores]
        out_s, out_r = [], []
        for qi, rows in enumerate(cands):
            exact = self._gather(rows) @ q[qi]  # (m,)
            s, cols = topk(exact[None, :], kk)  # (1, kk)
            out_s.append(s[0])
            out_r.append(rows[cols[0]])
        return np.stack(out_s).astype(np.float32), np.stack(out_r).astype(np.int64)

    def _all_codes(self) -> tuple[np.ndarray, ...]:
        """Codes of every row, concatenated in memory (rebuilt after adds)."""
        if self._resident is None:
            width = -(-(self._dim or 0) // 64) if self.mode == "binary" else self._dim or 0
            empty = (np.zeros((0, width), np.uint64),) if self.mode == "binary" else int8_encode(
                np.zeros((0, width), np.float32))
            self._resident = tuple(
                np.concatenate([c[i] for c in self._codes]) if self._codes else empty[i] for i in range(len(empty))
            )
        return self._resident

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        """Float32 vectors of ascending `rows`: (m, dim)."""
        which = np.searchsorted(np.asarray(self._starts), rows, side="right") - 1  # (m,)
        out = np.empty((len(rows), self._dim or 0), np.float32)  # (m, dim)
        for s in np.unique(which):
            pick = np.flatnonzero(which == s)
            out[pick] = self._vectors[s][rows[pick] - self._starts[s]]
        return out

    # ------------------------------------------------------------------ persistence
    def _read_shard(self, directory: Path, number: int, keep: int) -> int:
        path = shard_path(directory, number, self.marker)
        vectors = load_npy(path)
        codes = tuple(load_npy(shard_path(directory, number, suffix)) for suffix in _CODES[self.mode])
        if vectors.ndim != 2 or vectors.dtype != np.float32 or any(len(c) < len(vectors) for c in codes):
            raise ValueError(f"{path} is not a float32 (rows, dim) shard with {self.mode} codes for every row")
        self._dim = int(vectors.shape[1]) if self._dim is None else self._dim
        if vectors.shape[1] != self._dim:
            raise ValueError(f"{path} has dim {vectors.shape[1]}, but this index expects dim {self._dim}")
        keep = min(keep, len(vectors))
        self._append(vectors[:keep], tuple(np.array(c[:keep]) for c in codes))  # codes resident, vectors mapped
        return len(vectors)

    def _rows(self, start: int, stop: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Vectors and codes of rows [start, stop) (copies)."""
        vec, codes = [], []
        for v, c, first in zip(self._vectors, self._codes, self._starts):
            a, b = max(start - first, 0), min(stop - first, len(v))
            if a < b:
                vec.append(v[a:b])
                codes.append(tuple(x[a:b] for x in c))
        return np.concatenate(vec), tuple(np.concatenate(parts) for parts in zip(*codes))

    def _write_shard(self, directory: Path, number: int, start: int, stop: int) -> None:
        vectors, codes = self._rows(start, stop)
        for suffix, code in zip(_CODES[self.mode], codes):
            save_npy(shard_path(directory, number, suffix), code)
        save_npy(shard_path(directory, number, self.marker), vectors)  # commits the shard

    def _truncate_shard(self, directory: Path, number: int, keep: int) -> None:
        path = shard_path(directory, number, self.marker)
        save_npy(path, np.array(load_npy(path)[:keep]))  # first: the codes stay a superset

    def _saved(self, directory: Path, number: int, start: int, stop: int) -> None:
        """Swap the in-memory rows just saved for a memory map of their shard."""
        while self._starts and self._starts[-1] >= start:
            self._vectors.pop()
            self._codes.pop()
            self._starts.pop()
        self._n = start
        self._read_shard(directory, number, stop - start)
