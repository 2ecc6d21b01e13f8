"""Turn sources (PDFs, office documents, images, web pages, folders) into `Page` records."""

from ingest.base import DEFAULT_DPI, RenderOptions
from ingest.digest import file_digest
from ingest.errors import (
    ConversionError,
    EncryptedSourceError,
    IngestError,
    LimitExceededError,
    MissingConverterError,
    MissingToolError,
    UnsupportedSourceError,
)
from ingest.limits import Limits
from ingest.ocr import OCR_MODES, OcrOptions
from ingest.office.render import OFFICE_EXTENSIONS
from ingest.page import Page, make_page_id
from ingest.parallel.many import SourcePages, render_many
from ingest.render import RENDERERS, SUPPORTED_EXTENSIONS, discover, render
from ingest.web.render import WEB_EXTENSIONS, WebOptions, WebRenderer, WebResult, iter_web, render_web
from ingest.web.safety import is_url

__all__ = [
    "DEFAULT_DPI",
    "OFFICE_EXTENSIONS",
    "RENDERERS",
    "SUPPORTED_EXTENSIONS",
    "WEB_EXTENSIONS",
    "ConversionError",
    "EncryptedSourceError",
    "IngestError",
    "LimitExceededError",
    "Limits",
    "MissingConverterError",
    "MissingToolError",
    "OCR_MODES",
    "OcrOptions",
    "Page",
    "RenderOptions",
    "SourcePages",
    "UnsupportedSourceError",
    "WebOptions",
    "WebRenderer",
    "WebResult",
    "discover",
    "file_digest",
    "is_url",
    "iter_web",
    "make_page_id",
    "render",
    "render_many",
    "render_web",
]
