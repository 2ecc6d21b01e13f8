"""A page's text made ready for snippets (`PageText`) and a snippet's result (`Snippet`)."""

from __future__ import annotations

from dataclasses import dataclass

from dse.text.forms import flatten, is_word_char, spaced


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
