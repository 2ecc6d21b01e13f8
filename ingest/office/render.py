"""Office documents (Word, PowerPoint, Excel, OpenDocument, RTF) as pages, through LibreOffice.

Each document is converted to PDF (`ingest.office.convert`), then rendered by the PDF renderer:
one page per printed page or slide, with the PDF's text layer. `Page.source` and the page ids
stay those of the office file; the converted PDF is deleted once its pages are read.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from ingest.base import RenderOptions, SourceFile
from ingest.office.convert import convert_to_pdf
from ingest.page import Page
from ingest.pdf.render import render_pdf

OFFICE_EXTENSIONS = (
    ".docx", ".pptx", ".xlsx", ".odt", ".odp", ".ods", ".doc", ".ppt", ".xls", ".rtf",
)


def _office_pages(file: SourceFile, pages: Iterator[Page], folder: str) -> Iterator[Page]:
    """The converted PDF's pages as the office file's, then the temporary folder deleted."""
    extension = file.path.suffix.lower()
    try:
        for page in pages:
            facts = {"kind": "office", "format": extension[1:], "file_name": file.path.name}
            yield replace(page, metadata={**page.metadata, **facts})
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def render_office(file: SourceFile, options: RenderOptions) -> Iterator[Page]:
    """Convert an office document now (so a bad file fails before any page), then stream its pages.

    Args:
        file: The office document (DOCX, PPTX, XLSX, ODT, ODP, ODS, DOC, PPT, XLS or RTF).
        options: dpi, chunk size and limits (`limits.convert_timeout`, `limits.max_pages`);
            `password` does not apply (LibreOffice cannot open protected documents headless).

    Returns:
        A lazy iterator over the pages (printed pages or slides), in order.

    Raises:
        MissingConverterError: LibreOffice is not installed.
        ConversionError: The document cannot be converted in time.
        IngestError: The converted PDF cannot be rendered or is over a limit.
    """
    folder = tempfile.mkdtemp(prefix="dse-office-")
    try:
        pdf = convert_to_pdf(file, Path(folder), options.limits.convert_timeout, options.limits)
        converted = SourceFile(path=pdf, source=file.source, digest=file.digest)
        pages = render_pdf(converted, replace(options, password=None))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    iterator = _office_pages(file, pages, folder)
    weakref.finalize(iterator, shutil.rmtree, folder, True)  # also when never iterated
    return iterator
