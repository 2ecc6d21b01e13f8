"""BM25 "encoder": turns page text layers and queries into stemmed token lists (no model weights)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Mapping, Sequence

from dse.encoders.base import Encoder
from dse.encoders.registry import register_encoder
from dse.text.glossary import DEFAULT, NONE
from dse.text.tokenizer import SCHEMES, Tokenizer
from dse.types import VectorKind


@register_encoder("bm25", "BM25 over the pages' text layer (no model weights)")
class BM25Encoder(Encoder):
    """Deterministic tokenizer for BM25, the same pipeline for queries and pages (`dse.text.tokenizer.Tokenizer`).

    Args:
        language: Language code, one of `dse.text.tokenizer.LANGUAGES` (sets the default stemmer and stopwords).
        stemmer: PyStemmer algorithm name, or "none" to keep words unstemmed.
        stopwords: Language code of the stopword list, a list name of `dse.text.stopwords.LISTS`,
            or "none" to keep every word.
        model: Only "bm25s" (accepted so that `describe()["model"]` round-trips; there are no weights).
        scheme: Text normalisation before the words are taken (`SCHEMES`, default the first);
            recorded in each index, so an index built with "bm25s" or "dse-1" keeps it.
        glossary: Query glossary (`dse.text.glossary`, default "finance-1"; "none": queries are
            tokenized as pages are): measures a question names ("current ratio", "capex") are
            expanded to the statement line items they are computed from. Recorded in each
            index; an index that records none (built before glossaries) uses "none".

    Settings left unset (None) follow an index's manifest when the encoder searches or adds to an
    index built with other defaults (`for_index`); settings given must match the index's.
    """

    kind: ClassVar[VectorKind] = "text"
    input: ClassVar[Literal["image", "text"]] = "text"

    def __init__(
        self, language: str | None = None, stemmer: str | None = None, stopwords: str | None = None,
        model: str = "bm25s", scheme: str | None = None, glossary: str | None = None,
    ) -> None:
        if model != "bm25s":
            raise ValueError(f"the bm25 encoder has no model weights; model must be 'bm25s', got {model!r}")
        given = {"language": language, "stemmer": stemmer, "stopwords": stopwords, "scheme": scheme,
                 "glossary": glossary}
        self.chosen: dict[str, str] = {k: v for k, v in given.items() if v is not None}
        """The settings given (the others are this version's defaults)."""
        self.tokenizer = Tokenizer(language or "en", stemmer, stopwords, scheme or SCHEMES[0], glossary or DEFAULT)
        self.language = self.tokenizer.language
        self.stemmer_name = self.tokenizer.stemmer_name
        self.stopwords_name = self.tokenizer.stopwords_name
        self.scheme = self.tokenizer.scheme
        self.glossary = self.tokenizer.glossary

    @property
    def dim(self) -> int | None:
        """Token lists have no width."""
        return None

    @property
    def model_id(self) -> str:
        """No weights: the scoring library."""
        return "bm25s"

    def options(self) -> dict[str, Any]:
        """Tokenizer settings (valid constructor arguments)."""
        return self.tokenizer.options()

    def for_index(self, built: Mapping[str, Any]) -> "BM25Encoder":
        """This encoder with the tokenizer an index's manifest records, if the settings given allow it.

        An index keeps the tokenizer it was built with (an older version's defaults, e.g. scheme
        "dse-1" and stopwords "en"; no `glossary` recorded: "none"): an encoder whose given
        settings (`chosen`) all equal the recorded ones takes the recorded ones for the rest.
        Otherwise (another encoder, or a setting given that differs) it is returned unchanged,
        and the caller's encoder check names the difference.

        Args:
            built: The index manifest's `encoder` entry.
        """
        recorded = dict(built.get("options") or {})
        if built.get("name") != self.name or recorded == self.options():
            return self
        unset = {"glossary": NONE}  # what a setting the manifest predates was
        if any(recorded.get(key, unset.get(key)) != value for key, value in self.chosen.items()):
            return self
        recorded.setdefault("glossary", NONE)  # built before glossaries: queries as pages
        try:
            adopted = BM25Encoder(**recorded)
        except (TypeError, ValueError):  # recorded by a newer dse: let the encoder check report it
            return self
        adopted.name, adopted.chosen = self.name, dict(self.chosen)
        return adopted

    def tokenize(self, text: str) -> list[str]:
        """Token list of one text."""
        return self.tokenizer.tokenize(text)

    def encode_queries(self, queries: Sequence[str]) -> list[list[str]]:
        """Token lists of the queries (with the glossary's expansions, `Tokenizer.tokenize_query`)."""
        return self.tokenizer.tokenize_all(queries, "queries", queries=True)

    def encode_pages(self, pages: Sequence[str]) -> list[list[str]]:
        """Token lists of the pages' texts (an empty text gives an empty list)."""
        return self.tokenizer.tokenize_all(pages, "pages")
