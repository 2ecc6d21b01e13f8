"""Numba kernel for inverted-list probing: approximate late-interaction scores from posting lists.

Used by the cascade's first stage (`dse.engines.ivf.coarse`): for each query token, the
probed lists are walked best list first; a page collects, per query token, the gain of the
best probed list it appears in (later, worse lists of the same token are skipped). Also the
query side's centroid products: every centroid (`similarities`), or the centroids of a query
token's chosen lists of centroids (`scan_lists`, `dse.engines.cascade.centroids`).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True)
def _probe_lists(probe, gain, list_offsets, list_pages, allowed, score, stamp, touched):  # noqa: ANN001, ANN202
    m = 0
    for i in range(probe.shape[0]):
        tag = i + 1
        for r in range(probe.shape[1]):
            k, g = probe[i, r], gain[i, r]
            if k < 0:
                continue
            for e in range(list_offsets[k], list_offsets[k + 1]):
                p = list_pages[e]
                if stamp[p] == tag or not allowed[p]:
                    continue
                if stamp[p] == 0:
                    touched[m] = p
                    m += 1
                stamp[p] = tag
                score[p] += g
    return m


def probe_lists(
    probe: np.ndarray, gain: np.ndarray, list_offsets: np.ndarray, list_pages: np.ndarray, allowed: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Pages reached by the probed lists and their summed gains.

    Args:
        probe: int64 (query_tokens, n_probe), list ids per query token, best list first (-1: none).
        gain: float32 (query_tokens, n_probe), each probed list's gain (>= 0) for that token.
        list_offsets: int64 (n_lists + 1,), ranges of `list_pages`.
        list_pages: int32 (postings,), the pages of each list (each page at most once a list).
        allowed: bool (n_pages,), pages that may be reached.

    Returns:
        pages int64 (m,) in first-reached order and their scores float32 (m,): for each query
        token, the gain of the best probed list holding the page, summed over query tokens.
    """
    n_pages = len(allowed)
    score = np.zeros(n_pages, np.float32)  # (n_pages,)
    stamp = np.zeros(n_pages, np.int32)  # (n_pages,) last query token (+1) that reached the page
    touched = np.empty(n_pages, np.int64)  # (n_pages,)
    m = _probe_lists(
        np.ascontiguousarray(probe, np.int64), np.ascontiguousarray(gain, np.float32),
        np.asarray(list_offsets, np.int64), np.asarray(list_pages, np.int32), np.asarray(allowed, np.bool_),
        score, stamp, touched,
    )
    return touched[:m], score[touched[:m]]


@njit(cache=True, nogil=True)
def _select_lists(sim, sizes, n_probe, low, top, gain, floor):  # noqa: ANN001, ANN202
    n_tokens, n_segments, n_lists = sim.shape
    for i in range(n_tokens):
        vals = np.empty(n_probe + 1, np.float32)
        idx = np.empty(n_probe + 1, np.int64)
        for s in range(n_segments):
            vals[:] = low
            idx[:] = -1
            for k in range(sizes[s]):
                v = sim[i, s, k]
                if v <= vals[n_probe]:
                    continue
                r = n_probe
                while r > 0 and vals[r - 1] < v:  # insertion: vals stays descending
                    vals[r] = vals[r - 1]
                    idx[r] = idx[r - 1]
                    r -= 1
                vals[r] = v
                idx[r] = k
            floor[i, s] = vals[n_probe]
            for r in range(n_probe):
                top[i, s * n_probe + r] = s * n_lists + idx[r] if idx[r] >= 0 else -1
                gain[i, s * n_probe + r] = vals[r] - vals[n_probe]


