"""Numba kernels for MaxSim restricted to a page's best token clusters.

Within each page, the cascade stores tokens grouped by the page's coarse cluster they belong
to (`kmeans_labels` assigns them), so cluster c of a page is the token range ``spans[c] ..
spans[c + 1]``. `maxsim_pruned` scores each query token against the page's coarse centroids,
then takes the exact maximum over the tokens of its `probe` best clusters only: a lower bound
of MaxSim that equals it whenever each query token's best page token lies in one of those
clusters (it is its nearest centroid's cluster, for almost every token).
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
def _maxsim_pruned(q, q_offsets, tokens, scales, spans, centroids, c_scales, c_offsets, pages, probe):  # noqa: ANN001, ANN202
    n_queries = len(q_offsets) - 1
    n_tokens, dim = q.shape
    out = np.zeros((n_queries, len(pages)), np.float32)  # (nq, m)
    for pi in prange(len(pages)):
        p = pages[pi]
        c0, c1 = c_offsets[p], c_offsets[p + 1]
        if c1 == c0:
            continue
        sims = np.empty(c1 - c0, np.float32)  # (clusters,)
        best = np.full(n_tokens, -np.inf, np.float32)  # (query_tokens,)
        for i in range(n_tokens):
            for c in range(c0, c1):
                acc = np.float32(0.0)
                for d in range(dim):
                    acc += q[i, d] * np.float32(centroids[c, d])
                sims[c - c0] = acc * c_scales[c]
            for _ in range(min(probe, c1 - c0)):
                arg = np.argmax(sims)
                sims[arg] = -np.inf
                for j in range(spans[c0 + arg], spans[c0 + arg + 1]):
                    acc = np.float32(0.0)
                    for d in range(dim):
                        acc += q[i, d] * np.float32(tokens[j, d])
                    best[i] = max(best[i], acc * scales[j])
        for qi in range(n_queries):
            total = np.float32(0.0)
            for i in range(q_offsets[qi], q_offsets[qi + 1]):
                if best[i] > -np.inf:
                    total += best[i]
            out[qi, pi] = total
    return out


def maxsim_pruned(
    q: np.ndarray, q_offsets: np.ndarray, tokens: np.ndarray, scales: np.ndarray, spans: np.ndarray,
    centroids: np.ndarray, c_scales: np.ndarray, c_offsets: np.ndarray, pages: np.ndarray, probe: int,
) -> np.ndarray:
    """MaxSim over the tokens of each query token's `probe` best clusters of every page.

    Args:
        q: float32 (query_tokens, dim), the queries' tokens stacked.
        q_offsets: int64 (n_queries + 1,).
        tokens: int8 or float32 (T, dim), page tokens grouped by cluster within each page.
        scales: float32 (T,), per-token scale.
        spans: int64 (C + 1,), token range of each cluster.
        centroids: int8 or float32 (C, dim), the clusters' centroids; c_scales: float32 (C,).
        c_offsets: int64 (pages + 1,), cluster ranges of the pages.
        pages: int64 (m,), pages to score.
        probe: Clusters scanned per query token.

    Returns:
        float32 (n_queries, m).
    """
    return _maxsim_pruned(
        np.ascontiguousarray(q, np.float32), np.asarray(q_offsets, np.int64), np.asarray(tokens),
        np.asarray(scales, np.float32), np.asarray(spans, np.int64), np.asarray(centroids),
        np.asarray(c_scales, np.float32), np.asarray(c_offsets, np.int64), np.asarray(pages, np.int64), int(probe),
    )
