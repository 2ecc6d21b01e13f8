"""The per-query path of `dse.engines.cascade.engine.CascadeEngine`: its stages, tier by tier, segment by segment."""

from __future__ import annotations

from typing import Any

import numpy as np

from dse.engines.cascade import probe as cascade_probe
from dse.engines.cascade import tiers as cascade_tiers
from dse.engines.ivf import coarse as coarse_lists
from dse.engines.quantize import pack_signs
from dse.engines.results import topk


def defaults(stage: str, n_pages: int) -> dict[str, int]:
    """The knobs a search of `stage` ("residual", "tokens" or "coarse") uses on `n_pages` pages when none is set."""
    from dse.engines.cascade.tokens import shortlist_for

    return {"residual": {"n_probe": 32, "n_shortlist": 256, "n_coarse": 0, "n_refine": 0, "n_candidates": 0},
            "tokens": {"n_probe": 16, "n_shortlist": shortlist_for(n_pages), "n_coarse": 256, "n_refine": 0,
                       "n_candidates": 0},
            "coarse": {"n_probe": 4, "n_shortlist": 4096, "n_coarse": 512, "n_refine": 64, "n_candidates": 64}}[stage]


def search_one(
    engine: Any, q: np.ndarray, rows: np.ndarray, mask: np.ndarray, kk: int, sizes: tuple[int, int, int, int],
    probe: int, tokens: bool, stacked: Any, clusters: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One query through the cascade: scores float32 (kk,) and rows int64 (kk,), best first.

    Args:
        engine: The `CascadeEngine`.
        q: float32 (query_tokens, dim).
        rows: int64 (r,) allowed rows, ascending; `mask` the same as bool (n_rows,).
        kk: Depth.
        sizes: (n_shortlist, n_coarse, n_refine, n_candidates), resolved (0: stage off).
        probe: `n_probe` (0: no list stage).
        tokens: True for the token-list first stage, False for the coarse lists.
        stacked: The engine's stacked lists of that stage.
        clusters: `cluster_probe`.
    """
    n0, n1, nr, n2 = sizes
    q_bits = pack_signs(q)  # (query_tokens, words)
    rows_q = rows
    sims = cascade_probe.similarities(stacked, q) if tokens and (probe or n1) else {}
    if tokens and probe and n0 < len(rows_q):
        short = cascade_probe.shortlist(stacked, q, sims, probe, n0, max(n1, n2, kk), mask)
        rows_q = rows_q if short is None else np.sort(short)
    if tokens and n1 and n1 < len(rows_q):
        central = per_segment(engine, rows_q, "centroids", q, q_bits, sims=sims)  # (m,)
        rows_q = rows_q[best(central, n1)]
    elif not tokens and engine.coarse_tokens and n1 and n1 < len(rows_q):
        if probe and max(n0, n1) < len(rows_q):
            short = coarse_lists.shortlist(stacked, q, probe, max(n0, n1), max(n2, kk), mask)
            rows_q = rows_q if short is None else np.sort(short)
        coarse = per_segment(engine, rows_q, "coarse", q, q_bits)  # (m,)
        rows_q = rows_q[best(coarse, n1)]
    if engine.coarse_tokens and n1 and nr and nr < len(rows_q):
        rows_q = np.sort(rows_q)
        refined = per_segment(engine, rows_q, "refine", q, q_bits)  # (m,)
        rows_q = rows_q[best(refined, nr)]
    if n2 and n2 < len(rows_q):
        rows_q = np.sort(rows_q)
        fine = per_segment(engine, rows_q, "bits", q, q_bits)  # (m,)
        rows_q = rows_q[best(fine, n2)]
    rows_q = np.sort(rows_q)
    exact = per_segment(engine, rows_q, "exact", q, q_bits, clusters)  # (m,)
    s, cols = topk(exact[None, :], kk)  # (1, kk)
    return s[0], rows_q[cols[0]]


def per_segment(
    engine: Any, rows: np.ndarray, tier: str, q: np.ndarray, q_bits: np.ndarray, clusters: int = 0,
    sims: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """One query's scores, on `engine` (a `CascadeEngine`), of ascending `rows` on `tier` ("centroids", "coarse", "refine", "bits",
    "exact"): float32 (m,). "centroids" needs `sims` (`cascade_probe.similarities`)."""
    from dse.kernels import hamming_maxsim, maxsim_rows

    one = np.array([0, len(q)], np.int64)
    out = np.zeros(len(rows), np.float32)  # (m,)
    bounds = np.searchsorted(rows, np.asarray([*engine._starts, engine._n]))  # (segments + 1,)
    for s, first in enumerate(engine._starts):
        a, b = bounds[s], bounds[s + 1]
        if a == b:
            continue
        seg, local = engine._segments[s], rows[a:b] - first
        if tier == "exact":
            out[a:b] = cascade_tiers.exact_scores(q, seg, local, clusters)
        elif tier == "centroids":
            out[a:b] = cascade_probe.centroid_scores(seg.tok, sims or {}, local)
        elif tier == "refine":
            out[a:b] = maxsim_rows(q, one, seg.coarse_int8, seg.coarse_scales, seg.coarse_offsets, local)[0]
        elif tier == "coarse":
            out[a:b] = hamming_maxsim(q_bits, one, seg.coarse, seg.coarse_offsets, engine._dim, local)[0]
        else:
            out[a:b] = hamming_maxsim(q_bits, one, seg.bits, seg.offsets, engine._dim, local)[0]
    return out


def best(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the `n` highest scores (unordered; all when fewer)."""
    if n >= len(scores):
        return np.arange(len(scores))
    return np.argpartition(-scores, n - 1)[:n]
