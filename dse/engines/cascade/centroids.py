"""Nearest centroids of a token codebook at any size: each token's (indexing) and each query token's `n_probe`.

Up to `EXACT_MAX` (16384) centroids, the codebook size of every index written before the
codebook could grow past it, nothing changes: a query computes its similarity to every centroid
and probes the `n_probe` best exactly (`exact_probe`). Above, that product (query tokens x
centroids x dim: 32 x 131072 x 128 is 0.5 GFLOP) would be most of a query's work, so the
centroids are grouped into lists (`CentroidLists`: spherical k-means of the centroids into
K / 64 coarse centroids, built once a codebook and cached): a query token ranks the coarse
centroids, scans its `lists_scanned(n_probe)` best lists (exact dot products) and probes the
`n_probe` best centroids scanned (`listed_probe`).

The missing-similarity estimate WARP needs (the score of a page none of whose tokens lie in a
probed list) is the (n_probe + 1)-th best similarity scanned. It is never above the exact path's
(the (p+1)-th best of a subset of the centroids is at most the (p+1)-th best of all of them),
never above a probed centroid's, and equal to the exact one whenever the scanned lists hold the
n_probe + 1 best centroids. A query token whose scanned lists hold n_probe centroids or fewer is
probed exactly.

Tokens find their centroid (`assigner`) by faiss: exactly up to 4096 centroids, then an IVF over
the centroids probing 16 lists: up to EXACT_MAX the IVF indexes have always used (n / 32 lists
trained by faiss), above it one over the same `CentroidLists`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

EXACT_MAX = 16384  # codebooks up to this size are probed exactly, as before
_PER_LIST = 64  # centroids a list (above EXACT_MAX)
_ASSIGN_PROBE = 16  # lists an indexed token's assignment scans
_CACHED = 4  # structures kept (codebooks of an index while it retrains: old and new)
_cache: dict[tuple[str, str], Any] = {}
_lock = threading.RLock()  # re-entrant: the assigner of a large codebook builds its lists


@dataclass(frozen=True)
class CentroidLists:
    """A codebook's centroids grouped by their nearest coarse centroid."""

    coarse: np.ndarray  # (n_lists, dim) float32, unit rows
    offsets: np.ndarray  # (n_lists + 1,) int64 ranges of `members` and `rows`
    members: np.ndarray  # (n_centroids,) int32 centroid ids, list by list
    rows: np.ndarray  # (n_centroids, dim) float32 the centroids in that order (a list is one block:
    # scanning it streams memory; gathering rows by id is bound by memory latency, 7x slower)

    @property
    def nbytes(self) -> int:
        return int(self.coarse.nbytes + self.offsets.nbytes + self.members.nbytes + self.rows.nbytes)


