"""The text BM25 indexes for a page: its text layer, and its source's name as a field.

People name the document they mean ("Amazon's FY2017 10-K", "the Netflix annual report"), and
a file's name often says what it is (`AMAZON_2017_10K.pdf`). Each page's BM25 text is its text
layer followed by its source's name `weight` times (an equivalent of BM25F's field weight on a
one-line field). New indexes record the weight (`store.text_fields.source_name`, default 1);
an index recorded without it was built with none (0), and keeps it.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, Mapping

SOURCE_NAME_WEIGHT = 1


def source_name(source: str) -> str:
    """The words of a source's name: a file's name without its extension, or a URL without its scheme."""
    if source.startswith(("http://", "https://")):
        return source.split("://", 1)[1]
    return PurePath(source).stem


def bm25_text(text: str, source: str, weight: int) -> str:
    """A page's text for BM25: its text layer, then its source's name `weight` times."""
    if weight <= 0:
        return text
    return text + ("\n" + source_name(source)) * weight


def source_name_weight(store: Mapping[str, Any]) -> int:
    """The weight an index's manifest `store` records (0 when it predates the field)."""
    fields = store.get("text_fields") or {}
    return int(fields.get("source_name", 0))
