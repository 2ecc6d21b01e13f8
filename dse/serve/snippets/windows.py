"""Text snippets of a page around the words that match a query, with the matches' offsets.

Words match when the index's BM25 tokenizer (the one its text side was built with: same
normalisation, stopwords and stemmer) gives them a token of the query, so "margins" in a page
is highlighted for the query "margin".
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from dse.serve.lru import LruCache
from dse.text.forms import flatten, is_word_char, spaced

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Snippet:
    """A window of a page's text.

    Attributes:
        text: The window ("…" marks text cut at either end).
        highlights: `(start, end)` character offsets in `text` of the words that match the query.
    """

    text: str
    highlights: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class PageText:
    """A page's text made ready for snippets (worth keeping for pages that come back often).

    Made once per page, so that a snippet for a query goes through no text but the few words
    that match it: no regular expression and no tokenizer runs per request.

    Attributes:
        flat: The text with each run of white space as one space.
        words: Its distinct words (`\\w+` runs).
        spaced: `flat` with every character that is not a word character as a space, between two
            spaces: the occurrences of a word `w` are exactly its `" w "` substrings, at the same
            offsets as in `flat` (one more, for the leading space).
        generation: The `CachedTokenizer` generation that learned `words` (-1: none did).
    """

    flat: str
    words: frozenset[str]
    spaced: str
    generation: int = -1

    @classmethod
    def of(cls, text: str) -> "PageText":
        """Prepare a page's text layer (`CachedTokenizer.prepare` also learns its words)."""
        flat = flatten(text)  # runs of white space as one space
        gapped = spaced(flat)
        return cls(flat, frozenset(gapped.split()), gapped)

    @classmethod
    def light(cls, text: str) -> "PageText":
        """Prepare a page's text layer as `flat` alone (`words` and `spaced` empty): for snippets
        whose matching words are known already (`snippet(..., matching=...)`: the index's word forms)."""
        return cls(flatten(text), frozenset(), "")

    def occurrences(self, words: frozenset[str] | set[str], lowered: frozenset[str] | None = None) -> list[tuple[int, int]]:
        """`(start, end)` offsets in `flat` of every occurrence of `words` (any words), in order.

        Each distinct lower-cased word is looked for once in the lower-cased text (the index's
        word forms list "Margin", "margin" and "MARGIN" apart); a match counts when it is a whole
        word (`\\w` neither side) that is exactly one of `words`. Where lower-casing changes the
        text's length (a dotted capital I), the words are looked for as they are.

        Args:
            words: The words to find (the matching words of the index, most not on this page).
            lowered: `{w.lower() for w in words}`, when the caller has it (one query, many pages).
        """
        flat = self.flat
        low = flat.lower()
        if len(low) != len(flat):
            low, needles = flat, words
        else:
            needles = lowered if lowered is not None else frozenset(w.lower() for w in words)
        n, out = len(flat), []
        for needle in needles:
            k = len(needle)
            at = low.find(needle)
            while at != -1:
                end = at + k
                if ((at == 0 or not is_word_char(flat[at - 1])) and (end == n or not is_word_char(flat[end]))
                        and flat[at:end] in words):
                    out.append((at, end))
                    at = low.find(needle, end)
                else:  # inside a longer word, or another word that lower-cases alike
                    at = low.find(needle, at + 1)
        out.sort()
        return out

    def spans(self, words: set[str] | frozenset[str]) -> list[tuple[int, int]]:
        """`(start, end)` offsets in `flat` of every occurrence of `words` (words of the page), in order."""
        spaced, out = self.spaced, []
        for word in words:
            needle, n = f" {word} ", len(word)
            at = spaced.find(needle)
            while at != -1:  # the match starts at its leading space: at `at` + 1 in `spaced`, `at` in `flat`
                out.append((at, at + n))
                at = spaced.find(needle, at + n + 1)  # its trailing space may lead the next one
        out.sort()
        return out