def select_lists(
    sim: np.ndarray, sizes: np.ndarray, n_probe: int, low: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query token's `n_probe` most similar lists in every segment, best first.

    Args:
        sim: float32 (query_tokens, segments, n_lists) similarities of query tokens to codewords
            (segments padded to one list count; padding is never read).
        sizes: int64 (segments,), the real number of lists of each segment.
        n_probe: Lists kept per token and segment.
        low: A value below every real similarity: the floor when a segment has no list left.

    Returns:
        global list ids int64 (query_tokens, segments * n_probe) (segment s, list k: s * n_lists + k;
        -1 where a segment has fewer lists), their gains over the floor float32 (same shape), and
        the floor float32 (query_tokens, segments): the similarity of the best list not probed.
    """
    n_tokens, n_segments, _ = sim.shape
    top = np.empty((n_tokens, n_segments * n_probe), np.int64)  # (query_tokens, segments * n_probe)
    gain = np.empty((n_tokens, n_segments * n_probe), np.float32)  # (query_tokens, segments * n_probe)
    floor = np.empty((n_tokens, n_segments), np.float32)  # (query_tokens, segments)
    _select_lists(np.ascontiguousarray(sim, np.float32), np.asarray(sizes, np.int64), int(n_probe), np.float32(low),
                  top, gain, floor)
    return top, gain, floor


@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _similarities(q, rows, out):  # noqa: ANN001, ANN202
    n_tokens, dim = q.shape
    for k in prange(rows.shape[0]):
        for i in range(0, n_tokens - 3, 4):
            a0 = a1 = a2 = a3 = np.float32(0.0)
            for d in range(dim):
                x = rows[k, d]
                a0 += q[i, d] * x
                a1 += q[i + 1, d] * x
                a2 += q[i + 2, d] * x
                a3 += q[i + 3, d] * x
            out[i, k], out[i + 1, k], out[i + 2, k], out[i + 3, k] = a0, a1, a2, a3
        for i in range(n_tokens - n_tokens % 4, n_tokens):
            acc = np.float32(0.0)
            for d in range(dim):
                acc += q[i, d] * rows[k, d]
            out[i, k] = acc


def similarities(q: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``q @ rows.T`` in numba's thread pool: float32 (query_tokens, n_rows).

    The query path calls this rather than BLAS: on a small machine BLAS threads keep spinning
    after a call and slow down the numba kernels that follow.
    """
    q = np.ascontiguousarray(q, np.float32)  # (query_tokens, dim)
    out = np.empty((len(q), len(rows)), np.float32)  # (query_tokens, n_rows)
    _similarities(q, np.ascontiguousarray(rows, np.float32), out)
    return out


@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _scan_lists(q, rows, chosen, offsets, members, sim, ids):  # noqa: ANN001, ANN202
    n_tokens, dim = q.shape
    for i in prange(n_tokens):
        pos = 0
        for r in range(chosen.shape[1]):
            lst = chosen[i, r]
            for e in range(offsets[lst], offsets[lst + 1]):
                acc = np.float32(0.0)
                for d in range(dim):
                    acc += q[i, d] * rows[e, d]
                sim[i, pos] = acc
                ids[i, pos] = members[e]
                pos += 1


def scan_lists(
    q: np.ndarray, rows: np.ndarray, chosen: np.ndarray, offsets: np.ndarray, members: np.ndarray, width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Each query token's similarity to every row of its chosen lists of rows (a centroid probe).

    Args:
        q: float32 (query_tokens, dim).
        rows: float32 (n_rows, dim), list by list.
        chosen: int64 (query_tokens, n_chosen), the lists each query token scans.
        offsets: int64 (n_lists + 1,), each list's range of `rows` / `members`.
        members: int32 (n_rows,), the id of each row.
        width: At least the rows any query token scans.

    Returns:
        similarities float32 (query_tokens, width) and row ids int64 (same shape), in scan order;
        -inf and -1 past the rows a query token scanned.
    """
    sim = np.full((len(q), width), -np.inf, np.float32)  # (query_tokens, width)
    ids = np.full((len(q), width), -1, np.int64)  # (query_tokens, width)
    _scan_lists(np.ascontiguousarray(q, np.float32), np.ascontiguousarray(rows, np.float32),
                np.ascontiguousarray(chosen, np.int64), np.asarray(offsets, np.int64), np.asarray(members, np.int32),
                sim, ids)
    return sim, ids


@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _centroid_maxsim(sim_t, fwd_offsets, fwd_codes, pages, out):  # noqa: ANN001, ANN202
    n_centroids, n_tokens = sim_t.shape
    for pi in prange(len(pages)):
        p = pages[pi]
        best = np.full(n_tokens, np.float32(-np.inf))  # (query_tokens,)
        for e in range(fwd_offsets[p], fwd_offsets[p + 1]):
            c = fwd_codes[e]
            for i in range(n_tokens):
                best[i] = max(best[i], sim_t[c, i])
        total = np.float32(0.0)
        for i in range(n_tokens):
            total += best[i] if fwd_offsets[p + 1] > fwd_offsets[p] else np.float32(0.0)
        out[pi] = total


def centroid_maxsim(sim: np.ndarray, fwd_offsets: np.ndarray, fwd_codes: np.ndarray, pages: np.ndarray) -> np.ndarray:
    """PLAID's centroid interaction: MaxSim of one query against each page's distinct token centroids.

    Args:
        sim: float32 (query_tokens, n_centroids), query tokens against the codebook.
        fwd_offsets: int64 (n_pages + 1,), ranges of `fwd_codes`.
        fwd_codes: int32 (pairs,), each page's distinct centroid ids.
        pages: int64 (m,), the pages to score.

    Returns:
        float32 (m,): per page, the sum over query tokens of the best similarity to its centroids.
    """
    out = np.zeros(len(pages), np.float32)  # (m,)
    _centroid_maxsim(np.ascontiguousarray(sim.T, np.float32), np.asarray(fwd_offsets, np.int64),
                     np.asarray(fwd_codes, np.int32), np.asarray(pages, np.int64), out)
    return out
