"""Numba kernels on sign bits and int8 rows, parallel over rows: Hamming and int8 scans, top rows by count.

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
