"""A rewrite as a person reads it: the distinct terms searched, the query's own first, with their weights.

RM3's expanded text repeats each term by its weight ("bird bird bird ... dive dive ..."), which is
what BM25 needs and nothing a person can read. `summarize` turns a `Rewrite` into its distinct
terms: the query's own terms in the query's order, then the expansion terms, heaviest first, each
with its weight (the RM3 weights of all the terms sum to 1), and a one-line `text` showing the
query's terms and the `top` heaviest expansion terms. A rewrite without terms (an LLM's, or a
query RM3 left alone) reads as its own text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dse.rewrite.base import Rewrite

TOP_EXPANSION_TERMS = 5


@dataclass(frozen=True)
class RewriteTerm:
    """One distinct term of a rewrite.

    Attributes:
        term: The word searched (a word of the query or of the feedback pages).
        token: The index's token it stands for (the stem BM25 matches).
        weight: Its weight in the rewrite (RM3: the interpolated relevance model; all sum to 1).
        original: True for a term of the query itself, False for an expansion term.
    """

    term: str
    token: str
    weight: float
    original: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the weight rounded to 6 digits)."""
        return {"term": self.term, "token": self.token, "weight": round(self.weight, 6), "original": self.original}


@dataclass(frozen=True)
class RewriteSummary:
    """What a rewrite searched, readable.

    Attributes:
        text: One line: the query's terms, then `+` and the heaviest expansion terms with their
            weights (`bird dive + falcon 0.12, peregrine 0.081, ... 4 more`); an LLM's text as it is.
        terms: Every distinct term, the query's own first (in its order), then the expansion's, heaviest first.
        rewriter: The rewriter's registry name.
    """

    text: str
    terms: tuple[RewriteTerm, ...]
    rewriter: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: `{"text", "terms": [{"term", "token", "weight", "original"}], "rewriter"}`."""
        return {"text": self.text, "terms": [t.to_json() for t in self.terms], "rewriter": self.rewriter}


def summarize(rewrite: Rewrite, top: int = TOP_EXPANSION_TERMS) -> RewriteSummary:
    """The distinct terms of `rewrite`, the query's own first, and a one-line text of them.

    Args:
        rewrite: A rewrite (`QueryRewriter.rewrite`).
        top: Expansion terms shown in `text` (all of them are in `terms`).

    Raises:
        ValueError: `top` below 0.
    """
    if top < 0:
        raise ValueError(f"top must be >= 0, got {top}")
    if not rewrite.terms:
        return RewriteSummary(rewrite.text, (), rewrite.rewriter)
    words = rewrite.words if len(rewrite.words) == len(rewrite.terms) else tuple(t for t, _ in rewrite.terms)
    order = {t: i for i, t in enumerate(rewrite.query_terms)}
    found = [RewriteTerm(word, token, weight, token in order)
             for (token, weight), word in zip(rewrite.terms, words)]
    own = sorted((t for t in found if t.original), key=lambda t: order[t.token])
    expansion = [t for t in found if not t.original]  # heaviest first, as the rewrite keeps them
    shown = ", ".join(f"{t.term} {t.weight:.2g}" for t in expansion[:top])
    rest = len(expansion) - min(top, len(expansion))
    parts = [" ".join(t.term for t in own)] if own else []
    if shown:
        parts.append("+ " + shown + (f", ... {rest} more" if rest else ""))
    elif rest:
        parts.append(f"+ {rest} expansion terms")
    return RewriteSummary(" ".join(parts), tuple(own + expansion), rewrite.rewriter)
