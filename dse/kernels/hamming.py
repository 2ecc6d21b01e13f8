"""Numba kernels, parallel over pages (or rows) on every core.

Bits are sign bits packed little-endian into uint64 words (`dse.engines.quantize.pack_signs`);
for unit vectors the Hamming distance h between two D-bit codes gives the +-1 dot product
``D - 2 h``, a cheap proxy of their cosine. `popcount` is LLVM's ``ctpop`` (one VPOPCNTQ per
word on AVX-512 machines, POPCNT elsewhere). Importing this module compiles nothing: numba
compiles each kernel on first call and caches the machine code next to this file.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic


@intrinsic
def _popcount(typingctx, x):  # noqa: ANN001, ANN202 - numba intrinsic signature
    """Population count of a uint64 (llvm.ctpop), as int64 (no signed/unsigned mixing downstream)."""
    sig = types.int64(types.uint64)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.ctpop(args[0])

    return sig, codegen


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


@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _maxsim_rows(q, q_offsets, tokens, scales, offsets, pages):  # noqa: ANN001, ANN202
    # each page token is converted to float32 once, then dotted with 4 query tokens at a time
    n_queries = len(q_offsets) - 1
    n_tokens, dim = q.shape
    out = np.zeros((n_queries, len(pages)), np.float32)  # (nq, m)
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
            s = scales[j]
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
        for qi in range(n_queries):
            total = np.float32(0.0)
            for i in range(q_offsets[qi], q_offsets[qi + 1]):
                total += best[i]
            out[qi, pi] = total
    return out


@njit(parallel=True, cache=True, nogil=True)
def _hamming_scores(q_bits, bits, dim):  # noqa: ANN001, ANN202
    n, words = bits.shape
    out = np.empty((q_bits.shape[0], n), np.int32)  # (nq, n)
    for r in prange(n):
        for qi in range(q_bits.shape[0]):
            h = np.int64(0)
            for w in range(words):
                h += _popcount(q_bits[qi, w] ^ bits[r, w])
            out[qi, r] = dim - 2 * h
    return out


@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _int8_scores(q, codes, scales):  # noqa: ANN001, ANN202
    n, dim = codes.shape
    out = np.empty((q.shape[0], n), np.float32)  # (nq, n)
    for r in prange(n):
        for qi in range(q.shape[0]):
            acc = np.float32(0.0)
            for d in range(dim):
                acc += q[qi, d] * np.float32(codes[r, d])
            out[qi, r] = acc * scales[r]
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
        tokens: int8 or float32 (tokens, dim), the pages' stored tokens.
        scales: float32 (tokens,), per-token scale (ones for float tokens).
        offsets: int64 (n_pages + 1,).
        pages: int64 (m,) pages to score (default: all).

    Returns:
        float32 (n_queries, m).
    """
    return _maxsim_rows(
        np.ascontiguousarray(q, dtype=np.float32), np.ascontiguousarray(q_offsets, dtype=np.int64),
        np.asarray(tokens), np.asarray(scales, dtype=np.float32), np.asarray(offsets, dtype=np.int64),
        _pages(pages, len(offsets) - 1),
    )


def hamming_scores(q_bits: np.ndarray, bits: np.ndarray, dim: int) -> np.ndarray:
    """+-1 dot products ``dim - 2 * hamming``: int32 (n_queries, n_rows) from uint64 codes."""
    if q_bits.shape[1] != bits.shape[1]:
        raise ValueError(f"query codes have {q_bits.shape[1]} words, row codes {bits.shape[1]}")
    return _hamming_scores(np.ascontiguousarray(q_bits), np.asarray(bits), int(dim))


def int8_scores(q: np.ndarray, codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Inner products with int8 rows: float32 (n_queries, n_rows) = q @ (codes * scales).T."""
    return _int8_scores(np.ascontiguousarray(q, dtype=np.float32), np.asarray(codes), np.asarray(scales, np.float32))


def threads() -> int:
    """Threads numba runs the kernels on."""
    return int(numba.get_num_threads())


@njit(cache=True, nogil=True)
def _top_integer(scores, allowed, lo, n):  # noqa: ANN001, ANN202
    """Indices of the n best allowed integer scores in [lo, lo + bins) by counting (ties: lower index)."""
    bins = np.zeros(2 * abs(lo) + 2, np.int64)
    for r in range(len(scores)):
        if allowed[r]:
            bins[scores[r] - lo] += 1
    cut, seen = len(bins) - 1, 0
    while cut > 0 and seen + bins[cut] < n:
        seen += bins[cut]
        cut -= 1
    take_at_cut = n - seen
    out = np.empty(min(n, seen + bins[cut]), np.int64)
    m = 0
    for r in range(len(scores)):
        if allowed[r]:
            b = scores[r] - lo
            if b > cut or (b == cut and take_at_cut > 0):
                if b == cut:
                    take_at_cut -= 1
                out[m] = r
                m += 1
    return out[:m]


def top_hamming(scores: np.ndarray, allowed: np.ndarray, dim: int, n: int) -> np.ndarray:
    """The `n` best allowed rows of one query's `hamming_scores` row (int32 in [-dim, dim]): int64 (<= n,)."""
    return _top_integer(np.asarray(scores, np.int32), np.asarray(allowed, np.bool_), -int(dim) - 1, int(n))


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
