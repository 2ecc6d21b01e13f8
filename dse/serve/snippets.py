"""Text snippets of a page around the words that match a query, with the matches' offsets.

Words match when the index's BM25 tokenizer (the one its text side was built with: same
normalisation, stopwords and stemmer) gives them a token of the query, so "margins" in a page
is highlighted for the query "margin".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Snippet:
    """A window of a page's text.

    Attributes:
        text: The window ("…" marks text cut at either end).
        highlights: `(start, end)` character offsets in `text` of the words that match the query.
    """

    text: str
    highlights: tuple[tuple[int, int], ...]


def snippet(
    text: str, query: str, tokenize: Callable[[Sequence[str]], list[list[str]]], width: int = 240
) -> Snippet:
    """The `width`-character window of `text` holding the most query matches (its start if none).

    Args:
        text: The page's text layer.
        query: The query.
        tokenize: The index's tokenizer (texts -> token lists), e.g. `PageIndex.tokenize`.
        width: Characters in the window, about.
    """
    flat = _SPACE.sub(" ", text).strip()
    if not flat:
        return Snippet("", ())
    wanted = set(tokenize([query])[0]) if query.strip() else set()
    words = list(_WORD.finditer(flat))
    hits: list[tuple[int, int]] = []
    if wanted and words:
        tokens = tokenize([m.group(0) for m in words])
        hits = [(m.start(), m.end()) for m, toks in zip(words, tokens) if wanted.intersection(toks)]
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
