"""PDF pages through poppler: `pdfinfo` probes, `pdftoppm` (pdf2image) renders, `pdftotext` reads.

Pages come in chunks of `RenderOptions.chunk_pages`, so a long PDF never sits in memory whole.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from ingest.base import RenderOptions, SourceFile
from ingest.errors import EncryptedSourceError, IngestError, MissingToolError
from ingest.limits import check_page_count
from ingest.page import Page, make_page_id

logger = logging.getLogger(__name__)

PDF_EXTENSIONS = (".pdf",)
MAX_PAGE_PIXELS = 40_000_000
"""A page whose render at the requested dpi would exceed this is rendered at a lower dpi instead."""
TIMEOUT_SECONDS = 600
"""Longest a single poppler call (one chunk) may run before the source is declared broken."""

_PAGE_SIZE = re.compile(r"^Page\s+(\d+)\s+size$")
_SIZE_VALUE = re.compile(r"^([\d.]+)\s*x\s*([\d.]+)")


@dataclass(frozen=True)
class PdfInfo:
    """What `pdfinfo` says about a PDF.

    Attributes:
        num_pages: Number of pages (at least 1).
        sizes: Page sizes in points, `(width, height)` per page, or None when pdfinfo gave none.
    """

    num_pages: int
    sizes: tuple[tuple[float, float] | None, ...]


@cache
def _require_tool(name: str) -> str:
    """Return the path of a poppler program, or raise MissingToolError."""
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(
            f"'{name}' was not found: install poppler-utils (e.g. `apt-get install poppler-utils`)"
        )
    return path


def _poppler_error(source: str, message: str, password: str | None) -> IngestError:
    """Turn poppler's stderr into an IngestError that names the source and says why."""
    if "Incorrect password" in message:
        if password is None:
            return EncryptedSourceError(
                source, "PDF is encrypted: pass its password (password=...)"
            )
        return EncryptedSourceError(source, "PDF is encrypted and the given password is wrong")
    if "Invalid page count 0" in message:
        return IngestError(source, "PDF has no pages")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Unable to get page count")]
    detail = "; ".join(dict.fromkeys(lines)) or "no output"
    return IngestError(source, f"not a readable PDF (poppler: {detail[:300]})")


def probe_pdf(file: SourceFile, password: str | None, max_pages: int | None = None) -> PdfInfo:
    """Read the page count and page sizes with one `pdfinfo` call.

    Raises:
        EncryptedSourceError: The PDF needs a (different) password.
        LimitExceededError: The PDF has more than `max_pages` pages.
        IngestError: The file is not a readable PDF or has no pages.
    """
    from pdf2image import pdfinfo_from_path
    from pdf2image.exceptions import PDFPageCountError, PDFPopplerTimeoutError

    _require_tool("pdfinfo")
    try:
        info = pdfinfo_from_path(
            os.path.abspath(file.path),
            userpw=password,
            first_page=1,
            last_page=10**7,
            timeout=TIMEOUT_SECONDS,
        )
    except PDFPageCountError as exc:
        raise _poppler_error(file.source, str(exc), password) from exc
    except PDFPopplerTimeoutError as exc:
        raise IngestError(file.source, f"pdfinfo timed out after {TIMEOUT_SECONDS} s") from exc
    num_pages = int(info["Pages"])
    if num_pages < 1:
        raise IngestError(file.source, "PDF has no pages")
    if max_pages is not None:
        check_page_count(file.source, num_pages, max_pages)
    sizes: list[tuple[float, float] | None] = [None] * num_pages
    for key, value in info.items():
        key_match, value_match = _PAGE_SIZE.match(key), _SIZE_VALUE.match(str(value))
        if key_match and value_match and 1 <= int(key_match.group(1)) <= num_pages:
            sizes[int(key_match.group(1)) - 1] = (
                float(value_match.group(1)),
                float(value_match.group(2)),
            )
    return PdfInfo(num_pages=num_pages, sizes=tuple(sizes))


