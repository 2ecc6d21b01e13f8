"""BM25 "encoder": turns page text layers and queries into stemmed token lists (no model weights)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Sequence

from dse.encoders.base import Encoder
from dse.encoders.registry import register_encoder
from dse.text.tokenizer import SCHEMES, Tokenizer
from dse.types import VectorKind


@register_encoder("bm25", "BM25 over the pages' text layer (no model weights)")
class BM25Encoder(Encoder):
    """Deterministic tokenizer for BM25, the same pipeline for queries and pages (`dse.text.tokenizer.Tokenizer`).

    Args:
        language: Language code, one of `dse.text.tokenizer.LANGUAGES` (sets the default stemmer and stopwords).
        stemmer: PyStemmer algorithm name, or "none" to keep words unstemmed.
        stopwords: Language code of the stopword list, or "none" to keep every word.
        model: Only "bm25s" (accepted so that `describe()["model"]` round-trips; there are no weights).
        scheme: Text normalisation before the words are taken (`SCHEMES`); recorded in each
            index, so an index built with "bm25s" keeps it.
    """

    kind: ClassVar[VectorKind] = "text"
    input: ClassVar[Literal["image", "text"]] = "text"

    def __init__(
        self, language: str = "en", stemmer: str | None = None, stopwords: str | None = None, model: str = "bm25s",
        scheme: str = SCHEMES[0],
    ) -> None:
        if model != "bm25s":
            raise ValueError(f"the bm25 encoder has no model weights; model must be 'bm25s', got {model!r}")
        self.tokenizer = Tokenizer(language, stemmer, stopwords, scheme)
        self.language = self.tokenizer.language
        self.stemmer_name = self.tokenizer.stemmer_name
        self.stopwords_name = self.tokenizer.stopwords_name
        self.scheme = self.tokenizer.scheme

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

    def tokenize(self, text: str) -> list[str]:
        """Token list of one text."""
        return self.tokenizer.tokenize(text)

    def encode_queries(self, queries: Sequence[str]) -> list[list[str]]:
        """Token lists of the queries."""
        return self.tokenizer.tokenize_all(queries, "queries")

    def encode_pages(self, pages: Sequence[str]) -> list[list[str]]:
        """Token lists of the pages' texts (an empty text gives an empty list)."""
        return self.tokenizer.tokenize_all(pages, "pages")
