"""Numba kernel grouping a page's tokens by its coarse clusters, for MaxSim pruned to them.

Within each page, the cascade stores tokens grouped by the page's coarse cluster they belong
to (`kmeans_labels` assigns them), so cluster c of a page is the token range ``spans[c] ..
spans[c + 1]`` that `dse.kernels.maxsim.maxsim_pruned` scans.
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
