"""The cascade's residual first stage (WARP over PLAID-style compressed tokens), then exact MaxSim.

Per query, per codebook (`dse.engines.cascade.centroids.probe`): the `n_probe` most similar
centroids of each query token, their similarities, and as the imputed score of a page none of
whose tokens lie in those lists the similarity of the best centroid not probed (WARP's
missing-similarity estimate; above 16384 centroids, found through lists of centroids). Per
segment, `dse.kernels.residuals.warp_scores` scores every token of the probed lists as centroid
similarity plus the decoded residual's dot product, and sums per page the best per query token.
The best `n_shortlist` pages (segments without residual lists: all their pages) go on,
optionally through the sign-bit tier (`n_candidates`), to the exact tier.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dse.engines.cascade import centroids as cascade_centroids
from dse.engines.cascade import search as cascade_search
from dse.engines.quantize import pack_signs
from dse.engines.results import topk


def search_one(
    engine: Any, q: np.ndarray, rows: np.ndarray, mask: np.ndarray, kk: int, n_keep: int, n_candidates: int,
    probe: int, clusters: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One query: scores float32 (kk,) and rows int64 (kk,), best first.

    Args:
        engine: The `CascadeEngine`.
        q: float32 (query_tokens, dim).
        rows: int64 (r,) allowed rows, ascending; `mask` the same as bool (n_rows,).
        kk: Depth.
        n_keep: Pages the residual stage keeps (`n_shortlist`, resolved).
        n_candidates: Pages the sign-bit tier then keeps (0: no such stage).
        probe: `n_probe` (0: every allowed page goes to the exact tier).
        clusters: `cluster_probe`.
    """
    q_bits = pack_signs(q)  # (query_tokens, words)
    rows_q = rows
    if probe and n_keep < len(rows_q):
        rows_q = shortlist(engine, q, mask, probe, n_keep)
    if n_candidates and n_candidates < len(rows_q):
        rows_q = np.sort(rows_q)
        fine = cascade_search.per_segment(engine, rows_q, "bits", q, q_bits)  # (m,)
        rows_q = rows_q[cascade_search.best(fine, n_candidates)]
    rows_q = np.sort(rows_q)
    exact = cascade_search.per_segment(engine, rows_q, "exact", q, q_bits, clusters)  # (m,)
    s, cols = topk(exact[None, :], kk)  # (1, kk)
    return s[0], rows_q[cols[0]]


def shortlist(engine: Any, q: np.ndarray, mask: np.ndarray, n_probe: int, n_keep: int) -> np.ndarray:
    """Rows int64 (<= n_keep,) of the allowed pages with the best residual scores (unordered).

    Pages of segments without residual lists always go on (they are small: see `CascadeEngine`).
    """
    from dse.kernels.residuals import luts, warp_scores

    probes: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # codebook key -> probe sim, probe, impute
    tables: dict[str, np.ndarray] = {}  # bucket key -> lookup tables
    rows_all, scores_all = [], []
    for seg, first in zip(engine._segments, engine._starts):
        allowed = mask[first : first + seg.pages]  # (pages,)
        local = np.flatnonzero(allowed)  # (m,)
        if not len(local):
            continue
        res = None if seg.tok is None else seg.tok.res
        if res is None:
            rows_all.append(local + first)
            scores_all.append(np.full(len(local), np.inf, np.float32))
            continue
        book = seg.tok.codebook
        if book.key not in probes:
            probes[book.key] = cascade_centroids.probe(book.key, book.centroids, q, n_probe)  # (qt, p) x 2, (qt,)
        if res.key not in tables:
            tables[res.key] = luts(q, res.weights, res.bits)  # (qt, bytes, 256)
        sim, top, impute = probes[book.key]
        s = warp_scores(sim, top, impute, res.offsets, res.pages, res.codes, tables[res.key], allowed)  # (pages,)
        rows_all.append(local + first)
        scores_all.append(s[local])
    rows = np.concatenate(rows_all) if rows_all else np.zeros(0, np.int64)  # (m,)
    scores = np.concatenate(scores_all) if scores_all else np.zeros(0, np.float32)  # (m,)
    if len(rows) > n_keep:
        rows = rows[np.argpartition(-scores, n_keep - 1)[:n_keep]]
    return rows.astype(np.int64)

