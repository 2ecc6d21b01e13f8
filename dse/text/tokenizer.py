"""The BM25 tokenizer: page text layers and queries to stemmed token lists, the same pipeline for both.

The `bm25` encoder and the index's text side (built beside every visual index) both use it.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import Any, Sequence

# language code -> (PyStemmer algorithm, name of the bm25s stopword tuple)
LANGUAGES: dict[str, tuple[str, str]] = {
    "en": ("english", "STOPWORDS_EN"),
    "de": ("german", "STOPWORDS_GERMAN"),
    "fr": ("french", "STOPWORDS_FRENCH"),
    "es": ("spanish", "STOPWORDS_SPANISH"),
    "it": ("italian", "STOPWORDS_ITALIAN"),
    "pt": ("portuguese", "STOPWORDS_PORTUGUESE"),
    "nl": ("dutch", "STOPWORDS_DUTCH"),
    "sv": ("swedish", "STOPWORDS_SWEDISH"),
    "no": ("norwegian", "STOPWORDS_NORWEGIAN"),
    "da": ("danish", "STOPWORDS_DANISH"),
    "ru": ("russian", "STOPWORDS_RUSSIAN"),
    "tr": ("turkish", "STOPWORDS_TURKISH"),
}
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # bm25s's default: words of two or more word characters
SCHEMES = ("dse-2", "dse-1", "bm25s")
"""Tokenizer schemes (`Tokenizer.scheme`): "bm25s" bm25s's tokenizer as it is (indexes built
before schemes existed); "dse-1" first normalises the forms people's documents and questions
write differently (`normalise_dse1`); "dse-2" adds, after the words, each pair of adjacent words
as one token ("cash_flow": adjacency, as in the sequential dependence model, Metzler and Croft
2005), and defaults to the fuller stopword list of its language (`dse.text.stopwords`). New
indexes use the first; an index keeps the scheme it records."""
PAIR = "_"  # joins a pair of adjacent words; no word token holds one (dse-1 splits words at "_")
_HYPHENATED = re.compile(r"(\w)-[ \t]*\r?\n[ \t]*(\w)")  # a word broken across a line: "exam-\nple"
_THOUSANDS = re.compile(r"(?<=\d)[,.](?=\d{3}(?!\d))")  # 1,577 / 1.577 / 12,345,678
_DIGIT_LETTER = re.compile(r"(?<=\d)-(?=[^\W\d_]\b)")  # 10-K -> 10K
_LETTER_DIGIT = re.compile(r"(?<=[^\W\d_])(?=\d)")  # FY2018 -> FY 2018, Q3 -> Q 3
_MIXED = re.compile(r"\b\w*[^\W\d_]\d\w*\b")  # a word with a letter followed by a digit
_quieted = False


def quiet_bm25s_logger() -> None:
    """Stop bm25s's debug lines ("Building index from IDs") reaching every log handler.

    bm25s sets its logger to DEBUG when imported, so any handler an application installs (a
    server's, pytest's, `logging.basicConfig`) prints its debug lines. Called once after dse
    imports bm25s, this resets it to NOTSET: bm25s then logs at the level the application
    configured (WARNING by default). To see them: `logging.getLogger("bm25s").setLevel(logging.DEBUG)`.
    """
    global _quieted
    if _quieted:
        return
    _quieted = True
    log = logging.getLogger("bm25s")
    if log.level == logging.DEBUG:  # bm25s's own setting, not the user's (this runs right after its import)
        log.setLevel(logging.NOTSET)


def normalise_dse1(text: str) -> str:
    """The "dse-1" normalisation: the same word or number written the ways documents write it.

    A word hyphenated across a line break is joined ("exam-\\nple" -> "example"); thousands
    separators go ("1,577", "1.577" -> "1577"); a number and a letter joined by a hyphen join
    ("10-K" -> "10K"); underscores separate words ("AMAZON_2017_10K" -> "AMAZON 2017 10K"); a
    word with a letter followed by a digit is kept and followed by its parts ("FY2018" ->
    "FY2018 FY 2018", "Q3" -> "Q3 Q 3"), so "FY2018" matches "2018" and "fiscal 2018" while
    "Q3" still matches only "Q3".
    """
    text = _HYPHENATED.sub(r"\1\2", text)
    text = _THOUSANDS.sub("", text)
    text = _DIGIT_LETTER.sub("", text)
    text = text.replace("_", " ")
    return _MIXED.sub(lambda m: f"{m.group(0)} {_LETTER_DIGIT.sub(' ', m.group(0))}", text)


class Tokenizer:
    """Deterministic tokenizer for BM25, the same pipeline for queries and pages.

    Pipeline: Unicode NFKC (splits PDF ligatures such as "ﬁ"), the scheme's normalisation
    ("dse-1", "dse-2": `normalise_dse1`), lowercase, words matching `TOKEN_PATTERN`, drop
    stopwords (bm25s's list for the language; "dse-2": the fuller `dse.text.stopwords` list
    where there is one), Snowball stem (PyStemmer), then ("dse-2") the adjacent pairs.

    Args:
        language: Language code, one of `LANGUAGES` (sets the default stemmer and stopwords).
        stemmer: PyStemmer algorithm name, or "none" to keep words unstemmed.
        stopwords: Language code of the stopword list (bm25s's), a name in
            `dse.text.stopwords.LISTS` ("en-snowball"), or "none" to keep every word.
        scheme: Text normalisation before the words are taken (`SCHEMES`); recorded in each
            index, so an index built with "bm25s" keeps it.
        glossary: Query glossary (`dse.text.glossary`: "finance-1", or "none"): the measures a
            query names are expanded by `tokenize_query`; pages are never expanded.

    Raises:
        ValueError: an unknown language, stemmer, stopword list, scheme or glossary.
    """

    def __init__(
        self, language: str = "en", stemmer: str | None = None, stopwords: str | None = None, scheme: str = SCHEMES[0],
        glossary: str = "none",
    ) -> None:
        import Stemmer
        import bm25s.stopwords

        from dse.text.glossary import check_glossary
        from dse.text.stopwords import LISTS

        quiet_bm25s_logger()
        if language not in LANGUAGES:
            raise ValueError(f"unsupported BM25 language {language!r}; use one of {', '.join(LANGUAGES)}")
        if scheme not in SCHEMES:
            raise ValueError(f"unknown BM25 tokenizer scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
        self.scheme = scheme
        self.language = language
        self.stemmer_name = stemmer or LANGUAGES[language][0]
        fuller = f"{language}-snowball"
        self.stopwords_name = stopwords or (fuller if scheme == "dse-2" and fuller in LISTS else language)
        if self.stemmer_name == "none":
            self._stem = None
        elif self.stemmer_name in Stemmer.algorithms():
            self._stem = Stemmer.Stemmer(self.stemmer_name)
        else:
            raise ValueError(f"unknown stemmer {self.stemmer_name!r}; use 'none' or one of {Stemmer.algorithms()}")
        if self.stopwords_name == "none":
            self._stopwords: frozenset[str] = frozenset()
        elif self.stopwords_name in LANGUAGES or self.stopwords_name in LISTS:
            base = self.stopwords_name.split("-")[0]
            self._stopwords = frozenset(getattr(bm25s.stopwords, LANGUAGES[base][1])) | LISTS.get(
                self.stopwords_name, frozenset())
        else:
            names = ", ".join([*LANGUAGES, *LISTS])
            raise ValueError(f"unknown stopword list {self.stopwords_name!r}; use 'none' or one of {names}")
        self._pattern = re.compile(TOKEN_PATTERN)
        self.glossary = check_glossary(glossary)
        self._entries: list[tuple[tuple[str, ...], tuple[str, ...]]] | None = None

    def options(self) -> dict[str, Any]:
        """Tokenizer settings (valid constructor arguments; `glossary` only when one is used)."""
        out = {"language": self.language, "stemmer": self.stemmer_name, "stopwords": self.stopwords_name,
               "scheme": self.scheme}
        if self.glossary != "none":
            out["glossary"] = self.glossary
        return out

    def words(self, text: str) -> list[str]:
        """The stemmed words of one text, stopwords dropped (its tokens before the pairs)."""
        text = unicodedata.normalize("NFKC", text)
        if self.scheme != "bm25s":
            text = normalise_dse1(text)
        words = self._pattern.findall(text.lower())
        words = [w for w in words if w not in self._stopwords]
        return self._stem.stemWords(words) if self._stem is not None and words else words

    def tokenize(self, text: str) -> list[str]:
        """Token list of one text."""
        words = self.words(text)
        if self.scheme == "dse-2":
            words += [a + PAIR + b for a, b in zip(words, words[1:])]
        return words

    def tokenize_query(self, text: str) -> list[str]:
        """Token list of one query: `tokenize`, then the tokens of the glossary's line items for
        each measure the query names (`dse.text.glossary`; each line item tokenized on its own)."""
        tokens = self.tokenize(text)
        if self.glossary == "none":
            return tokens
        words = self.words(text)
        for key, items in self._glossary_entries():
            n = len(key)
            if any(tuple(words[i:i + n]) == key for i in range(len(words) - n + 1)):
                for item in items:
                    tokens += self.tokenize(item)
        return tokens

    def _glossary_entries(self) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
        """(the key's words, its line items) of each glossary entry, in the glossary's order."""
        if self._entries is None:
            from dse.text.glossary import GLOSSARIES

            entries = GLOSSARIES[self.glossary]
            self._entries = [(tuple(self.words(key)), items) for key, items in entries.items() if self.words(key)]
        return self._entries

    def tokenize_all(self, texts: Sequence[str], what: str = "texts", queries: bool = False) -> list[list[str]]:
        """Token lists of texts (an empty text gives an empty list); `queries`: with `tokenize_query`.

        Raises:
            TypeError: `texts` is one string, or holds something other than strings (`what` names them).
        """
        if isinstance(texts, str):
            raise TypeError(f"{what} must be a list of strings, got one string")
        out = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"{what}[{i}] must be a str (the page's text layer), got {type(text).__name__}")
            out.append(self.tokenize_query(text) if queries else self.tokenize(text))
        return out