def snippet(
    text: str | PageText, query: str, tokenize: Callable[[Sequence[str]], list[list[str]]], width: int = 240,
    wanted: frozenset[str] | None = None, matching: frozenset[str] | set[str] | None = None,
    lowered: frozenset[str] | None = None,
) -> Snippet:
    """The `width`-character window of `text` holding the most query matches (its start if none).

    Args:
        text: The page's text layer, or it prepared (`PageText.of`; best `CachedTokenizer.prepare`,
            with the same tokenizer: then no word of the page is looked up).
        query: The query.
        tokenize: The index's tokenizer (texts -> token lists), e.g. `PageIndex.tokenize`, or
            a `CachedTokenizer` over it (faster).
        width: Characters in the window, about.
        wanted: The query's tokens, when the caller has them already (one query, many pages).
        matching: The words that give one of the query's tokens, when known (the index's word
            forms, `dse.text.forms`): looked for as they are, the page's words not tokenized.
            They may include words the page does not hold.
        lowered: The matching words lower-cased, when the caller has them (`PageText.occurrences`).
    """
    if not isinstance(text, PageText):
        text = PageText.light(text) if matching is not None else PageText.of(text)
    page = text
    flat = page.flat
    if not flat:
        return Snippet("", ())
    if matching is not None:
        return _window(flat, page.occurrences(matching, lowered), width)
    if wanted is None:
        wanted = frozenset(tokenize([query])[0]) if query.strip() else frozenset()
    hits: list[tuple[int, int]] = []
    if wanted:
        if isinstance(tokenize, CachedTokenizer):
            matching = tokenize.matching(page, wanted)
        else:
            matching = _matching_words(set(page.words), set(wanted), tokenize)
        hits = page.spans(matching)
    return _window(flat, hits, width)


def _window(flat: str, hits: list[tuple[int, int]], width: int) -> Snippet:
    """The snippet of `flat` around its best window of `hits` (`(start, end)` offsets, in order)."""
    start = _best_start(flat, hits, width)
    stop = min(len(flat), start + width)
    if stop < len(flat):  # end at a word boundary
        space = flat.rfind(" ", start, stop)
        stop = space if space > start + width // 2 else stop
    prefix = "… " if start > 0 else ""
    suffix = " …" if stop < len(flat) else ""
    shift = len(prefix) - start
    marks = tuple((a + shift, b + shift) for a, b in hits if a >= start and b <= stop)
    return Snippet(prefix + flat[start:stop] + suffix, marks)


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


def _matching_words(
    words: set[str], wanted: set[str], tokenize: Callable[[Sequence[str]], list[list[str]]]
) -> set[str]:
    """The distinct words of a page that tokenize to a query token.

    A stemmer changes a word's end, never its first letter, so a word of ASCII letters (one
    token at most, its first letter lower-cased) can only match a query token with its first
    letter; only those, and the words with digits, underscores or other characters (which a
    tokenizer may split or change: "FY2018" -> "fy", "2018"), are tokenized: a page's few hundred distinct words, not its thousands of words.
    """
    initials = {t[:1] for t in wanted}
    candidates = [w for w in words if not w.isascii() or w[:1].lower() in initials or not w.isalpha()]
    if not candidates:
        return set()
    return {w for w, toks in zip(candidates, tokenize(candidates)) if wanted.intersection(toks)}


def _best_start(flat: str, hits: list[tuple[int, int]], width: int) -> int:
    """Start of the window with the most hits (a little context before the first one)."""
    if not hits:
        return 0
    best, best_count, j = hits[0][0], 0, 0
    for i, (a, _) in enumerate(hits):  # windows starting at each hit; two pointers
        while j < len(hits) and hits[j][1] <= a + width:
            j += 1
        if j - i > best_count:
            best, best_count = a, j - i
    start = max(0, best - width // 6)
    if start > 0:  # begin at a word boundary
        space = flat.find(" ", start, best)
        start = space + 1 if space != -1 else start
    if len(flat) - start < width:  # near the end: show a full window
        start = max(0, len(flat) - width)
        space = flat.find(" ", start) if start else -1
        start = space + 1 if 0 <= space < len(flat) and start else start
    return start
