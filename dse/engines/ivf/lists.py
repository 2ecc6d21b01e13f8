"""Inverted-file (IVF) partition of vectors: spherical k-means centroids, list layout, probing.

Generic pieces, usable by any engine that wants to scan only part of its rows (the
single-vector quantized engine; the cascade's coarse lists, `dse.engines.ivf.coarse`, train
with `train_centroids` too):

- `training_sample`, `train_centroids`: spherical k-means (FAISS) on a seeded sample of rows.
- `assign`: the list (best centroid by inner product) of each row, in bounded blocks.
- `ListLayout`: items grouped contiguously per list (a stable permutation plus offsets), so a
  list is one slice of any array stored in layout order.
- `probe_order`: the lists of each query, best centroid first.
- `lists_to_scan`: how many lists a query must scan so that at least `need` allowed items are
  in them (the probe is widened past `n_probe` when a filter leaves too few).

Persistence (centroids and per-shard list files) is in `dse.engines.ivf.state`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRAIN_ROWS_PER_LIST = 40  # rows an engine must hold (per list) before it trains (FAISS wants >= 39)
_SAMPLE_ROWS_PER_LIST = 64  # training sample size per list (FAISS needs >= 39 to stop warning)
_ITERATIONS = 12
_ASSIGN_BLOCK = 8192  # rows per matrix product when assigning


def check_lists_options(n_lists: object, n_probe: object) -> tuple[int, int]:
    """Validate `n_lists` (>= 0; 0: no partition) and `n_probe` (>= 1).

    Raises:
        ValueError: either is not an integer in range.
    """
    for name, value, low in (("n_lists", n_lists, 0), ("n_probe", n_probe, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(n_lists), int(n_probe)  # type: ignore[arg-type]


def training_sample(n_rows: int, n_lists: int, seed: int = 0) -> np.ndarray:
    """Sorted, seeded rows to train `n_lists` centroids on: int64 (min(n_rows, 64 * n_lists),)."""
    size = min(n_rows, _SAMPLE_ROWS_PER_LIST * n_lists)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size, replace=False)).astype(np.int64)


def train_centroids(
    sample: np.ndarray, n_lists: int, seed: int = 0, iterations: int = _ITERATIONS,
    max_points_per_centroid: int = _SAMPLE_ROWS_PER_LIST, min_points_per_centroid: int | None = None,
    renormalise: bool = True,
) -> np.ndarray:
    """Spherical k-means (FAISS) centroids of `sample` rows (m, dim): float32 (n_lists, dim).

    The single-vector lists use the defaults; the cascade's coarse lists (`coarse.train`) train
    with their own iterations and points per centroid, without the final renormalisation.

    Args:
        sample: The rows to train on.
        n_lists: Centroids.
        seed: k-means seed (training is deterministic for a given seed and input).
        iterations: k-means iterations.
        max_points_per_centroid: FAISS subsamples to at most this many rows per centroid.
        min_points_per_centroid: FAISS warns below this many rows per centroid (None: its default).
        renormalise: Scale the centroids to unit norm after training.

    Raises:
        ValueError: fewer rows than lists.
    """
    import faiss

    m, dim = sample.shape
    if m < n_lists:
        raise ValueError(f"cannot train {n_lists} lists on {m} rows")
    options = {} if min_points_per_centroid is None else {"min_points_per_centroid": int(min_points_per_centroid)}
    kmeans = faiss.Kmeans(dim, n_lists, niter=int(iterations), spherical=True, seed=int(seed),
                          max_points_per_centroid=int(max_points_per_centroid), verbose=False, **options)
    kmeans.train(np.ascontiguousarray(sample, dtype=np.float32))
    centroids = np.asarray(kmeans.centroids, np.float32)  # (n_lists, dim)
    if not renormalise:
        return np.ascontiguousarray(centroids)
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)  # (n_lists, 1)
    return np.ascontiguousarray(centroids / np.maximum(norms, 1e-12))


def assign(rows: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """List of each row (best centroid by inner product, lower list on ties): int32 (n,)."""
    out = np.empty(len(rows), np.int32)  # (n,)
    for a in range(0, len(rows), _ASSIGN_BLOCK):
        block = np.asarray(rows[a : a + _ASSIGN_BLOCK], np.float32)  # (b, dim)
        out[a : a + len(block)] = np.argmax(block @ centroids.T, axis=1)  # (b, n_lists) -> (b,)
    return out


@dataclass(frozen=True)
class ListLayout:
    """Items grouped by list: list `l` holds ``items[offsets[l]:offsets[l + 1]]`` (ascending ids).

    Attributes:
        items: int64 (n,), item ids in layout order.
        offsets: int64 (n_lists + 1,), the slice of each list.
    """

    items: np.ndarray
    offsets: np.ndarray

    @classmethod
    def build(cls, labels: np.ndarray, n_lists: int) -> ListLayout:
        """Layout of items `0..n-1` whose lists are `labels` (int, (n,), each in [0, n_lists))."""
        labels = np.asarray(labels)
        items = np.argsort(labels, kind="stable").astype(np.int64)  # (n,)
        counts = np.bincount(labels, minlength=n_lists)  # (n_lists,)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # (n_lists + 1,)
        return cls(items, offsets)

    @property
    def positions(self) -> np.ndarray:
        """Inverse permutation: the layout position of each item, int64 (n,)."""
        pos = np.empty(len(self.items), np.int64)  # (n,)
        pos[self.items] = np.arange(len(self.items))
        return pos

    def spans(self, lists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Layout slices [starts, stops) of `lists` (int (m,)): int64 (m,), int64 (m,)."""
        lists = np.asarray(lists, np.int64)
        return self.offsets[lists], self.offsets[lists + 1]

    def take(self, lists: np.ndarray) -> np.ndarray:
        """Layout positions of every item in `lists`, list by list: int64 (sum of sizes,)."""
        starts, stops = self.spans(lists)
        sizes = stops - starts  # (m,)
        if not sizes.sum():
            return np.zeros(0, np.int64)
        base = np.repeat(starts - np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes)  # (total,)
        return base + np.arange(int(sizes.sum()), dtype=np.int64)


def probe_order(queries: np.ndarray, centroids: np.ndarray, n_probe: int) -> np.ndarray:
    """The `n_probe` best lists of each query by inner product, best first (ties: lower list): int64 (nq, n_probe)."""
    from dse.kernels import dot_rows

    scores = np.stack([dot_rows(centroids, qi) for qi in queries]) if len(queries) else np.zeros(
        (0, len(centroids)), np.float32)  # (nq, n_lists)
    n_probe = min(n_probe, scores.shape[1])
    if n_probe < scores.shape[1]:
        part = np.argpartition(-scores, n_probe - 1, axis=1)[:, :n_probe]  # (nq, n_probe)
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)  # (nq, n_lists)
    best = np.take_along_axis(scores, part, axis=1)  # (nq, n_probe)
    order = np.lexsort((part, -best), axis=1)  # (nq, n_probe)
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def lists_to_scan(ranked: np.ndarray, counts: np.ndarray, need: int, n_probe: int) -> int:
    """Lists a query scans: at least `n_probe`, more until they hold `need` allowed items.

    Args:
        ranked: int64 (n_lists,), every list, best first.
        counts: int (n_lists,), allowed items per list.
        need: Allowed items the scanned lists must hold (capped by the total).
        n_probe: Lists scanned when they already hold enough.
    """
    total = np.cumsum(counts[ranked])  # (n_lists,)
    need = min(need, int(total[-1])) if len(total) else 0
    return max(min(n_probe, len(ranked)), int(np.searchsorted(total, need)) + 1 if need else 0)
