"""Word forms: which words of the pages give each BM25 token, recorded at index time for snippets.

A snippet highlights the words of a page that the index's tokenizer turns into a token of the
query ("margins" for the query "margin"). Working that out at query time means splitting every
page shown into its words and tokenizing the words not seen before: most of a snippet's cost.
So each commit records, for every distinct word of its pages (`page_words`: the `\\w+` runs), the
pairs (token, word) of the tokens that word gives (`word_forms`), in the catalogue beside the
pages; a query's tokens then name the words to look for directly (`Catalogue.word_forms`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence


def is_word_char(c: str) -> bool:
    """True for the characters `\\w` matches."""
    return c.isalnum() or c == "_"


ASCII_GAPS = {i: " " for i in range(128) if not is_word_char(chr(i))}
"""A `str.translate` table turning the ASCII characters `\\w` does not match into spaces."""


def gaps(text: str) -> dict[int, str]:
    """A `str.translate` table that turns every character of `text` that `\\w` does not match into a space."""
    if text.isascii():
        return ASCII_GAPS
    return {ord(c): " " for c in set(text) if not is_word_char(c)}


def flatten(text: str) -> str:
    """The text with each run of white space as one space (what a snippet shows)."""
    return " ".join(text.split())


def spaced(flat: str) -> str:
    """`flat` with every character `\\w` does not match as a space, between two spaces.

    The occurrences of a word `w` in `flat` are then exactly the `" w "` substrings, at the same
    offsets (one more, for the leading space).
    """
    return f" {flat.translate(gaps(flat))} "


def page_words(text: str) -> frozenset[str]:
    """The distinct words (`\\w+` runs) of a page's text."""
    return frozenset(spaced(flatten(text)).split())


def word_forms(
    texts: Iterable[str], tokenize: Callable[[Sequence[str]], list[list[str]]]
) -> list[tuple[str, str]]:
    """The (token, word) pairs of the distinct words of `texts`: each token a word gives, sorted.

    Args:
        texts: Page texts.
        tokenize: The index's tokenizer for pages (texts -> token lists).
    """
    words: set[str] = set()
    for text in texts:
        words.update(page_words(text))
    ordered = sorted(words)
    pairs = {(token, word) for word, tokens in zip(ordered, tokenize(ordered) if ordered else []) for token in tokens}
    return sorted(pairs)
