"""Turn sources (PDFs, images, folders of them) into `Page` records ready to be embedded."""

from ingest.base import DEFAULT_DPI, RenderOptions
from ingest.digest import file_digest
from ingest.errors import (
    EncryptedSourceError,
    IngestError,
    MissingToolError,
    UnsupportedSourceError,
)
from ingest.page import Page, make_page_id
from ingest.render import RENDERERS, SUPPORTED_EXTENSIONS, discover, render

__all__ = [
    "DEFAULT_DPI",
    "RENDERERS",
    "SUPPORTED_EXTENSIONS",
    "EncryptedSourceError",
    "IngestError",
    "MissingToolError",
    "Page",
    "RenderOptions",
    "UnsupportedSourceError",
    "discover",
    "file_digest",
    "make_page_id",
    "render",
]
