"""Image files as pages: PNG, JPEG, WebP, TIFF (every frame), BMP and GIF (first frame).

Every frame is checked against `Limits.max_image_pixels` before it is decoded, at its own size (a
TIFF's later pages, or a GIF frame larger than its canvas, can be far larger than the header
says), and decoding a file's frames counts against its `Limits.file_timeout`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from ingest.base import RenderOptions, SourceFile
from ingest.errors import IngestError
from ingest.limits import Clock, Stopwatch, check_image_pixels, check_page_count
from ingest.ocr import with_ocr
from ingest.page import Page, make_page_id

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif")
MULTI_PAGE_FORMATS = frozenset({"TIFF"})
"""Formats whose frames are pages (multi-page scans); other formats yield their first frame only."""

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError)
"""What Pillow raises on a malformed file (a TIFF frame without dimensions: TypeError; with an
unknown compression: KeyError); reported as what is wrong with the file, not as a crash."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Return an RGB copy of a frame: transparency onto white, 16-bit and float scaled to 8-bit."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        low, high = image.convert("F").getextrema()
        scale = 255.0 / (high - low) if high > low else 1.0
        image = image.convert("F").point(lambda value: (value - low) * scale).convert("L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _malformed(file: SourceFile, what: str, exc: BaseException) -> IngestError:
    """The IngestError for a malformed image, saying what Pillow found wrong."""
    return IngestError(file.source, f"{what}: the file is malformed ({type(exc).__name__}: {exc})")


def _frame_count(file: SourceFile, image: Image.Image) -> int:
    """Frames that are pages: all of a TIFF's (reading every frame's header), else one."""
    if image.format not in MULTI_PAGE_FORMATS:
        return 1
    try:
        return int(getattr(image, "n_frames", 1))
    except _DECODE_ERRORS as exc:
        raise _malformed(file, "cannot read the image's frames", exc) from None


def _file_dpi(image: Image.Image) -> float | None:
    """Return the resolution stored in the file, if any."""
    dpi = image.info.get("dpi")
    if isinstance(dpi, tuple) and dpi and dpi[0]:
        return round(float(dpi[0]), 2)
    return None


def _frame(file: SourceFile, image: Image.Image, index: int, max_pixels: int) -> Image.Image:
    """Decode frame `index` as an upright RGB image, or raise IngestError.

    The frame's own size is checked against `max_pixels` after seeking to it (which reads its
    header) and before decoding it.
    """
    try:
        image.seek(index)
        what = "image" if index == 0 else f"frame {index + 1} of the image"
        check_image_pixels(file.source, image.width, image.height, max_pixels, what)
        image.load()
        return to_rgb(ImageOps.exif_transpose(image) or image)
    except Image.DecompressionBombError as exc:
        raise IngestError(
            file.source, f"image too large for Pillow's decompression-bomb guard: {exc}"
        ) from exc
    except _DECODE_ERRORS as exc:
        raise _malformed(file, f"cannot decode image frame {index + 1}", exc) from None


def _page(
    file: SourceFile, image: Image.Image, rgb: Image.Image, number: int, num_pages: int
) -> Page:
    """Build the Page record of one frame."""
    metadata: dict[str, Any] = {
        "kind": "image",
        "file_name": file.path.name,
        "format": image.format,
        "dpi": _file_dpi(image),
        "width": rgb.width,
        "height": rgb.height,
        "num_pages": num_pages,
    }
    return Page(
        page_id=make_page_id(file.digest, number),
        source=file.source,
        page=number,
        image=rgb,
        text="",
        source_digest=file.digest,
        metadata=metadata,
    )


def _iter_frames(
    file: SourceFile, image: Image.Image, first: Image.Image, num_pages: int,
    options: RenderOptions, clock: Clock,
) -> Iterator[Page]:
    """Yield the already decoded first frame, then decode the others one at a time.

    Only the decoding counts against the file's time (not the consumer's between pages).
    """
    max_pixels, memory = options.limits.max_image_pixels, options.limits.max_memory_bytes
    try:
        yield with_ocr(_page(file, image, first, 1, num_pages), options.ocr, memory)
        for index in range(1, num_pages):
            watch = Stopwatch(clock)
            frame = _frame(file, image, index, max_pixels)
            watch.lap()
            yield with_ocr(_page(file, image, frame, index + 1, num_pages), options.ocr, memory)
    finally:
        image.close()


def render_image(file: SourceFile, options: RenderOptions) -> Iterator[Page]:
    """Open and decode an image now (so a broken file fails before any page), then yield its pages.

    An image (each frame of it) over `options.limits.max_image_pixels` (default: Pillow's
    `Image.MAX_IMAGE_PIXELS`), or a TIFF with more frames than `options.limits.max_pages`, is
    refused with a LimitExceededError before that frame is decoded; Pillow's decompression-bomb
    guard stays on too (over `Image.MAX_IMAGE_PIXELS * 2` pixels). Decoding past
    `options.limits.file_timeout` fails the file between frames. `options.dpi` does not apply
    (images keep their pixels). `options.ocr` (default "auto") reads each frame's text with
    tesseract (`ingest.ocr`; its time is not charged to `file_timeout`).

    Args:
        file: The image file.
        options: Only `limits` and `ocr` apply to images.

    Returns:
        A lazy iterator over the image's pages (one, or one per frame for multi-page TIFF).

    Raises:
        IngestError: The file is not a readable image or is too large.
    """
    watch = Stopwatch(Clock(file.source, options.limits))
    try:
        image = Image.open(file.path)
    except Image.DecompressionBombError as exc:
        raise IngestError(
            file.source, f"image too large for Pillow's decompression-bomb guard: {exc}"
        ) from exc
    except UnidentifiedImageError as exc:
        raise IngestError(
            file.source, "not a readable image (Pillow cannot identify its format)"
        ) from exc
    except _DECODE_ERRORS as exc:
        raise IngestError(file.source, f"cannot open image: {exc}") from exc
    try:
        max_pixels = options.limits.max_image_pixels
        check_image_pixels(file.source, image.width, image.height, max_pixels)
        frames = _frame_count(file, image)
        check_page_count(file.source, frames, options.limits.max_pages)
        first = _frame(file, image, 0, max_pixels)
        watch.lap()
    except BaseException:
        image.close()
        raise
    return _iter_frames(file, image, first, frames, options, watch.clock)
