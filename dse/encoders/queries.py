"""Queries that are a picture, or a picture with text, for the unified-retrieval encoders.

`encode_queries` of an encoder whose class sets `image_queries = True` (dse-qwen2, gme-qwen2,
qwen3-vl-embedding) takes, per query, a string, a PIL image, or an `(image, text)` pair; the
others take strings only. Each encoder turns the parts into its model card's recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

IMAGE_QUERY_ENCODERS = ("dse-qwen2", "gme-qwen2", "qwen3-vl-embedding")
"""Registry names of the encoders that take image and mixed queries."""


@dataclass(frozen=True)
class QueryParts:
    """One query split into its parts: a PIL image, a text, or both (never neither)."""

    image: Any | None
    text: str | None

    @property
    def kind(self) -> str:
        """"text", "image" or "mixed"."""
        if self.image is None:
            return "text"
        return "image" if self.text is None else "mixed"


def query_parts(query: Any) -> QueryParts:
    """Split a query: `str`, a PIL image, or an `(image, text)` pair.

    Raises:
        TypeError: Anything else (the message says what a query may be).
    """
    from PIL import Image

    if isinstance(query, str):
        return QueryParts(None, query)
    if isinstance(query, Image.Image):
        return QueryParts(query, None)
    if isinstance(query, tuple) and len(query) == 2 and isinstance(query[0], Image.Image) and isinstance(query[1], str):
        return QueryParts(query[0], query[1])
    raise TypeError(
        f"a query is a str, a PIL image or an (image, text) pair, got {type(query).__name__}: {query!r:.80}"
    )


def all_parts(queries: Sequence[Any]) -> list[QueryParts]:
    """`query_parts` of each query; a bad one is named by its position."""
    out = []
    for i, query in enumerate(queries):
        try:
            out.append(query_parts(query))
        except TypeError as exc:
            raise TypeError(f"queries[{i}]: {exc}") from None
    return out


def is_text_query(query: Any) -> bool:
    """True for a plain string query."""
    return isinstance(query, str)


def check_image_queries(encoder: Any, queries: Sequence[Any]) -> None:
    """Raise a clear TypeError if `queries` holds pictures and `encoder` takes text queries only."""
    if all(isinstance(q, str) for q in queries) or getattr(encoder, "image_queries", False):
        return
    name = getattr(encoder, "name", "") or type(encoder).__name__
    raise TypeError(
        f"encoder {name!r} takes text queries only; image and (image, text) queries need one of "
        f"{', '.join(IMAGE_QUERY_ENCODERS)}"
    )