def page_dpi(size: tuple[float, float] | None, dpi: int) -> int:
    """Return `dpi`, lowered if needed so the page renders within `MAX_PAGE_PIXELS`."""
    if size is None:
        return dpi
    pixels = (size[0] / 72 * dpi) * (size[1] / 72 * dpi)
    if pixels <= MAX_PAGE_PIXELS:
        return dpi
    return max(1, math.floor(dpi * math.sqrt(MAX_PAGE_PIXELS / pixels)))


def _pdftotext(file: SourceFile, first: int, last: int, password: str | None) -> str | None:
    """Run one `pdftotext -layout` call over pages first..last; None when poppler fails."""
    args = [
        _require_tool("pdftotext"),
        "-f",
        str(first),
        "-l",
        str(last),
        "-layout",
        "-enc",
        "UTF-8",
    ]
    if password is not None:
        args += ["-upw", password]
    args += [os.path.abspath(file.path), "-"]
    try:
        done = subprocess.run(args, capture_output=True, timeout=TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", errors="replace")


def page_texts(file: SourceFile, first: int, last: int, password: str | None) -> list[str]:
    """Return the text layer of pages first..last (one string per page, aligned).

    One `pdftotext` call per chunk, split on the form feed poppler writes after every page (empty
    pages included). If the split does not line up, each page is read on its own; a page whose text
    cannot be read gets "" and a logged warning (its image is still rendered).
    """
    count = last - first + 1
    output = _pdftotext(file, first, last, password)
    if output is not None:
        parts = output.split("\f")
        if len(parts) == count + 1 and not parts[-1].strip():
            return [part.rstrip() for part in parts[:-1]]
    texts = []
    for number in range(first, last + 1):
        single = _pdftotext(file, number, number, password)
        if single is None:
            logger.warning(
                "%s: pdftotext failed on page %d; its text layer is left empty", file.source, number
            )
            single = ""
        texts.append(single.replace("\f", "\n").rstrip())
    return texts


def _render_run(file: SourceFile, first: int, last: int, dpi: int, password: str | None) -> list:
    """Render pages first..last at one dpi with pdftoppm; exactly one RGB image per page."""
    from pdf2image import convert_from_path
    from pdf2image.exceptions import PDFPageCountError, PDFPopplerTimeoutError
    from PIL import Image

    _require_tool("pdftoppm")
    where = f"page {first}" if first == last else f"pages {first}-{last}"
    try:
        images = convert_from_path(
            os.path.abspath(file.path),
            dpi=dpi,
            first_page=first,
            last_page=last,
            userpw=password,
            thread_count=1,
            timeout=TIMEOUT_SECONDS,
        )
    except PDFPageCountError as exc:
        raise _poppler_error(file.source, str(exc), password) from exc
    except PDFPopplerTimeoutError as exc:
        raise IngestError(file.source, f"poppler timed out rendering {where}") from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise IngestError(file.source, f"cannot render {where}: {exc}") from exc
    if len(images) != last - first + 1:
        raise IngestError(file.source, f"poppler rendered {len(images)} image(s) for {where}")
    return [image if image.mode == "RGB" else image.convert("RGB") for image in images]


def _dpi_runs(info: PdfInfo, first: int, last: int, dpi: int) -> list[tuple[int, int, int]]:
    """Split pages first..last into runs `(first, last, dpi)` of consecutive pages sharing a dpi."""
    runs: list[tuple[int, int, int]] = []
    for number in range(first, last + 1):
        value = page_dpi(info.sizes[number - 1], dpi)
        if runs and runs[-1][2] == value:
            runs[-1] = (runs[-1][0], number, value)
        else:
            runs.append((number, number, value))
    return runs


def render_run_files(
    file: SourceFile, first: int, last: int, dpi: int, password: str | None, folder: str
) -> list[str]:
    """Like `_render_run` (same pdftoppm pixels), but the PPM files are left in `folder`.

    For another process to read: no image is decoded or copied here.

    Returns:
        The paths of the PPM files, one per page, in order.
    """
    import uuid

    root = os.path.join(folder, uuid.uuid4().hex)
    args = [_require_tool("pdftoppm"), "-r", str(dpi), "-f", str(first), "-l", str(last)]
    if password is not None:
        args += ["-upw", password]
    where = f"page {first}" if first == last else f"pages {first}-{last}"
    try:
        done = subprocess.run(
            [*args, os.path.abspath(file.path), root],
            capture_output=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise IngestError(file.source, f"poppler timed out rendering {where}") from exc
    finally:
        prefix = os.path.basename(root) + "-"
        paths = sorted(
            os.path.join(folder, name) for name in os.listdir(folder) if name.startswith(prefix)
        )
    if done.returncode != 0 or len(paths) != last - first + 1:
        for path in paths:
            os.unlink(path)
        if done.returncode != 0:
            raise _poppler_error(file.source, done.stderr.decode("utf-8", "replace"), password)
        raise IngestError(file.source, f"poppler rendered {len(paths)} image(s) for {where}")
    return paths


def render_chunk(
    file: SourceFile,
    options: RenderOptions,
    info: PdfInfo,
    first: int,
    last: int,
    run: Callable[[SourceFile, int, int, int, str | None], list[Any]] | None = None,
) -> list[tuple[int, Any, str]]:
    """Render pages first..last: `(dpi, image, text)` per page, text first (cheap), in order.

    `run` renders one run of pages sharing a dpi (default `_render_run`: RGB PIL images; a
    partial `render_run_files`: PPM files for another process).
    """
    run = run or _render_run
    texts = page_texts(file, first, last, options.password)
    rendered = []
    for run_first, run_last, dpi in _dpi_runs(info, first, last, options.dpi):
        rendered += [
            (dpi, image) for image in run(file, run_first, run_last, dpi, options.password)
        ]
    return [(dpi, image, text) for (dpi, image), text in zip(rendered, texts)]


def pdf_page(file: SourceFile, info: PdfInfo, number: int, dpi: int, image: Any, text: str) -> Page:
    """Build the Page record of page `number`, rendered at `dpi`."""
    size = info.sizes[number - 1]
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
        },
    )


