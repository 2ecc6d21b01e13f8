"""Query rewriting inside a search: the rewriter's text replaces each text query before encoding."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from dse.backends import IndexBackend
from dse.rewrite import QueryRewriter, Rewrite, load_rewriter


def resolve_rewriter(rewrite: QueryRewriter | str) -> QueryRewriter:
    """A rewriter given by itself or by its registry name (`dse.rewrite.load_rewriter`, default options)."""
    if isinstance(rewrite, QueryRewriter):
        return rewrite
    if isinstance(rewrite, str):
        return load_rewriter(rewrite)
    raise TypeError(f"rewrite must be a QueryRewriter or a rewriter name, got {type(rewrite).__name__}")


def rewrite_queries(
    queries: Sequence[Any], rewriter: QueryRewriter, index: IndexBackend, where: Mapping[str, Any] | None = None,
) -> list[Rewrite]:
    """One `Rewrite` per query (text queries only: TypeError naming an image query)."""
    for i, q in enumerate(queries):
        if not isinstance(q, str):
            raise TypeError(f"queries[{i}] is a {type(q).__name__}: rewrite= applies to text queries only")
    return rewriter.rewrite_many(list(queries), index if rewriter.needs_index else None, where)
