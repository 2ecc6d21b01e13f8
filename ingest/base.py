"""What every source renderer receives: the file, its identity and the rendering options."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest.limits import Limits
from ingest.ocr import OcrOptions
from ingest.page import Page

DEFAULT_DPI = 144
"""Default rendering resolution for paged documents.

A US-letter page at 144 dpi is 1224 x 1584 pixels (1.9 Mpx), an A4 page 1191 x 1684. That is
above both encoders' pixel budgets (DSE / Qwen2-VL caps at 1024 * 28 * 28 = 0.8 Mpx, ColQwen2 at
about 768 visual tokens of 28 x 28 = 0.6 Mpx), so the processors only ever *downscale* a page
(sharper than upscaling a 72 dpi render, where 10 pt text is barely legible), while rendering cost
and memory stay modest (5.8 MB of RGB per page).
"""

DEFAULT_CHUNK_PAGES = 8
"""Pages rendered per poppler call: bounds memory on long PDFs, amortises process start-up."""


@dataclass(frozen=True)
class RenderOptions:
    """Options shared by all renderers.

    Attributes:
        dpi: Resolution for paged documents (ignored by images, which keep their pixels).
        password: User password for encrypted documents, or None.
        chunk_pages: How many pages a renderer may hold in memory at once.
        allow_private: Web pages may reach loopback, private and link-local addresses.
        limits: Per-source limits (pages, file size, image pixels, conversion time).
        ocr: Which pages are read by OCR (`ingest.ocr`; default "auto": those without a usable
            text layer, and images).
    """

    dpi: int = DEFAULT_DPI
    password: str | None = None
    chunk_pages: int = DEFAULT_CHUNK_PAGES
    allow_private: bool = False
    limits: Limits = Limits()
    ocr: OcrOptions = OcrOptions()


@dataclass(frozen=True)
class SourceFile:
    """A file about to be rendered.

    Attributes:
        path: Filesystem path of the file.
        source: The path as given by the user, normalised (stored in `Page.source`).
        digest: SHA-256 hex digest of the file's bytes.
    """

    path: Path
    source: str
    digest: str


Renderer = Callable[[SourceFile, RenderOptions], Iterator[Page]]
"""A renderer validates its file eagerly (raising `IngestError` before returning), then returns
a lazy iterator over the file's pages."""
