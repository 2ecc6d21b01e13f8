"""MaxSim, every form the engines score, one convention: ``sum_i max_j <q_i, p_j>`` per query and page.

Queries' tokens come stacked with `q_offsets` (int64 (n_queries + 1,)), pages' tokens stacked
with `offsets` (int64 (n_pages + 1,)); each function scores pages (all, a range or a subset)
and returns (n_queries, m):

- `maxsim_dense`: float32 tokens, exact, one BLAS product per block (`MaxSimEngine`).
- `maxsim_rows`: int8, float16 or float32 tokens (int8 with per-token scales), float32 accumulation
  (numba; the cascade's exact and int8 coarse tiers).
- `maxsim_pruned`: `maxsim_rows` restricted to each query token's `probe` best clusters of the
  page (the cascade's int8 exact tier with `cluster_probe`): a lower bound of MaxSim that
  equals it whenever each query token's best page token lies in one of those clusters.
- `hamming_maxsim`: sign bits, ``dim - 2 * hamming`` as the token similarity (the cascade's
  binary tiers).

The centroid interaction of the cascade's token lists (`dse.kernels.postings.centroid_maxsim`)
is MaxSim over precomputed centroid similarities. Importing this module compiles nothing.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from dse.kernels.hamming import _popcount


def maxsim_dense(
    q_all: np.ndarray | None, q_lengths: np.ndarray, tokens: np.ndarray, offsets: np.ndarray, a: int, b: int
) -> np.ndarray:
    """Exact MaxSim of every query against pages [a, b): float32 (nq, b - a).

    Args:
        q_all: float32 (query_tokens, dim), the queries' tokens stacked (None: no query has any).
        q_lengths: int64 (nq,), tokens of each query.
        tokens: float32 (T, dim), the pages' tokens stacked (may be memory-mapped).
        offsets: int64 (n_pages + 1,), token ranges of the pages.
        a, b: The pages scored; a page or a query without tokens scores 0.
    """
    nq, nb = len(q_lengths), b - a
    out = np.zeros((nq, nb), np.float32)  # (nq, nb)
    t0, t1 = int(offsets[a]), int(offsets[b])
    if q_all is None or t1 == t0:
        return out
    page_tokens = np.asarray(tokens[t0:t1])  # (T, dim)
    sim = q_all @ page_tokens.T  # (q_tokens, T)
    lengths = np.diff(offsets[a : b + 1])  # (nb,)
    full = lengths > 0
    per_token = np.zeros((q_all.shape[0], nb), np.float32)  # (q_tokens, nb)
    per_token[:, full] = np.maximum.reduceat(sim, offsets[a:b][full] - t0, axis=1)
    q_full = q_lengths > 0
    q_starts = np.concatenate([[0], np.cumsum(q_lengths)[:-1]])[q_full]  # (nq_nonempty,)
    out[q_full] = np.add.reduceat(per_token, q_starts, axis=0)  # (nq_nonempty, nb)
    return out


@njit(parallel=True, cache=True, nogil=True)
def _hamming_maxsim(q_t, q_offsets, bits, offsets, pages, dim):  # noqa: ANN001, ANN202
    # q_t: (words, query_tokens), transposed so the inner loop runs over query tokens (SIMD popcount)
    words, n_tokens = q_t.shape
    n_queries = len(q_offsets) - 1
    out = np.zeros((n_queries, len(pages)), np.int32)  # (nq, m)
    for pi in prange(len(pages)):
        p = pages[pi]
        t0, t1 = offsets[p], offsets[p + 1]
        if t1 == t0:
            continue
        best = np.full(n_tokens, words * 64, np.int64)  # (query_tokens,) least distance so far
        if words == 2:
            for j in range(t0, t1):
                b0, b1 = bits[j, 0], bits[j, 1]
                for i in range(n_tokens):
                    best[i] = min(best[i], _popcount(q_t[0, i] ^ b0) + _popcount(q_t[1, i] ^ b1))
        else:
            h = np.empty(n_tokens, np.int64)  # (query_tokens,)
            for j in range(t0, t1):
                h[:] = 0
                for w in range(words):
                    b = bits[j, w]
                    for i in range(n_tokens):
                        h[i] += _popcount(q_t[w, i] ^ b)
                for i in range(n_tokens):
                    best[i] = min(best[i], h[i])
        for qi in range(n_queries):
            total = 0
            for i in range(q_offsets[qi], q_offsets[qi + 1]):
                total += dim - 2 * best[i]
            out[qi, pi] = total
    return out


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _row_best(q, row, s, best):  # noqa: ANN001, ANN202
    # best[i] = max(best[i], s * <q_i, row>) for every query token, 4 query tokens at a time
    n_tokens, dim = q.shape
    for i in range(0, n_tokens - 3, 4):
        a0 = a1 = a2 = a3 = np.float32(0.0)
        for d in range(dim):
            x = row[d]
            a0 += q[i, d] * x
            a1 += q[i + 1, d] * x
            a2 += q[i + 2, d] * x
            a3 += q[i + 3, d] * x
        best[i] = max(best[i], a0 * s)
        best[i + 1] = max(best[i + 1], a1 * s)
        best[i + 2] = max(best[i + 2], a2 * s)
        best[i + 3] = max(best[i + 3], a3 * s)
    for i in range(n_tokens - n_tokens % 4, n_tokens):
        acc = np.float32(0.0)
        for d in range(dim):
            acc += q[i, d] * row[d]
        best[i] = max(best[i], acc * s)


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _sums(best, q_offsets, out, pi):  # noqa: ANN001, ANN202
    for qi in range(len(q_offsets) - 1):
        total = np.float32(0.0)
        for i in range(q_offsets[qi], q_offsets[qi + 1]):
            total += best[i]
        out[qi, pi] = total


@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _maxsim_rows(q, q_offsets, tokens, scales, offsets, pages):  # noqa: ANN001, ANN202
    # each page token is converted to float32 once, then dotted with 4 query tokens at a time
    n_tokens, dim = q.shape
    out = np.zeros((len(q_offsets) - 1, len(pages)), np.float32)  # (nq, m)
    for pi in prange(len(pages)):
        p = pages[pi]
        t0, t1 = offsets[p], offsets[p + 1]
        if t1 == t0:
            continue
        best = np.full(n_tokens, -np.inf, np.float32)  # (query_tokens,)
        row = np.empty(dim, np.float32)  # (dim,)
        for j in range(t0, t1):
            for d in range(dim):
                row[d] = np.float32(tokens[j, d])
            _row_best(q, row, scales[j], best)
        _sums(best, q_offsets, out, pi)
    return out


@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _maxsim_rows_f16(q, q_offsets, halves, offsets, pages):  # noqa: ANN001, ANN202
    # float16 tokens as their uint16 bits (numba has no float16): each converted to float32 once
    # (exponent rebased by a multiply by 2**112, exact for normal and subnormal halves), then as above
    n_tokens, dim = q.shape
    out = np.zeros((len(q_offsets) - 1, len(pages)), np.float32)  # (nq, m)
    for pi in prange(len(pages)):
        p = pages[pi]
        t0, t1 = offsets[p], offsets[p + 1]
        if t1 == t0:
            continue
        best = np.full(n_tokens, -np.inf, np.float32)  # (query_tokens,)
        bits = np.empty(dim, np.uint32)  # (dim,)
        row = bits.view(np.float32)  # (dim,) the same memory
        sign = np.empty(dim, np.float32)  # (dim,)
        for j in range(t0, t1):
            for d in range(dim):
                h = np.uint32(halves[j, d])
                bits[d] = (h & np.uint32(0x7FFF)) << np.uint32(13)
                sign[d] = np.float32(1.0) - np.float32(2.0) * np.float32(h >> np.uint32(15))
            for d in range(dim):
                row[d] = row[d] * np.float32(5.192296858534828e33) * sign[d]  # 2**112
            _row_best(q, row, np.float32(1.0), best)
        _sums(best, q_offsets, out, pi)
    return out


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


def _pages(pages: np.ndarray | None, n_pages: int) -> np.ndarray:
    if pages is None:
        return np.arange(n_pages, dtype=np.int64)
    return np.ascontiguousarray(pages, dtype=np.int64)


def hamming_maxsim(
    q_bits: np.ndarray, q_offsets: np.ndarray, bits: np.ndarray, offsets: np.ndarray, dim: int,
    pages: np.ndarray | None = None,
) -> np.ndarray:
    """Binary MaxSim: for each query and page, ``sum_i max_j (dim - 2 * hamming(q_i, p_j))``.

    Args:
        q_bits: uint64 (query_tokens, words), the queries' tokens stacked.
        q_offsets: int64 (n_queries + 1,), token ranges of the queries.
        bits: uint64 (tokens, words), the pages' tokens stacked.
        offsets: int64 (n_pages + 1,), token ranges of the pages.
        dim: Number of real bits per token (the vector width).
        pages: int64 (m,) pages to score (default: all).

    Returns:
        int32 (n_queries, m); a page without tokens scores 0.
    """
    if q_bits.shape[1] != bits.shape[1]:
        raise ValueError(f"query codes have {q_bits.shape[1]} words, page codes {bits.shape[1]}")
    return _hamming_maxsim(
        np.ascontiguousarray(np.asarray(q_bits).T), np.ascontiguousarray(q_offsets, dtype=np.int64), np.asarray(bits),
        np.asarray(offsets, dtype=np.int64), _pages(pages, len(offsets) - 1), int(dim),
    )


def maxsim_rows(
    q: np.ndarray, q_offsets: np.ndarray, tokens: np.ndarray, scales: np.ndarray, offsets: np.ndarray,
    pages: np.ndarray | None = None,
) -> np.ndarray:
    """MaxSim over quantized tokens: ``sum_i max_j scale_j * <q_i, tokens_j>`` (float32 accumulate).

    Args:
        q: float32 (query_tokens, dim), the queries' tokens stacked.
        q_offsets: int64 (n_queries + 1,).
        tokens: int8, float16 or float32 (tokens, dim), the pages' stored tokens (may be memory-mapped).
        scales: float32 (tokens,), per-token scale (ones for float tokens; ignored for float16).
        offsets: int64 (n_pages + 1,).
        pages: int64 (m,) pages to score (default: all).

    Returns:
        float32 (n_queries, m).
    """
    q = np.ascontiguousarray(q, dtype=np.float32)
    q_offsets = np.ascontiguousarray(q_offsets, dtype=np.int64)
    tokens, offsets = np.asarray(tokens), np.asarray(offsets, dtype=np.int64)
    if tokens.dtype == np.float16:
        return _maxsim_rows_f16(q, q_offsets, tokens.view(np.uint16), offsets, _pages(pages, len(offsets) - 1))
    return _maxsim_rows(q, q_offsets, tokens, np.asarray(scales, dtype=np.float32), offsets,
                        _pages(pages, len(offsets) - 1))


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
