"""Text snippets of a page around the words that match a query, with the matches' offsets.

Words match when the index's BM25 tokenizer (the one its text side was built with: same
normalisation, stopwords and stemmer) gives them a token of the query, so "margins" in a page
is highlighted for the query "margin".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dse.serve.snippets.pages import PageText, Snippet
from dse.serve.snippets.tokens import CachedTokenizer


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
