"""Compact codes for token and page vectors: sign bits, int8, float16, and token pooling.

- `pack_signs`: one bit per dimension (x > 0), packed little-endian into uint64 words
  (128 dims -> 2 words = 16 bytes).
- `int8_encode` / `int8_decode`: symmetric per-row int8 with scale ``max|x| / 127``; the
  decoded value is within ``scale / 2`` of the original in every dimension.
- `fp16_encode`: float16, relative error <= 2**-11 per element (for values in float16 range).
- `pool_tokens`: hierarchical (Ward) clustering of a page's tokens by cosine distance, each
  cluster replaced by its mean, as colpali-engine's `HierarchicalTokenPooler`: `factor` 2 keeps
  about half the tokens.
- `coarse_tokens`: spherical k-means summary of one page in `n` tokens; the numpy reference
  of the compiled `kernels.kmeans_pages` that builds the cascade's resident coarse tier.
"""

from __future__ import annotations

import numpy as np


def pack_signs(x: np.ndarray) -> np.ndarray:
    """Sign bits of float rows (n, dim) -> uint64 (n, ceil(dim / 64)); bit set where x > 0."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array (n, dim), got shape {x.shape}")
    words = -(-x.shape[1] // 64)
    packed = np.packbits(x > 0, axis=1, bitorder="little")  # (n, ceil(dim / 8)) uint8
    out = np.zeros((x.shape[0], words * 8), np.uint8)  # (n, words * 8)
    out[:, : packed.shape[1]] = packed
    return out.view("<u8").astype(np.uint64, copy=False)  # (n, words)


def int8_encode(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: codes int8 (n, dim) and scales float32 (n,) (0 rows get scale 0)."""
    x = np.asarray(x, dtype=np.float32)  # (n, dim)
    scales = np.abs(x).max(axis=1, initial=0.0) / 127.0  # (n,)
    safe = np.where(scales > 0, scales, 1.0)  # (n,)
    codes = np.clip(np.rint(x / safe[:, None]), -127, 127).astype(np.int8)  # (n, dim)
    return codes, scales.astype(np.float32)


def int8_decode(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Float32 (n, dim) rows back from `int8_encode`."""
    return np.asarray(codes, np.float32) * np.asarray(scales, np.float32)[:, None]  # (n, dim)


def fp16_encode(x: np.ndarray) -> np.ndarray:
    """Float16 copy of float rows (n, dim)."""
    return np.asarray(x, dtype=np.float16)


def pool_tokens(tokens: np.ndarray, factor: int) -> np.ndarray:
    """Hierarchical token pooling of one page: float32 (max(1, tokens // factor), dim).

    Ward linkage over cosine distances (scipy), cut into ``tokens // factor`` clusters; each
    cluster becomes the mean of its tokens (cluster order: first token of each cluster).

    Raises:
        ValueError: `factor` < 1 or `tokens` is not 2-D.
    """
    if isinstance(factor, bool) or int(factor) != factor or factor < 1:
        raise ValueError(f"pool factor must be a positive integer, got {factor!r}")
    tokens = np.asarray(tokens, dtype=np.float32)  # (t, dim)
    if tokens.ndim != 2:
        raise ValueError(f"expected a page of shape (tokens, dim), got {tokens.shape}")
    t = tokens.shape[0]
    n_clusters = max(1, t // int(factor))
    if factor == 1 or t <= 1 or n_clusters >= t:
        return tokens.copy()
    from scipy.cluster.hierarchy import fcluster, linkage

    unit = tokens / np.maximum(np.linalg.norm(tokens, axis=1, keepdims=True), 1e-12)  # (t, dim)
    dist = np.clip(1.0 - unit @ unit.T, 0.0, 2.0).astype(np.float64)  # (t, t)
    condensed = dist[np.triu_indices(t, k=1)]  # (t * (t - 1) / 2,)
    labels = fcluster(linkage(condensed, method="ward"), t=n_clusters, criterion="maxclust") - 1  # (t,)
    _, first, labels = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(first)  # clusters in order of their first token
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return _cluster_means(tokens, rank[labels], len(order))


def _cluster_means(tokens: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Mean of the tokens of each of `n` labels: float32 (n, dim)."""
    sums = np.zeros((n, tokens.shape[1]), np.float64)  # (n, dim)
    np.add.at(sums, labels, tokens)
    counts = np.bincount(labels, minlength=n).astype(np.float64)  # (n,)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def coarse_tokens(tokens: np.ndarray, n: int, iterations: int = 4) -> np.ndarray:
    """Summarise one page in at most `n` tokens by spherical k-means: float32 (min(n, t), dim).

    Deterministic: the centroids start at evenly spaced tokens, then `iterations` rounds of
    assign-by-cosine and re-average (an emptied cluster keeps its previous centroid).
    """
    tokens = np.asarray(tokens, dtype=np.float32)  # (t, dim)
    t = tokens.shape[0]
    if n < 1:
        raise ValueError(f"coarse token count must be >= 1, got {n!r}")
    if t <= n:
        return tokens.copy()
    centroids = tokens[np.linspace(0, t - 1, n).astype(np.int64)].copy()  # (n, dim)
    for _ in range(iterations):
        labels = np.argmax(tokens @ centroids.T, axis=1)  # (t,)
        onehot = (labels[:, None] == np.arange(n)).astype(np.float32)  # (t, n)
        sums = onehot.T @ tokens  # (n, dim)
        filled = onehot.any(axis=0)  # (n,)
        centroids[filled] = sums[filled] / np.maximum(np.linalg.norm(sums[filled], axis=1, keepdims=True), 1e-12)
    return centroids
