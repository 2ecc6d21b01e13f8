"""Pseudo-relevance feedback: RM3 (Lavrenko & Croft's relevance model, interpolated) over the index's BM25.

As Anserini's RM3 (its defaults: 10 feedback pages, 10 feedback terms, original query weight
0.5): the query's top `fb_docs` pages by BM25 are read; each page's term counts are cut to its
`fb_terms` most frequent terms (terms of 2 to 20 letters or digits, found on at most
`max_df_ratio` of the index's pages) and L1-normalised; the relevance model weighs each term by
the sum over pages of its normalised count times the page's BM25 score, is cut to `fb_terms`
terms and L1-normalised, then interpolated with the query's own term distribution:
``w(t) = original_query_weight * P(t|Q) + (1 - original_query_weight) * P(t|R)``.

The BM25 engine takes text queries, no weights, and counts a repeated query token once per
occurrence, so the weighted query is written as text: each term `round(w(t) * resolution)`
times (at least once). Terms are the index's own tokens (`IndexBackend.tokenize`), written as
a word of the feedback pages or the query that tokenizes back to exactly that token. Everything
is read through the backend interface (`search_text`, `tokenize`, `page`), so it is offline and
deterministic: the same index and query give the same expansion.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Mapping, Sequence

from dse.backends import IndexBackend
from dse.rewrite.base import QueryRewriter, Rewrite, check_queries
from dse.rewrite.registry import register_rewriter

_WORD = re.compile(r"\w+")


@register_rewriter("prf", "pseudo-relevance feedback: RM3 over the index's own BM25 (Anserini's defaults)")
class RM3Rewriter(QueryRewriter):
    """RM3 query expansion from the index's top BM25 pages.

    Args:
        fb_docs: Feedback pages read per query (Anserini: 10).
        fb_terms: Terms kept per page and in the relevance model (Anserini: 10).
        original_query_weight: Weight of the query's own terms (Anserini: 0.5).
        resolution: Copies of a term of weight 1 in the expanded text (the weights' resolution).
        max_df_ratio: Feedback terms found on more than this share of the pages are skipped
            (Anserini's filter: 0.1); None keeps every term.

    Raises:
        ValueError: an option out of range.
    """

    name = "prf"
    needs_index = True

    def __init__(self, fb_docs: int = 10, fb_terms: int = 10, original_query_weight: float = 0.5,
                 resolution: int = 40, max_df_ratio: float | None = 0.1) -> None:
        if fb_docs < 1 or fb_terms < 1 or resolution < 1:
            raise ValueError(f"fb_docs, fb_terms and resolution must be >= 1, got {fb_docs}, {fb_terms}, {resolution}")
        if not 0 <= original_query_weight <= 1:
            raise ValueError(f"original_query_weight must lie in [0, 1], got {original_query_weight}")
        if max_df_ratio is not None and not 0 < max_df_ratio <= 1:
            raise ValueError(f"max_df_ratio must lie in (0, 1] or be None, got {max_df_ratio}")
        self.fb_docs, self.fb_terms, self.resolution = int(fb_docs), int(fb_terms), int(resolution)
        self.original_query_weight = float(original_query_weight)
        self.max_df_ratio = max_df_ratio
        self._df_view: Any = None  # the committed state `_df` was counted on
        self._df: dict[str, int] = {}

    @property
    def identity(self) -> str:
        """The RM3 parameters."""
        return (f"rm3 fb_docs={self.fb_docs} fb_terms={self.fb_terms} "
                f"original_query_weight={self.original_query_weight} resolution={self.resolution} "
                f"max_df_ratio={self.max_df_ratio}")

    def rewrite_many(
        self, queries: Sequence[str], index: IndexBackend | None = None, where: Mapping[str, Any] | None = None,
    ) -> list[Rewrite]:
        """Each query expanded with terms of its top BM25 pages (unchanged when no page matches it)."""
        queries = check_queries(queries)
        if index is None:
            raise ValueError("the prf rewriter reads the index searched: pass index=")
        if not queries:
            return []
        view = index.view()
        first = index.search_text(queries, self.fb_docs, where, view=view)
        return [self._expand(q, [sp for sp in hits if sp.score > 0], index, view) for q, hits in zip(queries, first)]

    def weights(self, query: str, feedback: Sequence[Any], index: IndexBackend, view: Any = None) -> dict[str, float]:
        """The interpolated RM3 term weights of `query` given its feedback pages (`ScoredPage`s)."""
        q_tokens = index.tokenize([query])[0]
        if not q_tokens:
            return {}
        q_model = {t: c / len(q_tokens) for t, c in Counter(q_tokens).items()}
        relevance: dict[str, float] = {}
        if feedback:
            docs = index.tokenize([sp.record.text for sp in feedback])
            allowed = self._allowed_terms({t for d in docs for t in d}, [sp.record.text for sp in feedback], index, view)
            for sp, tokens in zip(feedback, docs):
                counts = Counter(t for t in tokens if t in allowed)
                top = _top(counts, self.fb_terms)
                norm = sum(top.values())
                for term, c in top.items():
                    relevance[term] = relevance.get(term, 0.0) + c / norm * sp.score
            relevance = _l1(_top(relevance, self.fb_terms))
        alpha = self.original_query_weight
        terms = set(q_model) | set(relevance)
        return {t: alpha * q_model.get(t, 0.0) + (1 - alpha) * relevance.get(t, 0.0) for t in terms}

    def _expand(self, query: str, feedback: Sequence[Any], index: IndexBackend, view: Any) -> Rewrite:
        weights = self.weights(query, feedback, index, view)
        if not feedback or not weights:
            return Rewrite(query, query, self.name, self.identity)
        ranked = sorted(weights.items(), key=lambda tw: (-tw[1], tw[0]))
        words = _surface_words([t for t, _ in ranked], [query] + [sp.record.text for sp in feedback], index)
        kept = [(t, w) for t, w in ranked if t in words and w > 0]
        text = " ".join(" ".join([words[t]] * max(1, round(w * self.resolution))) for t, w in kept)
        q_tokens = tuple(dict.fromkeys(index.tokenize([query])[0]))
        readable = _readable_words([t for t, _ in kept], query, [sp.record.text for sp in feedback], index)
        return Rewrite(query, text, self.name, self.identity, terms=tuple(kept),
                       words=tuple(readable.get(t, words[t]) for t, _ in kept), query_terms=q_tokens)

    def _allowed_terms(self, terms: set[str], texts: Sequence[str], index: IndexBackend, view: Any) -> set[str]:
        """Feedback candidates: 2 to 20 letters or digits, on at most `max_df_ratio` of the pages."""
        shaped = {t for t in terms if 2 <= len(t) <= 20 and t.isalnum()}
        if self.max_df_ratio is None:
            return shaped
        n = len(index)
        limit = int(self.max_df_ratio * n)
        if view is not self._df_view:  # the index changed: document frequencies are counted again
            self._df_view, self._df = view, {}
        missing = sorted(t for t in shaped if t not in self._df)
        if missing:
            words = _surface_words(missing, texts, index)
            asked = [t for t in missing if t in words]
            found = index.search_text([words[t] for t in asked], limit + 1, view=view) if asked else []
            for term, hits in zip(asked, found):
                self._df[term] = sum(1 for sp in hits if sp.score > 0)
            for term in missing:
                self._df.setdefault(term, n + 1)  # no word spells it: never searched, never kept
        return {t for t in shaped if self._df[t] <= limit}


def _top(weights: Mapping[str, float], n: int) -> dict[str, float]:
    """The `n` heaviest entries (ties: alphabetical, so the cut is deterministic)."""
    return dict(sorted(weights.items(), key=lambda tw: (-tw[1], tw[0]))[:n])


def _l1(weights: Mapping[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {t: w / total for t, w in weights.items()} if total > 0 else {}


def _surface_words(tokens: Sequence[str], texts: Sequence[str], index: IndexBackend) -> dict[str, str]:
    """A word tokenizing to exactly each token: the token itself, else a word of `texts` (the most frequent)."""
    tokens = list(dict.fromkeys(tokens))
    out = {t: t for t, got in zip(tokens, index.tokenize(tokens)) if got == [t]}
    wanted = set(tokens) - set(out)
    if wanted and texts:
        counts = Counter(w for text in texts for w in _WORD.findall(text))
        candidates = sorted(counts, key=lambda w: (-counts[w], w))
        for word, got in zip(candidates, index.tokenize(candidates)):
            if len(got) == 1 and got[0] in wanted and got[0] not in out:
                out[got[0]] = word
    return out


def _readable_words(tokens: Sequence[str], query: str, texts: Sequence[str], index: IndexBackend) -> dict[str, str]:
    """A word a person reads for each token: the query's own word, else the feedback pages' most frequent one.

    Stems such as "temperatur" are what BM25 matches, not words; only what is shown changes, never
    the text searched.
    """
    wanted = set(tokens)
    out: dict[str, str] = {}
    own = list(dict.fromkeys(_WORD.findall(query)))
    for word, got in zip(own, index.tokenize(own) if own else []):
        if len(got) == 1 and got[0] in wanted and got[0] not in out:
            out[got[0]] = word
    if wanted - set(out) and texts:
        counts = Counter(w.lower() for text in texts for w in _WORD.findall(text))
        candidates = sorted(counts, key=lambda w: (-counts[w], w))
        for word, got in zip(candidates, index.tokenize(candidates)):
            if len(got) == 1 and got[0] in wanted and got[0] not in out:
                out[got[0]] = word
    return out
