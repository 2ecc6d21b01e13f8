"""Numba kernels that score one query against slices of resident codes (the probed IVF lists).

Each slice ``[starts[i], stops[i])`` of the codes is scored into one contiguous run of the
output, slices in the order given. Inner loops run over contiguous words (binary) or bytes
(int8) of a row, so LLVM vectorises them. The kernels are single-threaded on purpose: a probe
scans a few thousand rows (tens of microseconds), less than waking a thread pool costs on a
busy machine.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from dse.kernels.hamming import _popcount


@njit(cache=True, nogil=True)
def _hamming_spans(q_bits, bits, starts, stops, out_offsets, dim):
    words = bits.shape[1]
    out = np.empty(out_offsets[-1], np.int32)  # (m,)
    for s in range(len(starts)):
        o = out_offsets[s]
        for r in range(starts[s], stops[s]):
            h = np.int64(0)
            for w in range(words):
                h += _popcount(q_bits[w] ^ bits[r, w])
            out[o + r - starts[s]] = dim - 2 * h
    return out


@njit(cache=True, nogil=True, fastmath=True)
def _int8_spans(q, codes, scales, starts, stops, out_offsets):
    dim = codes.shape[1]
    out = np.empty(out_offsets[-1], np.float32)  # (m,)
    for s in range(len(starts)):
        o = out_offsets[s]
        for r in range(starts[s], stops[s]):
            acc = np.float32(0.0)
            for d in range(dim):
                acc += q[d] * np.float32(codes[r, d])
            out[o + r - starts[s]] = acc * scales[r]
    return out


@njit(cache=True, nogil=True, fastmath=True)
def _dot_rows(rows, take, q):
    out = np.empty(len(take), np.float32)  # (m,)
    for i in range(len(take)):
        r = take[i]
        acc = np.float32(0.0)
        for d in range(rows.shape[1]):
            acc += rows[r, d] * q[d]
        out[i] = acc
    return out


def _offsets(starts: np.ndarray, stops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    starts = np.ascontiguousarray(starts, dtype=np.int64)  # (m,)
    stops = np.ascontiguousarray(stops, dtype=np.int64)  # (m,)
    if starts.shape != stops.shape or (stops < starts).any():
        raise ValueError("starts and stops must be equal-length arrays with stops >= starts")
    out_offsets = np.concatenate([[0], np.cumsum(stops - starts)]).astype(np.int64)  # (m + 1,)
    return starts, stops, out_offsets


def hamming_spans(q_bits: np.ndarray, bits: np.ndarray, starts: np.ndarray, stops: np.ndarray, dim: int) -> np.ndarray:
    """+-1 dot products ``dim - 2 * hamming`` of one query with rows ``bits[starts[i]:stops[i]]``.

    Args:
        q_bits: uint64 (words,), the query's sign bits.
        bits: uint64 (n, words), resident row codes.
        starts: int64 (m,), first row of each slice.
        stops: int64 (m,), end of each slice.
        dim: Number of real bits (the vector width).

    Returns:
        int32 (sum of slice lengths,), slice after slice.
    """
    q_bits = np.ascontiguousarray(q_bits, dtype=np.uint64).reshape(-1)  # (words,)
    if q_bits.shape[0] != bits.shape[1]:
        raise ValueError(f"query code has {q_bits.shape[0]} words, row codes {bits.shape[1]}")
    return _hamming_spans(q_bits, np.asarray(bits), *_offsets(starts, stops), int(dim))


def int8_spans(q: np.ndarray, codes: np.ndarray, scales: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Inner products of one float query (dim,) with int8 rows ``codes[starts[i]:stops[i]] * scales``.

    Returns:
        float32 (sum of slice lengths,), slice after slice.
    """
    q = np.ascontiguousarray(q, dtype=np.float32).reshape(-1)  # (dim,)
    if q.shape[0] != codes.shape[1]:
        raise ValueError(f"query has dim {q.shape[0]}, row codes {codes.shape[1]}")
    return _int8_spans(q, np.asarray(codes), np.asarray(scales, np.float32), *_offsets(starts, stops))


def dot_rows(rows: np.ndarray, q: np.ndarray, take: np.ndarray | None = None) -> np.ndarray:
    """Inner products of one query (dim,) with ``rows[take]`` (all rows by default): float32 (m,).

    Single-threaded float32 accumulation; reads the rows in place (a memory map is not copied),
    for the few hundred to few thousand rows a probe or a rescoring touches, where a BLAS call's
    thread wake-ups cost more than the arithmetic.
    """
    rows = np.asarray(rows)  # (n, dim), a plain view of a memory map
    q = np.ascontiguousarray(q, dtype=np.float32).reshape(-1)  # (dim,)
    if q.shape[0] != rows.shape[1]:
        raise ValueError(f"query has dim {q.shape[0]}, rows {rows.shape[1]}")
    take = np.arange(len(rows), dtype=np.int64) if take is None else np.ascontiguousarray(take, dtype=np.int64)
    return _dot_rows(rows, take, q)
