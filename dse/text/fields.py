"""The text BM25 indexes for a page: its text layer, and its document's fields.

People name the document they mean ("Amazon's FY2017 10-K", "the Netflix annual report"), and
a file's name or its title often says what it is (`AMAZON_2017_10K.pdf`). Two versions of the
fields exist, recorded in each index's manifest (`store.text_fields`), so an index keeps the
behaviour it was built with:

* version 1 (`{"source_name": N}`, or no record: N = 0): the page's text followed by its
  source's name N times (`bm25_text`).
* version 2 (`{"version": 2}`, new indexes): the page's tokens, then two kinds of field tokens
  the tokenizer can never produce (they hold a ":"): `d:<key>` on every page, naming its
  document (its source's digest), and on the document's first page `t:<token>` for each token
  of its title field (`document_title`: the file's name or URL, and the title, subject and
  keywords the PDF or web page records). The BM25 engine scores documents from them
  (`dse.engines.bm25.documents`) and ranks a document's pages with its score.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, Callable, Mapping

SOURCE_NAME_WEIGHT = 1
"""Version 1's weight of the source's name (indexes built before version 2 record it)."""
FIELDS_VERSION = 2
"""The version new indexes record."""
DOC_KEY = "d:"
TITLE = "t:"
TITLE_METADATA = ("title", "subject", "keywords")
"""Page metadata keys whose text joins the document's title field (ingest sets them)."""
DOCUMENT_WEIGHT = 1.0
"""New indexes' weight of the document score in a page's score (`BM25Engine(documents=...)`)."""


def source_name(source: str) -> str:
    """The words of a source's name: a file's name without its extension, or a URL without its scheme."""
    if source.startswith(("http://", "https://")):
        return source.split("://", 1)[1]
    return PurePath(source).stem


def bm25_text(text: str, source: str, weight: int) -> str:
    """Version 1: a page's text for BM25: its text layer, then its source's name `weight` times."""
    if weight <= 0:
        return text
    return text + ("\n" + source_name(source)) * weight


def source_name_weight(store: Mapping[str, Any]) -> int:
    """The weight an index's manifest `store` records (0 when it predates the field, or with version 2)."""
    fields = store.get("text_fields") or {}
    return int(fields.get("source_name", 0))


def fields_version(store: Mapping[str, Any]) -> int:
    """The text-field version an index's manifest `store` records (1 when it records none)."""
    fields = store.get("text_fields") or {}
    return int(fields.get("version", 1))


def new_fields_record() -> dict[str, Any]:
    """What a new index records as `store.text_fields`."""
    return {"version": FIELDS_VERSION}


def document_title(source: str, metadata: Mapping[str, Any]) -> str:
    """The text of a document's title field: its source's name, then the title metadata that is set."""
    parts = [source_name(source)]
    parts += [str(metadata[key]) for key in TITLE_METADATA if isinstance(metadata.get(key), str) and metadata[key]]
    return "\n".join(parts)


def field_tokens(tokenize: Callable[[str], list[str]], key: str, title: str | None) -> list[str]:
    """Version 2's field tokens of one page: `d:<key>`, then `t:<token>` of `title` (first pages only).

    Args:
        tokenize: The index's tokenizer (`Tokenizer.tokenize`).
        key: The document's key (its source's digest).
        title: The document's title field (`document_title`) on its first page, None on the others.
    """
    out = [DOC_KEY + key]
    if title is not None:
        out += [TITLE + token for token in tokenize(title)]
    return out


def document_key(digest: str, metadata: Mapping[str, Any]) -> str:
    """A page's document: the one its metadata names (`document`, e.g. a dataset's page), else its source's digest."""
    named = metadata.get("document")
    return named if isinstance(named, str) and named else digest


def text_and_fields(
    text: str, source: str, digest: str, page: int, metadata: Mapping[str, Any], fields: Mapping[str, Any],
    tokenize: Callable[[str], list[str]],
) -> tuple[str, list[str]]:
    """(text to tokenize, field tokens to append) of one page, as the index's text-field record `fields` says.

    Version 1: the text with the source's name appended, no field tokens. Version 2: the text
    layer, and `field_tokens` (the title field on the source's first page, unless the metadata
    names another document).
    """
    store = {"text_fields": fields}
    if fields_version(store) < 2:
        return bm25_text(text, source, source_name_weight(store)), []
    own = document_key(digest, metadata) == digest
    title = document_title(source, metadata) if page == 1 and own else None
    return text, field_tokens(tokenize, document_key(digest, metadata), title)
