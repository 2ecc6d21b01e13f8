"""OCR of a chunk of PDF pages: the pages `OcrOptions` selects, read from an image good enough.

A page rendered at `ingest.ocr.REUSE_DPI` or more is read from that render (a PIL image, or a
worker's PPM file); one rendered lower (the default 144 dpi) is rendered again on its own, in
gray, at `OcrOptions.dpi` (lowered, like any render, to fit the page budget), into a private
folder that is deleted after. That render is a poppler call on the file's clock; tesseract's time
is not (`ingest.ocr`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

from ingest.base import SourceFile
from ingest.errors import IngestError
from ingest.limits import Clock
from ingest.ocr import REUSE_DPI, OcrOptions, OcrResult, merge, ocr_file, ocr_image, wants_ocr
from ingest.pdf import poppler

RenderedPage = tuple[int, Any, str, dict[str, Any]]
"""(dpi, image or PPM path, text, metadata the OCR step adds) of one page; the metadata's
"ocr_seconds" is the page's `Page.ocr_seconds`."""


def ocr_chunk(
    file: SourceFile, first: int, pages: list[tuple[int, Any, str]], options: OcrOptions | None,
    clock: Clock, budget: int, ocr_dpi: Callable[[int], int],
) -> list[RenderedPage]:
    """Pages first.. of a chunk after OCR: `(dpi, image, text, extra metadata)` each, in order.

    Args:
        file: What poppler reads.
        first: Number of the chunk's first page.
        pages: `(dpi, image, text)` per page, as rendered.
        options: OCR options (None: no OCR).
        clock: The file's clock (charged for renders at the OCR resolution).
        budget: Most pixels a page may be rendered at.
        ocr_dpi: The resolution page `number` is rendered at for OCR (`OcrOptions.dpi`, lowered to
            fit the budget).
    """
    out: list[RenderedPage] = []
    for number, (dpi, image, text) in enumerate(pages, start=first):
        if options is None or not wants_ocr(text, options):
            out.append((dpi, image, text, {}))
            continue
        if dpi >= REUSE_DPI:
            memory = clock.limits.max_memory_bytes
            result = (ocr_file(image, options, memory, dpi) if isinstance(image, str)
                      else ocr_image(image, options, memory, dpi))
        else:
            result = _ocr_rendered(file, number, ocr_dpi(number), options, clock, budget)
        merged, extra = merge(text, result, options)
        extra["ocr_seconds"] = result.seconds  # `Page.ocr_seconds`, taken out by `pdf_page`
        out.append((dpi, image, merged, extra))
    return out


def _ocr_rendered(
    file: SourceFile, number: int, dpi: int, options: OcrOptions, clock: Clock, budget: int
) -> OcrResult:
    """Render page `number` in gray at `dpi` and read it."""
    folder = poppler.private_dir()
    try:
        try:
            paths = poppler.pdftoppm(file.path.absolute(), number, number, dpi, folder, clock, budget, gray=True)
        except IngestError as exc:
            return OcrResult("", 0.0, dpi, f"the page could not be rendered for OCR: {exc.reason}")
        return ocr_file(paths[0], options, clock.limits.max_memory_bytes, dpi)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
