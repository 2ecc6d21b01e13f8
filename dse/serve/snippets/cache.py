"""Snippets remembered per page and query tokens, the texts of a search's pages fetched together."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from dse.serve.lru import LruCache
from dse.serve.snippets.pages import PageText, Snippet
from dse.serve.snippets.tokens import CachedTokenizer
from dse.serve.snippets.windows import snippet


class SnippetCache:
    """Snippets remembered per (page id, query tokens): a page's snippet for a query depends on nothing else.

    Queries that tokenize alike ("margins", "Margin") share an entry. A page id names the page's
    bytes, so an entry never goes stale. Safe to share across request threads.

    Args:
        tokenize: The index's tokenizer, best a `CachedTokenizer` (the key needs the query's tokens).
        page_text: Page id -> its text (or `PageText`); KeyError for a page that is gone.
        size: Snippets kept (0: none, each is computed).
        width: Characters in a window, about.
        page_texts: Page ids -> their texts (or `PageText`s), fetched together (a page that is
            gone left out); default: `page_text` one page at a time.
        forms: Query tokens -> the words of the index that give one of them (the index's word
            forms, `dse.text.forms`), or None where the index does not record them all; then
            `page_texts(ids, True)` is asked for light `PageText`s (`PageText.light`), and the
            pages' words are never tokenized. Without it (or when it gives None) the words of
            each page are tokenized, as `tokenize` gives them.
    """

    def __init__(self, tokenize: Callable[[Sequence[str]], list[list[str]]],
                 page_text: Callable[[str], "str | PageText"], size: int = 16_384, width: int = 240,
                 page_texts: Callable[..., Mapping[str, "str | PageText"]] | None = None,
                 forms: Callable[[frozenset[str]], "frozenset[str] | None"] | None = None) -> None:
        self._tokenize, self._page_text, self._width = tokenize, page_text, width
        self._page_texts = page_texts or self._one_by_one
        self._forms = forms
        self._cache = LruCache(size)

    def __call__(self, page_id: str, query: str) -> Snippet:
        """The snippet of page `page_id` for `query` (KeyError: no such page)."""
        found = self.many([page_id], query)[0]
        if found is None:
            raise KeyError(f"no page {page_id!r} in this index")
        return found

    def many(self, page_ids: Sequence[str], query: str) -> list[Snippet | None]:
        """The snippets of several pages for one query, in order (None for a page that is gone).

        The query is tokenized once and the texts of the pages not cached are fetched together.
        """
        wanted = self._wanted(query)
        out: list[Snippet | None] = [self._cache.get((pid, wanted)) for pid in page_ids]
        missing = [pid for pid, found in zip(page_ids, out) if found is None]
        if not missing:
            return out
        matching = self._forms(wanted) if self._forms is not None else None
        lowered = frozenset(w.lower() for w in matching) if matching is not None else None
        ids = list(dict.fromkeys(missing))
        texts = self._page_texts(ids, True) if matching is not None else self._page_texts(ids)
        for i, pid in enumerate(page_ids):
            if out[i] is None and pid in texts:
                out[i] = snippet(texts[pid], query, self._tokenize, self._width, wanted=wanted, matching=matching,
                                 lowered=lowered)
                self._cache.put((pid, wanted), out[i])
        return out

    def _wanted(self, query: str) -> frozenset[str]:
        if isinstance(self._tokenize, CachedTokenizer):
            return self._tokenize.query_tokens(query)
        return frozenset(self._tokenize([query])[0]) if query.strip() else frozenset()

    def _one_by_one(self, page_ids: Sequence[str], light: bool = False) -> dict[str, "str | PageText"]:
        out = {}
        for pid in page_ids:
            try:
                out[pid] = self._page_text(pid)
            except KeyError:
                pass
        return out
