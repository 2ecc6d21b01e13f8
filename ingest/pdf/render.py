"""PDF pages through poppler: `pdfinfo` probes, `pdftoppm` renders, `pdftotext` reads.

Pages come in chunks of `RenderOptions.chunk_pages`, so a long PDF never sits in memory whole.
Every poppler call runs under the file's limits (`ingest.pdf.poppler`); a page whose pixels at the
requested dpi would exceed the page budget is rendered at a lower dpi, and one that would exceed
it even at 1 dpi is refused before anything is rendered. An encrypted PDF is decrypted by qpdf
into a private file first, so its password never appears on a command line.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ingest.base import RenderOptions, SourceFile
from ingest.errors import EncryptedSourceError, IngestError, LimitExceededError
from ingest.limits import Clock, Limits
from ingest.ocr import OcrOptions
from ingest.page import Page, make_page_id
from ingest.pdf import poppler
from ingest.pdf.ocr_pages import RenderedPage, ocr_chunk
from ingest.pdf.poppler import PdfInfo, Size, probe_pdf  # where they live: the probe runs pdfinfo

logger = logging.getLogger(__name__)

PDF_EXTENSIONS = (".pdf",)
MAX_PAGE_PIXELS = 40_000_000
"""A page whose render at the requested dpi would exceed this (or `Limits.max_image_pixels`,
if lower) is rendered at a lower dpi instead."""

_require_tool = poppler.require_tool


def page_budget(limits: Limits) -> int:
    """Most pixels one rendered page may have: `MAX_PAGE_PIXELS` or the image limit if lower."""
    return min(MAX_PAGE_PIXELS, limits.max_image_pixels)


def page_dpi(size: Size | None, dpi: int, max_pixels: int | None = None) -> int:
    """Return `dpi`, lowered if needed so the page renders within `max_pixels` (default
    `MAX_PAGE_PIXELS`)."""
    budget = MAX_PAGE_PIXELS if max_pixels is None else max_pixels
    if size is None:
        return dpi
    pixels = (size[0] / 72 * dpi) * (size[1] / 72 * dpi)
    if pixels <= budget:
        return dpi
    return max(1, math.floor(dpi * math.sqrt(budget / pixels)))


def check_page_pixels(source: str, info: PdfInfo, budget: int) -> None:
    """Refuse a PDF with a page over `budget` pixels even at 1 dpi (before rendering any)."""
    for number in range(1, info.num_pages + 1):
        size = info.render_size(number)
        if size is not None and math.ceil(size[0] / 72) * math.ceil(size[1] / 72) > budget:
            raise LimitExceededError(
                source,
                f"page {number} is {size[0]:g} x {size[1]:g} pt, over the limit of {budget:,} "
                "pixels even at 1 dpi (raise it with --max-image-pixels)",
            )


@dataclass
class OpenedPdf:
    """A probed PDF: what poppler reads (the file, or its decrypted private copy) and its info."""

    file: SourceFile
    info: PdfInfo
    spent: float = 0.0  # seconds of the file's time used by the probe (and decryption)
    private_folder: str | None = None  # the decrypted copy's folder, deleted by close()

    def close(self) -> None:
        """Delete the decrypted copy, if there is one."""
        if self.private_folder is not None:
            shutil.rmtree(self.private_folder, ignore_errors=True)


def open_pdf(file: SourceFile, options: RenderOptions) -> OpenedPdf:
    """Probe a PDF (decrypting it first if it needs `options.password`) and check its limits.

    Raises:
        EncryptedSourceError: The PDF needs a (different) password.
        LimitExceededError: Too many pages, a page too large at any dpi, or out of time.
        IngestError: The file is not a readable PDF.
    """
    limits = options.limits
    clock = Clock(file.source, limits)
    target, folder = file, None
    try:
        info = probe_pdf(file, limits.max_pages, clock)
    except EncryptedSourceError:
        if options.password is None:
            raise
        path = poppler.decrypt(file.path.absolute(), options.password, clock, limits.max_file_bytes)
        target = SourceFile(path=path, source=file.source, digest=file.digest)
        folder = str(path.parent)
        try:
            info = probe_pdf(target, limits.max_pages, clock, password_given=True)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    opened = OpenedPdf(target, info, clock.spent, folder)
    try:
        check_page_pixels(file.source, info, page_budget(limits))
    except BaseException:
        opened.close()
        raise
    return opened


def _pdftotext(file: SourceFile, first: int, last: int, clock: Clock | None = None) -> str | None:
    """Run one `pdftotext -layout` call over pages first..last; None when poppler fails.

    Text past `poppler.MAX_TEXT_BYTES_PER_PAGE` a page is cut: a call over several pages then
    returns None (its pages are read one by one), a single page keeps its first part.
    """
    clock = clock or Clock(file.source)
    text, cut = poppler.pdftotext(file.path.absolute(), first, last, clock)
    if cut and first != last:
        return None
    if cut:
        logger.warning("%s: the text layer of page %d is over %s bytes; it is cut", file.source,
                       first, f"{poppler.MAX_TEXT_BYTES_PER_PAGE:,}")
    return text


def page_texts(file: SourceFile, first: int, last: int, clock: Clock | None = None) -> list[str]:
    """Return the text layer of pages first..last (one string per page, aligned).

    One `pdftotext` call per chunk, split on the form feed poppler writes after every page (empty
    pages included). If the split does not line up, each page is read on its own; a page whose text
    cannot be read gets "" and a logged warning (its image is still rendered). A call past its
    time limit fails the file (RenderTimeoutError).
    """
    clock = clock or Clock(file.source)
    count = last - first + 1
    output = _pdftotext(file, first, last, clock)
    if output is not None:
        parts = output.split("\f")
        if len(parts) == count + 1 and not parts[-1].strip():
            return [part.rstrip() for part in parts[:-1]]
    texts = []
    for number in range(first, last + 1):
        single = _pdftotext(file, number, number, clock)
        if single is None:
            logger.warning(
                "%s: pdftotext failed on page %d; its text layer is left empty", file.source, number
            )
            single = ""
        texts.append(single.replace("\f", "\n").rstrip())
    return texts


def render_run_files(
    file: SourceFile, first: int, last: int, dpi: int, clock: Clock | None = None,
    folder: str = "",
) -> list[str]:
    """Render pages first..last at one dpi with pdftoppm; their PPM files, left in `folder`.

    For another process to read: no image is decoded or copied here.

    Returns:
        The paths of the PPM files, one per page, in order.
    """
    clock = clock or Clock(file.source)
    return poppler.pdftoppm(file.path.absolute(), first, last, dpi, folder, clock,
                            page_budget(clock.limits))


def _render_run(
    file: SourceFile, first: int, last: int, dpi: int, clock: Clock | None = None
) -> list[Any]:
    """Render pages first..last at one dpi with pdftoppm; exactly one RGB image per page."""
    from PIL import Image

    folder = poppler.private_dir()
    try:
        images = []
        for path in render_run_files(file, first, last, dpi, clock, folder):
            try:
                with Image.open(path) as ppm:
                    images.append(ppm.convert("RGB"))  # (height, width, 3)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                raise IngestError(file.source, f"cannot render page {first + len(images)}: "
                                  f"{exc}") from exc
            os.unlink(path)
        return images
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _dpi_runs(
    info: PdfInfo, first: int, last: int, dpi: int, budget: int | None = None
) -> list[tuple[int, int, int]]:
    """Split pages first..last into runs `(first, last, dpi)` of consecutive pages sharing a dpi."""
    runs: list[tuple[int, int, int]] = []
    for number in range(first, last + 1):
        value = page_dpi(info.render_size(number), dpi, budget)
        if runs and runs[-1][2] == value:
            runs[-1] = (runs[-1][0], number, value)
        else:
            runs.append((number, number, value))
    return runs


def render_chunk(
    file: SourceFile,
    info: PdfInfo,
    first: int,
    last: int,
    dpi: int,
    clock: Clock,
    run: Callable[[SourceFile, int, int, int, Clock], list[Any]] | None = None,
    ocr: OcrOptions | None = None,
) -> list[RenderedPage]:
    """Render pages first..last: `(dpi, image, text, extra metadata)` per page, text first (cheap),
    then OCR of the pages `ocr` selects (`ingest.pdf.ocr_pages`), in order.

    `file` is what poppler reads (see `OpenedPdf`); `run` renders one run of pages sharing a dpi
    (default `_render_run`: RGB PIL images; a partial `render_run_files`: PPM files for another
    process). Every poppler call is on `clock`.
    """
    run = run or _render_run
    texts = page_texts(file, first, last, clock)
    rendered = []
    budget = page_budget(clock.limits)
    for run_first, run_last, value in _dpi_runs(info, first, last, dpi, budget):
        rendered += [(value, image) for image in run(file, run_first, run_last, value, clock)]
    pages = [(value, image, text) for (value, image), text in zip(rendered, texts)]
    return ocr_chunk(file, first, pages, ocr, clock, budget,
                     lambda number: page_dpi(info.render_size(number), ocr.dpi if ocr else dpi, budget))


def pdf_page(
    file: SourceFile, info: PdfInfo, number: int, dpi: int, image: Any, text: str,
    extra: Mapping[str, Any] | None = None,
) -> Page:
    """Build the Page record of page `number`, rendered at `dpi` (`extra`: what OCR records)."""
    size = info.sizes[number - 1]
    extra = dict(extra or {})
    seconds = float(extra.pop("ocr_seconds", 0.0))
    return Page(
        page_id=make_page_id(file.digest, number),
        source=file.source,
        page=number,
        image=image,
        text=text,
        source_digest=file.digest,
        metadata={
            "kind": "pdf",
            "file_name": file.path.name,
            "dpi": dpi,
            "width": image.width,
            "height": image.height,
            "num_pages": info.num_pages,
            "page_width_pt": size[0] if size else None,
            "page_height_pt": size[1] if size else None,
            **dict(info.fields),  # the document's title, subject, keywords (those set)
            **extra,
        },
        ocr_seconds=seconds,
    )


def chunk_ranges(num_pages: int, chunk_pages: int) -> list[tuple[int, int]]:
    """Split pages 1..num_pages into `(first, last)` chunks of at most `chunk_pages` pages."""
    return [
        (first, min(num_pages, first + chunk_pages - 1))
        for first in range(1, num_pages + 1, chunk_pages)
    ]


def _iter_pages(file: SourceFile, options: RenderOptions, opened: OpenedPdf) -> Iterator[Page]:
    """Yield the pages chunk by chunk, so at most one chunk of images is in memory."""
    clock = Clock(file.source, options.limits, opened.spent)
    try:
        for first, last in chunk_ranges(opened.info.num_pages, options.chunk_pages):
            chunk = render_chunk(opened.file, opened.info, first, last, options.dpi, clock, ocr=options.ocr)
            for offset, (dpi, image, text, extra) in enumerate(chunk):
                yield pdf_page(file, opened.info, first + offset, dpi, image, text, extra)
            del chunk
    finally:
        opened.close()


def render_pdf(file: SourceFile, options: RenderOptions) -> Iterator[Page]:
    """Probe a PDF now (so a broken or encrypted file fails before any page), then stream its pages.

    Args:
        file: The PDF.
        options: dpi, password, chunk size and limits (pages, pixels, time, memory).

    Returns:
        A lazy iterator over the PDF's pages, in order.

    Raises:
        EncryptedSourceError: The PDF needs a (different) password.
        LimitExceededError: The PDF is over a limit (pages, a page's size, time).
        IngestError: The file is not a readable PDF.
    """
    opened = open_pdf(file, options)
    pages = _iter_pages(file, options, opened)
    weakref.finalize(pages, opened.close)  # also when never iterated
    return pages
