"""Second-stage reranking: rescore the first stage's top candidates with another scorer.

Any object with a ``score(query, candidates) -> np.ndarray`` method is a `Reranker`. The final
score of a candidate interpolates both stages after min-max normalising each over the candidate
list (best -> 1, worst -> 0, all equal -> 1; see `dse.retrieve.hybrid.min_max`)::

    final = alpha * norm(first_stage_score) + (1 - alpha) * norm(reranker_score)

``alpha=1`` keeps the first stage's order, ``alpha=0`` is the reranker alone. Ties are broken
by the first-stage rank.

`MaxSimReranker` is the reranker shipped: a multi-vector (ColPali-family) encoder rescoring the
top candidates of any first stage (typically a single-vector DSE index, or BM25) by exact
late interaction. It encodes the candidates' *stored* page images on the fly (the index keeps
a copy of every page, long side 768 px by default), so it needs no second index and works on
any index built with stored images; page vectors are cached by page id (LRU), so queries that
share candidates encode each page once. The cost is one multi-vector page encoding per new
candidate: keep ``depth`` small (tens of pages) on a CPU.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from dse.retrieve.hybrid import min_max
from dse.retrieve.results import Hit


@dataclass(frozen=True)
class Candidate:
    """A first-stage hit offered to a reranker, with access to the page's content.

    Attributes:
        hit: The first-stage hit (its score and rank).
        text: The page's text layer.
        load_image: Returns the stored page image (PIL); called only by rerankers that need it.
    """

    hit: Hit
    text: str = field(repr=False)
    load_image: Callable[[], Any] = field(repr=False, compare=False)

    @property
    def page_id(self) -> str:
        """The page's id."""
        return self.hit.page_id

    def image(self) -> Any:
        """The stored page image (PIL)."""
        return self.load_image()


@runtime_checkable
class Reranker(Protocol):
    """Scores candidate pages for a query; higher is better."""

    def score(self, query: str, candidates: Sequence[Candidate]) -> np.ndarray:
        """One float score per candidate, float (n,), in the candidates' order."""
        ...


def check_rerank(reranker: Any, alpha: float, depth: int) -> None:
    """Raise a clear error for a bad reranker, alpha or depth."""
    if not callable(getattr(reranker, "score", None)):
        raise TypeError(f"rerank must have a score(query, candidates) method, got {type(reranker).__name__}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if isinstance(depth, bool) or int(depth) != depth or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")


def rerank(query: str, candidates: Sequence[Candidate], reranker: Reranker, k: int, alpha: float) -> list[Hit]:
    """Rescore one query's candidates and return the top k, ranked 1..k.

    Args:
        query: The query text.
        candidates: The first stage's candidates, best first.
        reranker: The second-stage scorer.
        k: Number of hits to return.
        alpha: Weight of the first stage in the interpolation (see the module docstring).

    Returns:
        Hits whose score is the interpolated final score.
    """
    if not candidates:
        return []
    scores = np.asarray(reranker.score(query, candidates), dtype=np.float64).reshape(-1)  # (n,)
    if scores.shape[0] != len(candidates):
        raise ValueError(
            f"{type(reranker).__name__}.score returned {scores.shape[0]} scores for {len(candidates)} candidates"
        )
    if not np.isfinite(scores).all():
        raise ValueError(f"{type(reranker).__name__}.score returned NaN or infinite scores")
    first = min_max([c.hit.score for c in candidates])  # (n,)
    final = alpha * first + (1.0 - alpha) * min_max(scores)  # (n,)
    order = sorted(range(len(candidates)), key=lambda i: (-final[i], i))[:k]  # stable: first-stage rank
    return [dataclasses.replace(candidates[i].hit, score=float(final[i]), rank=rank)
            for rank, i in enumerate(order, start=1)]


class MaxSimReranker:
    """Late-interaction (MaxSim) reranker: a multi-vector encoder over the candidates' stored images.

    Args:
        encoder: A multi-vector encoder (`kind == "multi"`, e.g. `load_encoder("colqwen2")`), or a
            registry name to load one.
        cache_size: Page encodings kept in memory (by page id) across queries.

    Example:
        >>> reranker = MaxSimReranker("colqwen2")
        >>> retriever.search("revenue by segment", k=5, rerank=reranker, alpha=0.3, depth=30)
    """

    def __init__(self, encoder: Any, cache_size: int = 1024) -> None:
        if isinstance(encoder, str):
            from dse.encoders.registry import load_encoder

            encoder = load_encoder(encoder)
        kind = getattr(encoder, "kind", None)
        if kind != "multi":
            name = getattr(encoder, "name", "") or type(encoder).__name__
            raise ValueError(f"MaxSimReranker needs a multi-vector encoder; {name!r} is {kind}")
        self.encoder = encoder
        self.cache_size = int(cache_size)
        self._pages: OrderedDict[str, np.ndarray] = OrderedDict()

    def score(self, query: str, candidates: Sequence[Candidate]) -> np.ndarray:
        """MaxSim of the query against each candidate page: float32 (n,)."""
        from dse.encoders.colpali.col import score_maxsim

        q = self.encoder.encode_queries([query])[0]  # (q_tokens, dim)
        pages = self._page_vectors(candidates)
        return np.array([score_maxsim(q, p) for p in pages], dtype=np.float32)  # (n,)

    def _page_vectors(self, candidates: Sequence[Candidate]) -> list[np.ndarray]:
        """(tokens_i, dim) vectors of each candidate page, encoding only those not cached."""
        missing = [c for c in dict((c.page_id, c) for c in candidates).values() if c.page_id not in self._pages]
        if missing:
            encoded = self.encoder.encode_pages([c.image() for c in missing])
            for c, vec in zip(missing, encoded):
                self._pages[c.page_id] = vec  # (tokens, dim)
        out = []
        for c in candidates:
            self._pages.move_to_end(c.page_id)
            out.append(self._pages[c.page_id])
        while len(self._pages) > max(self.cache_size, len(candidates)):
            self._pages.popitem(last=False)
        return out
