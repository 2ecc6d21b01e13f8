"""The quantized single-vector engine's code scan: resident codes, candidates from every row or from IVF lists."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dse.engines.ivf import lists as ivf
from dse.engines.quantize import int8_encode, pack_signs


@dataclass(frozen=True)
class Resident:
    """Codes of every row in memory: in row order, or grouped by list (`layout`) once centroids exist."""

    codes: tuple[np.ndarray, ...]
    layout: ivf.ListLayout | None = None
    labels: np.ndarray | None = None  # int32 (n,), list of each row (row order)


def resident_codes(
    mode: str, dim: int, segments: Sequence[tuple[np.ndarray, ...]], labels: np.ndarray | None, n_lists: int
) -> Resident:
    """The codes of every segment joined in memory, grouped by list when `labels` (int32 (n,)) are given.

    Args:
        mode: "binary" ((bits,) per segment) or "int8" ((int8, scales) per segment).
        dim: Vector width.
        segments: Each segment's codes, in row order.
        labels: List of each row, or None before the centroids exist.
        n_lists: Number of lists.
    """
    width = -(-dim // 64) if mode == "binary" else dim
    empty = (np.zeros((0, width), np.uint64),) if mode == "binary" else int8_encode(np.zeros((0, width), np.float32))
    codes = tuple(np.concatenate([c[i] for c in segments]) if segments else empty[i] for i in range(len(empty)))
    if labels is None:
        return Resident(codes)
    layout = ivf.ListLayout.build(labels, n_lists)
    return Resident(tuple(c[layout.items] for c in codes), layout, labels)


def scan_all(
    mode: str, dim: int, n_rows: int, q: np.ndarray, mask: np.ndarray | None, n_cand: int, res: Resident
) -> list[np.ndarray]:
    """Candidate rows (ascending) of each query from the codes of every row.

    Args:
        mode: "binary" or "int8".
        dim: Vector width.
        n_rows: Rows held.
        q: float32 (nq, dim) queries.
        mask: Optional bool (n_rows,) allowed rows.
        n_cand: Candidates kept per query.
        res: The resident codes.
    """
    from dse.kernels import hamming_scores, int8_scores, top_hamming

    mask = np.ones(n_rows, np.bool_) if mask is None else mask  # (n,)
    if n_cand >= n_rows:
        return [np.flatnonzero(mask)] * len(q)
    if mode == "binary":
        scores = hamming_scores(pack_signs(q), res.codes[0], dim)  # (nq, n)
    else:
        scores = int8_scores(q, res.codes[0], res.codes[1])  # (nq, n)
    if res.layout is not None:  # back to row order, so ties resolve as without lists
        in_rows = np.empty_like(scores)  # (nq, n)
        in_rows[:, res.layout.items] = scores
        scores = in_rows
    if mode == "binary":
        return [np.sort(top_hamming(s, mask, dim, n_cand)) for s in scores]
    scores = np.where(mask, scores, -np.inf)  # (nq, n)
    picked = [np.argpartition(-s, n_cand - 1)[:n_cand] for s in scores]
    return [np.sort(p[mask[p]]) for p in picked]


def scan_lists(
    mode: str, dim: int, n_rows: int, n_lists: int, centroids: np.ndarray, q: np.ndarray, mask: np.ndarray | None,
    n_cand: int, probe: int, kk: int, res: Resident,
) -> list[np.ndarray]:
    """Candidate rows (ascending) of each query from the codes of its `probe` best lists (widened for `mask`).

    A query whose probed lists hold fewer than `kk` allowed rows probes more lists
    (`ivf.lists_to_scan`); one that would probe them all scans every row (`scan_all`).

    Args:
        mode, dim, n_rows, q, mask, n_cand: As for `scan_all`.
        n_lists: Number of lists.
        centroids: float32 (n_lists, dim) list centroids.
        probe: Lists probed per query.
        kk: Rows the search returns (the allowed rows a query's lists must hold).
        res: The resident codes, grouped by list.
    """
    from dse.kernels import hamming_spans, int8_spans, top_hamming

    layout = res.layout
    assert layout is not None and res.labels is not None  # grouped by list
    ranked = ivf.probe_order(q, centroids, n_lists if mask is not None else probe)  # (nq, *)
    counts = None  # allowed rows per list, counted when a query's probed lists hold too few
    out = []
    for qi in range(len(q)):
        lists = ranked[qi, :probe]
        pos = layout.take(lists)  # (m,) layout positions of the probed rows
        keep = np.ones(len(pos), np.bool_) if mask is None else mask[layout.items[pos]]  # (m,)
        if mask is not None and int(keep.sum()) < kk:
            if counts is None:
                counts = np.bincount(res.labels[mask], minlength=n_lists)  # (n_lists,)
            lists = ranked[qi, : ivf.lists_to_scan(ranked[qi], counts, kk, probe)]
            if len(lists) >= n_lists:
                out.append(scan_all(mode, dim, n_rows, q[qi : qi + 1], mask, n_cand, res)[0])
                continue
            pos = layout.take(lists)
            keep = mask[layout.items[pos]]
        if n_cand >= len(pos):
            picked = np.flatnonzero(keep)
        elif mode == "binary":
            scores = hamming_spans(pack_signs(q[qi : qi + 1])[0], res.codes[0], *layout.spans(lists), dim)
            picked = top_hamming(scores, keep, dim, n_cand)
        else:
            scores = np.where(keep, int8_spans(q[qi], res.codes[0], res.codes[1], *layout.spans(lists)), -np.inf)
            picked = np.argpartition(-scores, n_cand - 1)[:n_cand]
            picked = picked[keep[picked]]
        out.append(np.sort(layout.items[pos[picked]]))
    return out