def lists_nbytes(n_centroids: int, dim: int) -> int:
    """Bytes of a codebook's `CentroidLists` once built (0 up to EXACT_MAX: none is built)."""
    n_lists = max(n_centroids // _PER_LIST, 1)
    return 0 if n_centroids <= EXACT_MAX else (n_lists + n_centroids) * dim * 4 + (n_lists + 1) * 8 + n_centroids * 4


def prepare(key: str, centroids: np.ndarray) -> None:
    """Build codebook `key`'s `CentroidLists` now when its queries will need them (the first query would)."""
    if len(centroids) > EXACT_MAX:
        lists_of(key, centroids)


def lists_scanned(n_probe: int) -> int:
    """Lists a query token scans to probe `n_probe` centroids: 2 n_probe, at least 32."""
    return max(32, 2 * n_probe)


def _cached(kind: str, key: str, build: Callable[[], Any]) -> Any:
    """The structure `kind` of codebook `key`, built by `build` on first use (the last `_CACHED` kept)."""
    with _lock:
        found = _cache.get((kind, key))
        if found is None:
            found = build()
            while len(_cache) >= _CACHED:
                _cache.pop(next(iter(_cache)))
            _cache[(kind, key)] = found
        return found


def lists_of(key: str, centroids: np.ndarray) -> CentroidLists:
    """The `CentroidLists` of codebook `key` (`centroids` (K, dim)), built once and cached."""
    return _cached("lists", key, lambda: _build_lists(centroids))


def _build_lists(centroids: np.ndarray) -> CentroidLists:
    """K / 64 coarse centroids (faiss spherical k-means, 6 iterations on 16 centroids a list), and
    each centroid in the list of its most similar one (exact)."""
    import faiss

    c = np.ascontiguousarray(centroids, np.float32)  # (K, dim)
    k, dim = c.shape
    n_lists = max(k // _PER_LIST, 1)
    kmeans = faiss.Kmeans(dim, n_lists, niter=6, spherical=True, seed=0, verbose=False,
                          max_points_per_centroid=16, min_points_per_centroid=1)
    kmeans.train(c)
    coarse = np.ascontiguousarray(kmeans.centroids, np.float32)  # (n_lists, dim)
    flat = faiss.IndexFlatIP(dim)
    flat.add(coarse)
    labels = np.concatenate([flat.search(c[a : a + 65536], 1)[1][:, 0] for a in range(0, k, 65536)])  # (K,)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=n_lists))]).astype(np.int64)
    members = np.argsort(labels, kind="stable").astype(np.int32)  # (K,)
    return CentroidLists(coarse, offsets, members, np.ascontiguousarray(c[members]))


def assigner(key: str, centroids: np.ndarray) -> Any:
    """A faiss index over codebook `key`'s `centroids` (n, dim) for nearest-centroid search, built once:
    exact up to 4096; an IVF of n / 32 lists (spherical k-means of the centroids) probing 16 up to
    EXACT_MAX; above, an IVF over `lists_of` (n / 64 lists) probing 16."""
    return _cached("assign", key, lambda: _build_assigner(key, centroids))


def _build_assigner(key: str, centroids: np.ndarray) -> Any:
    """The faiss index `assigner` caches."""
    import faiss

    n, dim = centroids.shape
    c = np.ascontiguousarray(centroids, np.float32)  # (n, dim)
    quantizer = faiss.IndexFlatIP(dim)
    if n <= 4096:
        quantizer.add(c)
        return quantizer
    if n <= EXACT_MAX:
        index = faiss.IndexIVFFlat(quantizer, dim, n // 32, faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical, index.cp.seed, index.cp.niter = True, 0, 10
        index.cp.min_points_per_centroid = 1  # 32 centroids a list: faiss's default minimum warns
        index.train(c)
    else:
        lists = lists_of(key, c)
        quantizer.add(lists.coarse)  # a full quantizer: the IVF is trained as constructed
        index = faiss.IndexIVFFlat(quantizer, dim, len(lists.coarse), faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            index.train(c)  # faiss keeps a full quantizer as it is ("does not need training")
    index.add(c)
    index.nprobe = _ASSIGN_PROBE
    return index


def probe(key: str, centroids: np.ndarray, q: np.ndarray, n_probe: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A query's probe of codebook `key`: exact up to EXACT_MAX centroids (or when `n_probe` reaches
    their number), else through its `CentroidLists`.

    Returns:
        the probed centroids' similarities float32 (qt, p), their ids int64 (qt, p) and the imputed
        score of a page none of whose tokens is in a probed list float32 (qt,), p = min(n_probe, K).
    """
    from dse.kernels.postings import similarities

    if len(centroids) <= EXACT_MAX or n_probe >= len(centroids):
        return exact_probe(similarities(q, centroids), n_probe)
    return listed_probe(lists_of(key, centroids), centroids, q, n_probe, lists_scanned(n_probe))


def exact_probe(sim: np.ndarray, n_probe: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`probe` from every similarity `sim` (qt, K): the `n_probe` best, the best not probed imputed."""
    k = sim.shape[1]
    p = min(n_probe, k)
    if p < k:
        part = np.argpartition(-sim, p, axis=1)  # (qt, K): the p best first, the (p+1)-th at p
        top = part[:, :p]
        impute = np.take_along_axis(sim, part[:, p : p + 1], axis=1)[:, 0]  # best centroid not probed
    else:
        top = np.broadcast_to(np.arange(k), sim.shape)
        impute = np.full(len(sim), -np.inf, np.float32)  # every list probed: nothing is missing
    top = np.ascontiguousarray(top, np.int64)  # (qt, p)
    return np.take_along_axis(sim, top, axis=1).astype(np.float32), top, impute.astype(np.float32)


def listed_probe(
    lists: CentroidLists, centroids: np.ndarray, q: np.ndarray, n_probe: int, n_lists: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`probe` through `lists`: each query token scans its `n_lists` best lists (by coarse similarity);
    `centroids` (K, dim) serve the tokens probed exactly."""
    from dse.kernels.postings import scan_lists, similarities

    q = np.ascontiguousarray(q, np.float32)  # (qt, dim)
    n_coarse = len(lists.coarse)
    n_lists = min(n_lists, n_coarse)
    if n_lists < n_coarse:
        chosen = np.argpartition(-similarities(q, lists.coarse), n_lists - 1, axis=1)[:, :n_lists]  # (qt, n_lists)
    else:
        chosen = np.broadcast_to(np.arange(n_coarse), (len(q), n_coarse))
    chosen = np.ascontiguousarray(chosen, np.int64)
    counts = np.diff(lists.offsets)[chosen].sum(axis=1)  # (qt,) centroids scanned
    p = n_probe
    width = max(int(counts.max()), p + 1)
    sim, ids = scan_lists(q, lists.rows, chosen, lists.offsets, lists.members, width)  # (qt, width) each
    part = np.argpartition(-sim, p, axis=1)  # (qt, width)
    top = np.take_along_axis(ids, part[:, :p], axis=1)  # (qt, p)
    top_sim = np.take_along_axis(sim, part[:, :p], axis=1)  # (qt, p)
    impute = np.take_along_axis(sim, part[:, p : p + 1], axis=1)[:, 0]  # (qt,) best scanned, not probed
    short = np.flatnonzero(counts <= p)
    if len(short):  # too few scanned for the estimate: those tokens are probed exactly
        s, t, m = exact_probe(similarities(q[short], centroids), p)
        top_sim[short], top[short], impute[short] = s, t, m
    return np.ascontiguousarray(top_sim, np.float32), np.ascontiguousarray(top, np.int64), impute.astype(np.float32)
