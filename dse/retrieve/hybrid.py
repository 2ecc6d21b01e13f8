"""Hybrid search: fuse the BM25 ranking of the pages' text with the visual ranking.

Two fusions, chosen per search:

* ``"rrf"`` (reciprocal-rank fusion, Cormack et al. 2009): a page scores
  ``sum over the rankings of 1 / (rrf_k + rank)`` (rank 1-based, ``rrf_k=60``); a page missing
  from a ranking adds nothing. Only ranks matter, so the two score scales never meet.
* ``"weighted"``: ``norm(bm25) + weight * norm(similarity)``, the linear combination DPR used
  (BM25 + lambda * sim; Karpukhin et al. 2020). DPR added raw scores; here each side is first
  min-max normalised over its own candidate list, per query (its best candidate -> 1, its worst
  -> 0; a list whose scores are all equal -> 1), so that ``weight`` means the same thing whatever
  the encoder's or BM25's score range. A page missing from a side's candidates counts 0 there.

Each side retrieves ``max(k, FUSION_DEPTH)`` candidates before fusion, so a page ranked, say, 30th
by both sides can still reach the fused top 10. Ties in the fused score are broken by the best
rank the page has on either side, then by the visual rank.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Sequence

import numpy as np

from dse.retrieve.results import Hit

Mode = Literal["visual", "text", "hybrid"]
Fusion = Literal["rrf", "weighted"]
MODES: tuple[str, ...] = ("visual", "text", "hybrid")
FUSIONS: tuple[str, ...] = ("rrf", "weighted")
FUSION_DEPTH = 100  # candidates each side retrieves before fusion (at least k)
RRF_K = 60


def check_fusion(fusion: str, rrf_k: float, weight: float) -> None:
    """Raise ValueError naming the bad fusion option."""
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; use one of {', '.join(FUSIONS)}")
    if not rrf_k >= 0:
        raise ValueError(f"rrf_k must be >= 0, got {rrf_k!r}")
    if not np.isfinite(weight) or weight < 0:
        raise ValueError(f"weight must be a finite number >= 0, got {weight!r}")


def min_max(scores: Sequence[float]) -> np.ndarray:
    """Scores mapped to [0, 1] by min-max over the list; a constant (or one-item) list maps to 1."""
    s = np.asarray(scores, dtype=np.float64)  # (n,)
    if s.size == 0:
        return s
    lo, hi = float(s.min()), float(s.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.ones_like(s)  # (n,)
    return (s - lo) / (hi - lo)  # (n,)


def fuse(
    visual: Sequence[Hit],
    text: Sequence[Hit],
    k: int,
    *,
    fusion: str = "rrf",
    rrf_k: float = RRF_K,
    weight: float = 1.0,
) -> list[Hit]:
    """Fuse a visual and a text ranking of one query into the top-k hits.

    Args:
        visual: Visual hits, best first (ranks 1..n).
        text: BM25 hits, best first (BM25 non-matches already dropped).
        k: Number of hits to return.
        fusion: "rrf" or "weighted" (see the module docstring).
        rrf_k: The RRF constant.
        weight: The weighted fusion's lambda: the visual side's weight (BM25's is 1).

    Returns:
        At most k hits ranked 1..k; each score is the fused score.
    """
    check_fusion(fusion, rrf_k, weight)
    pages: dict[str, Hit] = {}
    vis_rank: dict[str, int] = {}
    txt_rank: dict[str, int] = {}
    for ranks, hits in ((vis_rank, visual), (txt_rank, text)):
        for position, hit in enumerate(hits, start=1):
            ranks.setdefault(hit.page_id, position)
            pages.setdefault(hit.page_id, hit)
    ids = list(pages)
    if fusion == "rrf":
        fused = {pid: sum(1.0 / (rrf_k + r[pid]) for r in (vis_rank, txt_rank) if pid in r) for pid in ids}
    else:
        vis_norm = dict(zip((h.page_id for h in visual), min_max([h.score for h in visual])))
        txt_norm = dict(zip((h.page_id for h in text), min_max([h.score for h in text])))
        fused = {pid: txt_norm.get(pid, 0.0) + weight * vis_norm.get(pid, 0.0) for pid in ids}
    worst = len(ids) + 1

    def order(pid: str) -> tuple[float, int, int]:
        best = min(vis_rank.get(pid, worst), txt_rank.get(pid, worst))
        return (-fused[pid], best, vis_rank.get(pid, worst))

    ranked = sorted(ids, key=order)[:k]
    return [dataclasses.replace(pages[pid], score=float(fused[pid]), rank=rank)
            for rank, pid in enumerate(ranked, start=1)]
