"""Numba kernels clustering each page's tokens: its coarse summary (`kmeans_pages`) and each token's cluster.

The cascade's coarse tier holds each page's `kmeans_pages` centroids; within each page it stores
the tokens grouped by the coarse cluster they belong to (`kmeans_labels` assigns them), so
cluster c of a page is the token range ``spans[c] .. spans[c + 1]`` that
`dse.kernels.maxsim.maxsim_pruned` scans.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _kmeans_labels(tokens, offsets, centroids, c_offsets):  # noqa: ANN001, ANN202
    labels = np.zeros(len(tokens), np.int64)
    dim = tokens.shape[1]
    for p in prange(len(offsets) - 1):
        c0, c1 = c_offsets[p], c_offsets[p + 1]
        for j in range(offsets[p], offsets[p + 1]):
            best, arg = np.float32(-np.inf), 0
            for c in range(c0, c1):
                acc = np.float32(0.0)
                for d in range(dim):
                    acc += tokens[j, d] * centroids[c, d]
                if acc > best:
                    best, arg = acc, c - c0
            labels[j] = arg
    return labels


def kmeans_labels(tokens: np.ndarray, offsets: np.ndarray, centroids: np.ndarray, c_offsets: np.ndarray) -> np.ndarray:
    """Each token's most similar centroid of its own page: int64 (T,) indices within the page.

    Args:
        tokens: float32 (T, dim), pages stacked.
        offsets: int64 (pages + 1,), token ranges of the pages.
        centroids: float32 (C, dim), the pages' centroids stacked (`kmeans_pages`).
        c_offsets: int64 (pages + 1,), centroid ranges of the pages.
    """
    return _kmeans_labels(
        np.ascontiguousarray(tokens, np.float32), np.asarray(offsets, np.int64),
        np.ascontiguousarray(centroids, np.float32), np.asarray(c_offsets, np.int64),
    )


@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _kmeans_pages(tokens, offsets, n, iterations, out_offsets):  # noqa: ANN001, ANN202
    dim = tokens.shape[1]
    out = np.zeros((out_offsets[-1], dim), np.float32)
    for p in prange(len(offsets) - 1):
        t0, t1, c0 = offsets[p], offsets[p + 1], out_offsets[p]
        t, k = t1 - t0, out_offsets[p + 1] - out_offsets[p]
        cent = np.empty((k, dim), np.float32)
        for c in range(k):  # evenly spaced tokens (all of them when t <= n)
            src = t0 + (c * (t - 1)) // max(k - 1, 1) if k > 1 else t0
            cent[c] = tokens[src]
        if t > n:
            labels = np.empty(t, np.int64)
            for _ in range(iterations):
                for j in range(t):
                    best, arg = np.float32(-np.inf), 0
                    for c in range(k):
                        acc = np.float32(0.0)
                        for d in range(dim):
                            acc += tokens[t0 + j, d] * cent[c, d]
                        if acc > best:
                            best, arg = acc, c
                    labels[j] = arg
                sums = np.zeros((k, dim), np.float32)
                for j in range(t):
                    sums[labels[j]] += tokens[t0 + j]
                for c in range(k):
                    norm = np.sqrt(np.sum(sums[c] * sums[c]))
                    if norm > 0:
                        cent[c] = sums[c] / norm
        out[c0 : c0 + k] = cent
    return out


def kmeans_pages(tokens: np.ndarray, offsets: np.ndarray, n: int, iterations: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means summary of every page in at most `n` tokens (parallel over pages).

    Centroids start at evenly spaced tokens of the page; `iterations` rounds of assign-by-dot
    and re-normalised means follow (an emptied cluster keeps its centroid). Pages with at most
    `n` tokens are kept as they are.

    Returns:
        float32 (sum of min(n, t_p), dim) centroids and int64 (n_pages + 1,) offsets.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    counts = np.minimum(np.diff(offsets), int(n))  # (n_pages,)
    out_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # (n_pages + 1,)
    tokens = np.ascontiguousarray(tokens, dtype=np.float32)  # (T, dim)
    return _kmeans_pages(tokens, offsets, int(n), int(iterations), out_offsets), out_offsets
