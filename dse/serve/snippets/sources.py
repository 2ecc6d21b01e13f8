"""The page texts and word forms that snippets are made from, for one index, shared by `dse serve` and `dse mcp`.

Where the index records its word forms (`dse.text.forms`, every index built since they were),
a query's tokens name the words to highlight directly and a page's text is only flattened; an
older index has each page's words tokenized, once per word (`CachedTokenizer`).
"""

from __future__ import annotations

from typing import Any

from dse.serve.lru import LruCache
from dse.serve.snippets.cache import SnippetCache
from dse.serve.snippets.pages import PageText
from dse.serve.snippets.tokens import CachedTokenizer

_UNRECORDED = object()  # the index records no word forms at these rows


class SnippetTexts:
    """Page texts prepared for snippets and the index's word forms, kept for the pages and queries seen most.

    Safe to share across request threads. A page id names the page's bytes, so a kept text is
    never stale; word forms are kept per row count (new commits add words).

    Args:
        index: The index (`PageIndex`, or any backend with `page`, `page_texts` and `tokenize`;
            `word_forms` where it records them).
        size: Page texts kept (and 16 times as many tokens' word forms).
    """

    def __init__(self, index: Any, size: int = 4096) -> None:
        self.index = index
        self.tokenize = CachedTokenizer(index.tokenize)  # each word tokenized once (indexes without forms)
        self._texts = LruCache(size)  # (page_id, light) -> PageText
        self._forms = LruCache(16 * size)  # (rows, token) -> the words giving it; rows -> _UNRECORDED

    def cache(self, width: int = 240, size: int = 16_384) -> SnippetCache:
        """A snippet cache over these texts (`width` characters a snippet, about)."""
        return SnippetCache(self.tokenize, self.page_text, size=size, width=width, page_texts=self.page_texts,
                            forms=self.word_forms)

    def page_text(self, page_id: str) -> PageText:
        """A page's text prepared for snippets, its words learned (KeyError: no such page)."""
        found = self._texts.get((page_id, False))
        if found is None:
            found = self.tokenize.prepare(self.index.page(page_id).text)
            self._texts.put((page_id, False), found)
        return found

    def page_texts(self, page_ids: list[str], light: bool = False) -> dict[str, PageText]:
        """`page_text` of several pages, those not kept read from the index together (gone: left out).

        `light`: prepared without their words (`PageText.light`), for snippets from word forms.
        """
        out = {pid: found for pid in page_ids if (found := self._texts.get((pid, light))) is not None}
        missing = [pid for pid in page_ids if pid not in out]
        for pid, text in (self.index.page_texts(missing) if missing else {}).items():
            out[pid] = PageText.light(text) if light else self.tokenize.prepare(text)
            self._texts.put((pid, light), out[pid])
        return out

    def word_forms(self, tokens: frozenset[str]) -> frozenset[str] | None:
        """The words of the index that give one of `tokens`, or None where it does not record them
        all (`PageIndex.word_forms`; an index built before they were, or another backend).

        Kept per token (queries share most of their tokens), so a query whose tokens were all
        seen at this row count reads nothing from the index.
        """
        forms = getattr(self.index, "word_forms", None)
        view = getattr(self.index, "view", None)
        if forms is None or view is None:
            return None
        rows = view().rows  # new commits may add words to a token
        if self._forms.get(rows) is _UNRECORDED:
            return None
        known = {t: found for t in tokens if (found := self._forms.get((rows, t))) is not None}
        missing = [t for t in tokens if t not in known]
        if missing:
            read = forms(missing)
            if read is None:
                self._forms.put(rows, _UNRECORDED)
                return None
            for token, words in read.items():
                self._forms.put((rows, token), words)
            known.update(read)
        return frozenset().union(*known.values())