def chunk_ranges(num_pages: int, chunk_pages: int) -> list[tuple[int, int]]:
    """Split pages 1..num_pages into `(first, last)` chunks of at most `chunk_pages` pages."""
    return [
        (first, min(num_pages, first + chunk_pages - 1))
        for first in range(1, num_pages + 1, chunk_pages)
    ]


def _iter_pages(file: SourceFile, options: RenderOptions, info: PdfInfo) -> Iterator[Page]:
    """Yield the pages chunk by chunk, so at most one chunk of images is in memory."""
    for first, last in chunk_ranges(info.num_pages, options.chunk_pages):
        chunk = render_chunk(file, options, info, first, last)
        for offset, (dpi, image, text) in enumerate(chunk):
            yield pdf_page(file, info, first + offset, dpi, image, text)
        del chunk


def render_pdf(file: SourceFile, options: RenderOptions) -> Iterator[Page]:
    """Probe a PDF now (so a broken or encrypted file fails before any page), then stream its pages.

    Args:
        file: The PDF.
        options: dpi, password, chunk size and limits (`limits.max_pages`).

    Returns:
        A lazy iterator over the PDF's pages, in order.

    Raises:
        EncryptedSourceError: The PDF needs a (different) password.
        LimitExceededError: The PDF has more pages than `options.limits.max_pages`.
        IngestError: The file is not a readable PDF.
    """
    info = probe_pdf(file, options.password, options.limits.max_pages)
    return _iter_pages(file, options, info)
