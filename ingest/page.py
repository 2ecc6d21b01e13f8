"""The `Page` record: one rendered page (or image) ready to be embedded."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from PIL import Image


PAGE_ID_RE = re.compile(r"^[0-9a-f]{16}-p[0-9]{5,}$")  # what make_page_id returns, and nothing else


def is_page_id(text: object) -> bool:
    """True if `text` has the page-id format (so it can name a file without being a path)."""
    return isinstance(text, str) and PAGE_ID_RE.fullmatch(text) is not None


def make_page_id(source_digest: str, page: int) -> str:
    """Build the stable id of a page from its source's content digest and page number.

    The id depends only on the bytes of the source and the page number, so it is the same
    wherever the file lives and however often it is rendered.
    """
    return f"{source_digest[:16]}-p{page:05d}"


@dataclass(frozen=True)
class Page:
    """One page of a source, rendered to an image.

    Attributes:
        page_id: Stable id (`make_page_id` of the source digest and the page number).
        source: Path of the source file as given by the user (normalised).
        page: 1-based page number within the source (1 for single images).
        image: The rendered page, RGB.
        text: The page's text layer (poppler's `pdftotext`), or the text OCR read from its image
            (`ingest.ocr`: then `metadata["text_source"] == "ocr"`); empty if it has neither.
        source_digest: SHA-256 hex digest of the source file's bytes.
        metadata: Extra facts (kind, dpi, width, height, num_pages, ...; `text_source`,
            `ocr_dpi`, `ocr_language` or `ocr_error` when OCR ran: `ingest.ocr`).
        ocr_seconds: Time tesseract spent on the page (0: not read by OCR); not compared.
    """

    page_id: str
    source: str
    page: int
    image: Image.Image = field(repr=False, compare=False)
    text: str = field(default="", repr=False)
    source_digest: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    ocr_seconds: float = field(default=0.0, repr=False, compare=False)
