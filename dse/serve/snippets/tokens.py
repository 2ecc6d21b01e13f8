"""A tokenizer cache for snippets: each word tokenized once, and the words that give each token."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence

from dse.serve.lru import LruCache
from dse.serve.snippets.pages import PageText

_WORD = re.compile(r"\w+")


class CachedTokenizer:
    """A tokenizer that remembers the tokens of each word it has seen (pages share most words).

    It also knows, for each token, the words seen that give it, so the words of a page that
    match a query are found by set operations (`matching`). Only words (`\\w+` runs, what pages
    are made of) are learned: a query's tokens are kept apart, in a small LRU cache, so that
    distinct queries do not grow the token -> words sets every `matching` goes through. Safe to
    share across request threads; when it holds `max_words` words it starts again empty, a new
    generation (the pages it prepared before are learned again when next used).

    Args:
        tokenize: The index's tokenizer (texts -> token lists).
        max_words: Words remembered at most.
        max_queries: Queries whose tokens are remembered at most.
    """

    def __init__(self, tokenize: Callable[[Sequence[str]], list[list[str]]], max_words: int = 200_000,
                 max_queries: int = 4096) -> None:
        self._tokenize = tokenize
        self._max = int(max_words)
        self._tokens: dict[str, list[str]] = {}
        self._words: dict[str, set[str]] = {}  # token -> the words seen that give it
        self._queries = LruCache(max_queries)  # query -> its token list
        self._lock = threading.Lock()
        self.generation = 0  # counts the times it started again empty

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        """Token lists of `texts` (words, or a query), as the wrapped tokenizer gives them."""
        words = {t for t in texts if _WORD.fullmatch(t)}
        self._learn(words)
        known = self._tokens
        return [known[t] if t in known else self._query(t) for t in texts]

    def query_tokens(self, query: str) -> frozenset[str]:
        """The distinct tokens of a query (none for a blank one)."""
        return frozenset(self([query])[0]) if query.strip() else frozenset()

    def _query(self, text: str) -> list[str]:
        found = self._queries.get(text)
        if found is None:
            found = self._tokenize([text])[0]
            self._queries.put(text, found)
        return found

    def prepare(self, text: str) -> PageText:
        """A page's text prepared for snippets, its words learned (`matching` then looks none up)."""
        page = PageText.of(text)
        return PageText(page.flat, page.words, page.spaced, self._learn(page.words))

    def matching(self, page: PageText | frozenset[str] | set[str], wanted: set[str] | frozenset[str]) -> set[str]:
        """The words of `page` (prepared, or its distinct words) that give one of the tokens `wanted`."""
        words = page.words if isinstance(page, PageText) else frozenset(page)
        generation = page.generation if isinstance(page, PageText) else -1
        while True:
            if generation != self.generation:  # not learned since it last started again
                generation = self._learn(words)
            with self._lock:
                if self.generation == generation:
                    found = set().union(*(self._words.get(t, ()) for t in wanted))
                    break
        return set(words & found)

    def _learn(self, texts: frozenset[str] | set[str]) -> int:
        """Learn the tokens of `texts`; returns the generation that holds them all."""
        while True:
            generation = self.generation
            missing = texts.difference(self._tokens)  # in C: a set against a dict's keys
            if not missing and self.generation == generation:
                return generation
            if len(self._tokens) + len(missing) > self._max:
                missing = set(texts)  # starting again: every one of these is needed now
            tokens = self._tokenize(list(missing))
            with self._lock:
                if self.generation != generation:
                    continue  # another thread started again meanwhile: look again
                if len(self._tokens) + len(missing) > self._max:
                    self._tokens, self._words = {}, {}
                    self.generation += 1
                for text, toks in zip(missing, tokens):
                    self._tokens[text] = toks
                    for tok in toks:
                        self._words.setdefault(tok, set()).add(text)
                if len(missing) == len(texts) or self.generation == generation:
                    return self.generation
