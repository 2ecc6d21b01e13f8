"""Single-vector search on compact codes with exact rescoring: binary (sign bits) or int8.

Every allowed row is scored on its resident code (binary: ``dim - 2 * hamming`` by the compiled
popcount kernel, 1 bit a dimension; int8: inner product with per-row scaled int8 codes,
1 byte a dimension); the best `n_candidates` are rescored exactly on the float32 vectors,
which stay memory-mapped on disk. `n_candidates` is the recall/speed knob; 0 scores every
scanned row exactly. FlatEngine stays the default (exact) single-vector engine.

With `n_lists` > 0 the rows are also partitioned into an inverted file (`dse.engines.ivf.lists`):
once the engine holds ``40 * n_lists`` rows, spherical k-means centroids are trained on a seeded
sample; every row belongs to its best centroid's list, and the resident codes are grouped by
list. With `retrain` (default), each add that makes the index reach twice the rows the
centroids were trained on trains new ones on a uniform sample of all rows (read from the
stored float32 vectors) and re-assigns every row; the save that follows writes every shard's
list file for them, then switches the directory to them in one atomic write (`ivf.state`).
Centroids trained on the first commit alone put later documents in a few catch-all lists,
and recall stops short whatever the probe. A query then scans only the codes of its `n_probe` best lists (widened
until they hold k allowed rows). ``n_probe >= n_lists`` scans every row, as without lists.

On disk per shard: ``.bits.npy`` uint64 (binary) or ``.int8.npy`` + ``.scales.npy`` (int8),
``.lists-<centroids fingerprint>.npy`` int32 once centroids exist, then ``.vectors.npy``
float32 (rows, dim), written last: it commits the shard. ``ivf-centroids.npz`` holds the
current centroids (written after the shard: the switch). Centroids and list files are derived data: missing or unreadable ones are recomputed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from dse.engines.base import as_float32_rows
from dse.engines.files import load_npy, save_npy, shard_path
from dse.engines.ivf import lists as ivf
from dse.engines.ivf.state import SegmentLists
from dse.engines.quantize import int8_encode, pack_signs
from dse.engines.quantized.scan import Resident, resident_codes, scan_all, scan_lists
from dse.engines.results import check_k, empty_result, topk
from dse.engines.shards import ShardedEngine
from dse.types import VectorKind

_CODES = {"binary": (".bits.npy",), "int8": (".int8.npy", ".scales.npy")}


class QuantizedFlatEngine(ShardedEngine):
    """Float32 rows searched through binary or int8 codes (optionally in IVF lists), then rescored exactly.

    Args:
        dim: Vector width; inferred from the first add (or the shards) when None.
        mode: "binary" or "int8".
        n_candidates: Rows rescored exactly per query (0: every scanned row).
        n_lists: IVF lists (0: none, every query scans every row); about sqrt(rows) to
            4 * sqrt(rows) of the expected index size.
        n_probe: Lists scanned per query (>= n_lists: every row).
        retrain: Retrain the centroids each time the index doubles past the rows they were trained
            on, and re-assign every row; False: train once (`ivf.lists.TRAIN_ROWS_PER_LIST` rows a list).
    """

    kind: ClassVar[VectorKind] = "single"
    marker: ClassVar[str] = ".vectors.npy"

    def __init__(
        self, dim: int | None = None, mode: str = "binary", n_candidates: int = 512, n_lists: int = 0,
        n_probe: int = 32, retrain: bool = True,
    ) -> None:
        super().__init__()
        if mode not in _CODES:
            raise ValueError(f"mode must be one of {', '.join(_CODES)}, got {mode!r}")
        if dim is not None and (isinstance(dim, bool) or int(dim) != dim or dim < 1):
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if isinstance(n_candidates, bool) or int(n_candidates) != n_candidates or n_candidates < 0:
            raise ValueError(f"n_candidates must be an integer >= 0, got {n_candidates!r}")
        if not isinstance(retrain, (bool, np.bool_)):
            raise ValueError(f"retrain must be true or false, got {retrain!r}")
        self.mode, self.n_candidates, self.retrain = mode, int(n_candidates), bool(retrain)
        self.n_lists, self.n_probe = ivf.check_lists_options(n_lists, n_probe)
        self._dim = None if dim is None else int(dim)
        self._vectors: list[np.ndarray] = []  # float32 (rows_i, dim) per segment (memory-mapped once saved)
        self._codes: list[tuple[np.ndarray, ...]] = []  # per segment: (bits,) or (int8, scales)
        self._lists = SegmentLists(max(self.n_lists, 1))  # centroids and list labels per segment
        self._starts: list[int] = []
        self._n = 0
        self._resident: Resident | None = None  # built lazily, dropped by adds

    @property
    def dim(self) -> int | None:
        """Vector width (None until known)."""
        return self._dim

    def __len__(self) -> int:
        return self._n

    def options(self) -> dict[str, Any]:
        """Constructor options, recorded in the manifest."""
        return {"mode": self.mode, "dim": self._dim, "n_candidates": self.n_candidates, "n_lists": self.n_lists,
                "n_probe": self.n_probe, "retrain": self.retrain}

    @property
    def centroids(self) -> np.ndarray | None:
        """The IVF centroids, float32 (n_lists, dim), or None before training (or without lists)."""
        return self._lists.centroids

    def _copy_containers(self) -> None:
        self._vectors, self._codes, self._starts = list(self._vectors), list(self._codes), list(self._starts)
        self._lists = self._lists.copy()

    def prepare(self) -> None:
        """Gather the codes in memory now (the first search would)."""
        if self._n:
            self._codes_resident()

    def _encode(self, vectors: np.ndarray) -> tuple[np.ndarray, ...]:
        return (pack_signs(vectors),) if self.mode == "binary" else int8_encode(vectors)

    def _append(self, vectors: np.ndarray, codes: tuple[np.ndarray, ...], shard: tuple[Path, int] | None = None) -> None:
        if len(vectors):
            self._lists.append(vectors, shard)
            self._vectors.append(vectors)
            self._codes.append(codes)
            self._starts.append(self._n)
            self._n += len(vectors)
            self._resident = None

    def add(self, vectors: Any) -> None:
        """Append float32 rows (n, dim); trains the IVF centroids once enough rows are held, and
        retrains them when the index doubles (`retrain`).

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
        if self.n_lists and self.centroids is None and self._n >= ivf.TRAIN_ROWS_PER_LIST * self.n_lists:
            directory = None if self._disk is None else self._disk.directory
            self._lists.train(self._n, self._gather, self._vectors, directory, self._dim)
            self._resident = None
        elif self.n_lists and self.retrain and self._lists.due(self._n):
            self._lists.retrain(self._n, self._gather, self._vectors)
            self._resident = None

    def search(
        self, queries: Any, k: int, allowed: np.ndarray | None = None, n_candidates: int | None = None,
        n_probe: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows per query by exact inner product among the code scan's candidates.

        Args:
            queries: float32 (n_queries, dim).
            k: Depth; clipped to the number of allowed rows.
            allowed: Optional bool (n_rows,) mask; False rows are never returned.
            n_candidates: Override of the engine's `n_candidates` for this call (0: every scanned row).
            n_probe: Override of the engine's `n_probe` for this call.

        Returns:
            scores float32 (n_queries, k'), rows int64 (n_queries, k'), best first (ties: lower row).
        """
        k = check_k(k)
        q = as_float32_rows(queries)  # (nq, dim)
        if self._dim is not None and q.shape[1] != self._dim:
            raise ValueError(f"queries have dim {q.shape[1]}, but this index expects dim {self._dim}")
        mask = None if allowed is None else np.asarray(allowed)  # (n,)
        if mask is not None and (mask.dtype != np.bool_ or mask.shape != (self._n,)):
            raise ValueError(f"allowed must be a bool array of shape ({self._n},), got {mask.dtype} {mask.shape}")
        kk = min(k, self._n if mask is None else int(mask.sum()))
        if kk == 0:
            return empty_result(len(q))
        n_cand = self.n_candidates if n_candidates is None else int(n_candidates)
        n_cand = max(n_cand, kk) if n_cand else self._n
        probe = ivf.check_lists_options(self.n_lists, self.n_probe if n_probe is None else n_probe)[1]
        res = self._codes_resident()
        if res.layout is None or probe >= self.n_lists:
            cands = self._scan_all(q, mask, n_cand, res)
        else:
            cands = self._scan_lists(q, mask, n_cand, probe, kk, res)
        out_s, out_r = [], []
        for qi, rows in enumerate(cands):
            exact = self._rescore(rows, q[qi])  # (m,)
            s, cols = topk(exact[None, :], kk)  # (1, kk)
            out_s.append(s[0])
            out_r.append(rows[cols[0]])
        return np.stack(out_s).astype(np.float32), np.stack(out_r).astype(np.int64)

    def _scan_all(self, q: np.ndarray, mask: np.ndarray | None, n_cand: int, res: Resident) -> list[np.ndarray]:
        """Candidate rows (ascending) of each query from the codes of every row (`scan.scan_all`)."""
        return scan_all(self.mode, self._dim or 0, self._n, q, mask, n_cand, res)

    def _scan_lists(
        self, q: np.ndarray, mask: np.ndarray | None, n_cand: int, probe: int, kk: int, res: Resident
    ) -> list[np.ndarray]:
        """Candidate rows (ascending) of each query from the codes of its best lists (`scan.scan_lists`)."""
        assert self.centroids is not None  # lists are scanned only once centroids exist
        return scan_lists(self.mode, self._dim or 0, self._n, self.n_lists, self.centroids, q, mask, n_cand, probe, kk,
                          res)

    def _codes_resident(self) -> Resident:
        """Codes of every row in memory, grouped by list once centroids exist (rebuilt after adds)."""
        if self._resident is None:
            labels = None if self.centroids is None else self._lists.all_labels()  # (n,)
            self._resident = resident_codes(self.mode, self._dim or 0, self._codes, labels, self.n_lists)
        return self._resident

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        """Float32 vectors of ascending `rows`: (m, dim)."""
        which = np.searchsorted(np.asarray(self._starts), rows, side="right") - 1  # (m,)
        out = np.empty((len(rows), self._dim or 0), np.float32)  # (m, dim)
        for s in np.unique(which):
            pick = np.flatnonzero(which == s)
            out[pick] = self._vectors[s][rows[pick] - self._starts[s]]
        return out

    def vectors(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Copy of the stored float32 rows `[start, stop)`: (n, dim) (`page_vectors`, `dse export-vectors`)."""
        return self._gather(np.arange(start, len(self) if stop is None else stop, dtype=np.int64))

    def _rescore(self, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Exact inner products of one query (dim,) with the float32 vectors of ascending `rows`: (m,)."""
        from dse.kernels import dot_rows

        which = np.searchsorted(np.asarray(self._starts), rows, side="right") - 1  # (m,)
        out = np.empty(len(rows), np.float32)  # (m,)
        for s in np.unique(which):
            pick = np.flatnonzero(which == s)
            out[pick] = dot_rows(self._vectors[s], q, rows[pick] - self._starts[s])
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
        if self.n_lists and self._lists.adopt_saved(directory, self._dim, self._vectors):
            self._resident = None
        keep = min(keep, len(vectors))
        self._append(vectors[:keep], tuple(c[:keep] for c in codes), (Path(directory), number))  # memory-mapped
        return len(vectors)

    def _rows(self, start: int, stop: int) -> tuple[np.ndarray, tuple[np.ndarray, ...], np.ndarray]:
        """Vectors, codes and list labels (empty before training) of rows [start, stop) (copies)."""
        vec, codes, lists = [], [], []
        for v, c, li, first in zip(self._vectors, self._codes, self._lists.labels, self._starts):
            a, b = max(start - first, 0), min(stop - first, len(v))
            if a < b:
                vec.append(v[a:b])
                codes.append(tuple(x[a:b] for x in c))
                lists.append(li[a:b])
        return np.concatenate(vec), tuple(np.concatenate(parts) for parts in zip(*codes)), np.concatenate(lists)

    def _write_shard(self, directory: Path, number: int, start: int, stop: int) -> None:
        self._write_lists(directory)
        vectors, codes, lists = self._rows(start, stop)
        for suffix, code in zip(_CODES[self.mode], codes):
            save_npy(shard_path(directory, number, suffix), code)
        self._lists.write(directory, number, lists)
        save_npy(shard_path(directory, number, self.marker), vectors)  # commits the shard
        self._lists.commit(directory)  # then the switch to new centroids, if any

    def save(self, directory: Path) -> None:
        """Append the rows not yet on disk as one shard (`ShardedEngine.save`). With `retrain`, an index
        whose centroids are due (a crash stopped the last save before its switch) retrains first,
        and a save without new rows still writes and switches to the centroids held."""
        if self.n_lists and self.retrain and self._lists.due(self._n):
            self._lists.retrain(self._n, self._gather, self._vectors)
            self._resident = None
        disk = self._disk
        written = disk.rows if disk is not None and disk.directory.resolve() == Path(directory).resolve() else -1
        super().save(directory)
        if self.n_lists and self._disk is not None and self._disk.rows == written:  # no shard written
            self._write_lists(Path(directory))
            self._lists.commit(Path(directory))

    def _write_lists(self, directory: Path) -> None:
        tag = self._lists.tag
        self._lists.save(directory, self._dim, self._vectors)  # centroids, older shards' list files
        if self._lists.tag != tag:
            self._resident = None  # the directory's centroids replaced this engine's

    def extend(self, rows: int) -> None:
        """Read the rows another writer committed since (`ShardedEngine.extend`), and follow its switch
        to new centroids (their list files are read, or the rows re-assigned)."""
        disk = self._disk
        if self.n_lists and disk is not None and self._lists.centroids is not None and len(self) == disk.rows:
            if self._lists.follow(disk.directory, self._dim, self._vectors):  # first: new shards read its lists
                self._resident = None
        super().extend(rows)

    def _truncate_shard(self, directory: Path, number: int, keep: int) -> None:
        path = shard_path(directory, number, self.marker)
        save_npy(path, np.array(load_npy(path)[:keep]))  # first: the codes and lists stay a superset

    def _saved(self, directory: Path, number: int, start: int, stop: int) -> None:
        """Swap the in-memory rows just saved for a memory map of their shard."""
        while self._starts and self._starts[-1] >= start:
            for segments in (self._vectors, self._codes, self._starts, self._lists):
                segments.pop()
        self._n = start
        self._read_shard(directory, number, stop - start)

