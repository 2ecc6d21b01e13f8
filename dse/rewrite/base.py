"""The query rewriter interface: a query in, the text the encoder and BM25 see out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

if TYPE_CHECKING:
    from dse.backends import IndexBackend


class RewriteError(RuntimeError):
    """A rewrite could not be made (an unreachable endpoint, a model that does not load): the message says why."""


@dataclass(frozen=True)
class Rewrite:
    """One query rewritten.

    Attributes:
        query: The query as given.
        text: What the encoder and BM25 see instead.
        rewriter: The rewriter's registry name.
        identity: What produced it beyond the name (model path or endpoint model, RM3 parameters).
        prompt_version: Version of the prompt the model read (`dse.prompts.PROMPT_VERSIONS`), None without one.
        cached: True when the text came from a rewrite cache, not a new generation.
        terms: RM3: the expansion's (term, weight) pairs, heaviest first (empty for other rewriters).
        words: RM3: the word written in `text` for each of `terms` (same order; the term is its token).
        query_terms: RM3: the query's own tokens, distinct, in the query's order (`dse.rewrite.summary`
            lists them first).
    """

    query: str
    text: str
    rewriter: str
    identity: str
    prompt_version: str | None = None
    cached: bool = False
    terms: tuple[tuple[str, float], ...] = field(default=())
    words: tuple[str, ...] = field(default=())
    query_terms: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out: dict[str, Any] = {"query": self.query, "text": self.text, "rewriter": self.rewriter,
                               "identity": self.identity, "prompt_version": self.prompt_version,
                               "cached": self.cached}
        if self.terms:
            out["terms"] = [[t, round(w, 6)] for t, w in self.terms]
        return out


class QueryRewriter(ABC):
    """Rewrites text queries before they are encoded (`Retriever.search(..., rewrite=...)`).

    Subclasses set `name` (the registry name) and implement `rewrite_many`.
    """

    name: ClassVar[str] = ""
    needs_index: ClassVar[bool] = False  # True: `rewrite_many` reads the index (pseudo-relevance feedback)

    @property
    @abstractmethod
    def identity(self) -> str:
        """What produced the rewrites beyond the name (the cache key's model identity)."""

    @property
    def prompt_version(self) -> str | None:
        """Version of the prompt the model reads (None: no prompt)."""
        return None

    def describe(self) -> dict[str, Any]:
        """What evaluation results and logs record about this rewriter."""
        return {"name": self.name, "identity": self.identity, "prompt_version": self.prompt_version}

    @abstractmethod
    def rewrite_many(
        self, queries: Sequence[str], index: IndexBackend | None = None, where: Mapping[str, Any] | None = None,
    ) -> list[Rewrite]:
        """One `Rewrite` per query, in order.

        Args:
            queries: Text queries.
            index: The index searched (needed when `needs_index`).
            where: The search's metadata filter (feedback pages are taken under it).
        """

    def rewrite(self, query: str, index: IndexBackend | None = None, where: Mapping[str, Any] | None = None) -> Rewrite:
        """One query rewritten (`rewrite_many`)."""
        return self.rewrite_many([query], index, where)[0]


def check_queries(queries: Sequence[Any]) -> list[str]:
    """The queries as a list of str (TypeError naming the first that is not one)."""
    if isinstance(queries, str):
        raise TypeError("rewrite_many takes a list of queries; use rewrite() for one")
    out = []
    for i, q in enumerate(queries):
        if not isinstance(q, str):
            raise TypeError(f"queries[{i}] is a {type(q).__name__}: only text queries are rewritten")
        out.append(q)
    return out
