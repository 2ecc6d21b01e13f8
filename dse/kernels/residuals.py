"""Residual-compressed tokens (ColBERTv2 / PLAID / WARP): packing, lookup tables, token-level scoring.

A token is stored as its centroid id plus its residual (token - centroid), each dimension cut
into ``2**bits`` buckets (shared cutoffs) and decoded as the bucket's weight. With ``8 // bits``
dimensions a byte, the residual's dot product with a query token is a sum of one table lookup
per byte: ``lut[i, j, code[j]]`` (`luts`). `warp_scores` walks the probed centroids' token
lists, scores every token as ``sim(q_i, centroid) + residual lookups``, keeps each page's best
per query token, and imputes pages that no probed token reached (WARP's missing-similarity
estimate). Importing this module compiles nothing.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

BITS = (2, 4)


def bytes_per_token(dim: int, bits: int) -> int:
    """Bytes of one packed residual (dimensions padded to a whole byte)."""
    per = 8 // bits
    return -(-dim // per)


def buckets(residuals: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket cutoffs float32 (2**bits - 1,) and weights float32 (2**bits,) from a sample of residual values."""
    n = 1 << bits
    values = np.asarray(residuals, np.float32).ravel()  # (values,)
    if not len(values):
        return np.zeros(n - 1, np.float32), np.zeros(n, np.float32)
    cutoffs = np.quantile(values, np.arange(1, n) / n).astype(np.float32)  # (n - 1,)
    weights = np.quantile(values, (np.arange(n) + 0.5) / n).astype(np.float32)  # (n,)
    return cutoffs, weights


def pack(residuals: np.ndarray, cutoffs: np.ndarray, bits: int) -> np.ndarray:
    """Residuals float32 (T, dim) as bucket codes, `8 // bits` dimensions a byte: uint8 (T, bytes)."""
    t, dim = residuals.shape
    per, nbytes = 8 // bits, bytes_per_token(dim, bits)
    codes = np.zeros((t, nbytes * per), np.uint8)  # (T, padded dim)
    for cut in np.asarray(cutoffs, np.float32):  # bucket of each value: the cutoffs below it (searchsorted's, 4x faster)
        codes[:, :dim] += residuals > cut
    codes = codes.reshape(t, nbytes, per)  # (T, bytes, per)
    out = np.zeros((t, nbytes), np.uint8)  # (T, bytes)
    for k in range(per):
        out |= codes[:, :, k] << np.uint8(bits * k)
    return out


def unpack(codes: np.ndarray, weights: np.ndarray, bits: int, dim: int) -> np.ndarray:
    """Decoded residuals float32 (T, dim) of packed `codes` (T, bytes) (the tests' oracle)."""
    per, mask = 8 // bits, (1 << bits) - 1
    digits = np.stack([(codes >> np.uint8(bits * k)) & np.uint8(mask) for k in range(per)], axis=2)  # (T, bytes, per)
    return weights[digits.reshape(len(codes), -1)[:, :dim]].astype(np.float32)


def luts(q: np.ndarray, weights: np.ndarray, bits: int) -> np.ndarray:
    """Per query token, per byte, per byte value: the residual's dot product: float32 (qt, bytes, 256)."""
    qt, dim = q.shape
    per, nbytes = 8 // bits, bytes_per_token(dim, bits)
    padded = np.zeros((qt, nbytes * per), np.float32)  # (qt, padded dim): padded dimensions weigh 0
    padded[:, :dim] = q
    v = np.arange(256)
    digits = np.stack([(v >> (bits * k)) & ((1 << bits) - 1) for k in range(per)], axis=1)  # (256, per)
    return np.einsum("qbk,vk->qbv", padded.reshape(qt, nbytes, per), weights[digits]).astype(np.float32)


@njit(parallel=True, cache=True, nogil=True)
def _warp(probe_sim, probe, impute, offsets, pages, codes, lut, allowed, best):  # noqa: ANN001, ANN202
    qt, n_probe = probe.shape
    nbytes = codes.shape[1]
    for i in prange(qt):  # each query token owns its row of `best`
        for r in range(n_probe):
            c = probe[i, r]
            base = probe_sim[i, r]
            for t in range(offsets[c], offsets[c + 1]):
                p = pages[t]
                if not allowed[p]:
                    continue
                s = base
                for j in range(nbytes):
                    s += lut[i, j, codes[t, j]]
                if s > best[i, p]:
                    best[i, p] = s
    n_pages = best.shape[1]
    out = np.zeros(n_pages, np.float32)
    for i in range(qt):
        for p in range(n_pages):
            out[p] += max(best[i, p], impute[i])
    return out


def warp_scores(
    probe_sim: np.ndarray, probe: np.ndarray, impute: np.ndarray, offsets: np.ndarray, pages: np.ndarray,
    codes: np.ndarray, lut: np.ndarray, allowed: np.ndarray,
) -> np.ndarray:
    """Approximate MaxSim of one query against one segment's pages from residual token lists.

    Args:
        probe_sim: float32 (query_tokens, n_probe), the query token's similarity to each probed centroid.
        probe: int64 (query_tokens, n_probe), the centroids probed per query token.
        impute: float32 (query_tokens,), the score of a page no probed token of which reached.
        offsets: int64 (n_centroids + 1,), each centroid's range of `pages` / `codes`.
        pages: int32 (T,), the local page of each listed token.
        codes: uint8 (T, bytes), each listed token's packed residual.
        lut: float32 (query_tokens, bytes, 256), `luts` of the query.
        allowed: bool (n_pages,), pages that may score (others get -inf).

    Returns:
        float32 (n_pages,): sum over query tokens of max(best probed token's score, impute).
    """
    n_pages = len(allowed)
    best = np.full((len(probe), n_pages), -np.inf, np.float32)  # (query_tokens, n_pages)
    out = _warp(np.ascontiguousarray(probe_sim, np.float32), np.ascontiguousarray(probe, np.int64),
                np.asarray(impute, np.float32), np.asarray(offsets, np.int64), pages, codes,
                np.ascontiguousarray(lut, np.float32), np.asarray(allowed, np.bool_), best)
    out[~allowed] = -np.inf
    return out
