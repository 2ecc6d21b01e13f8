"""The first stage of a search: the mode an index allows, visual, text or fused hits, checks of the queries."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from dse.backends import IndexBackend, ScoredPage
from dse.encoders.queries import all_parts
from dse.retrieve.hybrid import FUSION_DEPTH, MODES, fuse
from dse.retrieve.rerank import Reranker
from dse.retrieve.results import Hit

PIN_ATTEMPTS = 3  # hybrid searches re-run when a write landed between their two sides (backends without snapshots)


def search_mode(index: IndexBackend, mode: str | None) -> str:
    """The search mode, checked against what this index holds (None: its own ranking).

    Raises:
        ValueError: an unknown mode, or a visual or hybrid mode on a text-only index.
    """
    built = index.manifest.encoder  # not the encoder: a text search must not load a model
    text_index = built["kind"] == "text"
    if mode is None:
        return "text" if text_index else "visual"
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
    if text_index and mode != "text":
        raise ValueError(f"mode {mode!r} needs a visual index; {index.directory} was built with "
                         f"{built.get('name') or 'bm25'} (text only): use mode='text'")
    return mode


def first_stage(
    index: IndexBackend, encode: Callable[[list[Any]], Any], queries: list[Any], k: int, mode: str, fusion: str,
    rrf_k: float, weight: float, where: Mapping[str, Any] | None = None,
) -> list[list[Hit]]:
    """Visual, text or fused hits for each query (each side `FUSION_DEPTH` deep before fusion).

    Args:
        index: The index to search.
        encode: Embeds the queries for the visual side (called only when it is searched).
        queries: The queries (texts, images or (image, text) pairs).
        k: Hits per query.
        mode: "visual", "text" or "hybrid" (checked by `search_mode`).
        fusion: Hybrid only: "rrf" or "weighted" (`dse.retrieve.hybrid.fuse`).
        rrf_k: The RRF constant.
        weight: The weighted fusion's weight of the visual side.
        where: Metadata filter applied before scoring.
    """
    if mode == "text":
        return [as_hits(s, drop_zero=True) for s in index.search_text(texts(queries), k, where)]
    deep = k if mode == "visual" else max(k, FUSION_DEPTH)
    encoded = encode(queries)
    if mode == "visual":
        return [as_hits(s, drop_zero=False) for s in index.search(encoded, deep, where)]
    for _ in range(PIN_ATTEMPTS):  # both sides of a hybrid search rank the same committed state
        view = index.view()
        visual = [as_hits(s, drop_zero=False) for s in index.search(encoded, deep, where, view=view)]
        text = [as_hits(s, drop_zero=True) for s in index.search_text(texts(queries), deep, where, view=view)]
        if index.unchanged(view):  # always, where views pin a state; Qdrant: no write landed meanwhile
            break
    return [fuse(v, t, k, fusion=fusion, rrf_k=rrf_k, weight=weight) for v, t in zip(visual, text)]


def as_hits(scored: Sequence[ScoredPage], drop_zero: bool) -> list[Hit]:
    """Hits ranked 1..n; `drop_zero` removes BM25 non-matches (score 0: no query term on the page)."""
    kept = [sp for sp in scored if sp.score > 0] if drop_zero else list(scored)
    return [
        Hit(sp.record.page_id, sp.record.source, sp.record.page, sp.score, rank, sp.record.metadata)
        for rank, sp in enumerate(kept, start=1)
    ]


def texts(queries: list[Any]) -> list[str]:
    """The text of each query for BM25 (an (image, text) query's text)."""
    return [q if isinstance(q, str) else all_parts([q])[0].text or "" for q in queries]


def check_query_modes(queries: list[Any], mode: str, rerank: Reranker | None) -> None:
    """Image queries need the visual side; BM25 needs a text; rerankers take text queries."""
    if all(isinstance(q, str) for q in queries):
        return
    parts = all_parts(queries)
    if mode != "visual" and any(p.text is None for p in parts):
        raise ValueError(f"mode {mode!r} ranks by the pages' text: an image query needs mode='visual' "
                         "(or an (image, text) query)")
    if rerank is not None:
        raise ValueError("reranking takes text queries; image and (image, text) queries are ranked visually only")
