"""Resource limits on one source: pages, file size, image pixels, conversion time.

A source over a limit fails with `LimitExceededError` (an `IngestError` naming the file, the
limit and how to raise it); the rest of a batch goes on. Set them with `ingest.render(...,
limits=Limits(...))`, `Retriever.add(..., limits=...)`, `dse index --max-pages ...` or the
`ingest:` section of a config (`Limits.from_config`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from ingest.errors import LimitExceededError

DEFAULT_MAX_PAGES = 5000
DEFAULT_MAX_FILE_MB = 500
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
"""Pillow's own default `PIL.Image.MAX_IMAGE_PIXELS` (a 1024 x 1024 x 1024 / 4 / 3 RGB image).

Pillow's decompression-bomb guard stays on as well: it refuses images over twice its
`Image.MAX_IMAGE_PIXELS`, whatever this limit says."""
DEFAULT_CONVERT_TIMEOUT = 300.0
"""Seconds LibreOffice may spend converting one office document to PDF."""

CONFIG_KEYS = ("max_pages", "max_file_mb", "max_image_pixels", "convert_timeout")
"""Keys of the `ingest:` config section (and `dse index` flags) that set limits."""

_MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-source limits, checked before the expensive work where possible.

    Attributes:
        max_pages: Most pages (PDF pages, slides, TIFF frames) a document may have.
        max_file_bytes: Largest file accepted, in bytes (checked before rendering).
        max_image_pixels: Largest image file accepted, in pixels (width x height).
        convert_timeout: Seconds an office document's conversion to PDF may take.
    """

    max_pages: int = DEFAULT_MAX_PAGES
    max_file_bytes: int = DEFAULT_MAX_FILE_MB * _MB
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    convert_timeout: float = DEFAULT_CONVERT_TIMEOUT

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"limit {spec.name} must be a positive number, got {value!r}")

    @classmethod
    def from_config(cls, values: Mapping[str, Any]) -> "Limits":
        """Build limits from config-style keys (`CONFIG_KEYS`; None or absent: the default).

        `max_file_mb` is in MiB (fractions allowed); the others are as in the attributes.

        Raises:
            ValueError: A value is not a positive number.
        """
        base = cls()
        mb = _number(values, "max_file_mb", base.max_file_bytes / _MB, float)
        return cls(
            max_pages=_number(values, "max_pages", base.max_pages, int),
            max_file_bytes=int(mb * _MB),
            max_image_pixels=_number(values, "max_image_pixels", base.max_image_pixels, int),
            convert_timeout=_number(values, "convert_timeout", base.convert_timeout, float),
        )


def _number(values: Mapping[str, Any], key: str, default: Any, kind: type) -> Any:
    """`values[key]` as `kind` (default when absent or None); ValueError naming the key."""
    value = values.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        raise ValueError(f"{key} must be a number, got {value!r}")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number, got {value!r}") from None
    if number <= 0 or (kind is int and number != float(value)):
        raise ValueError(f"{key} must be a positive {kind.__name__}, got {value!r}")
    return number


def check_file_size(source: str, size: int, max_file_bytes: int) -> None:
    """Raise LimitExceededError if a file of `size` bytes is over `max_file_bytes`."""
    if size > max_file_bytes:
        raise LimitExceededError(
            source,
            f"file is {size / _MB:.1f} MB, over the limit of {max_file_bytes / _MB:.1f} MB "
            "(raise it with --max-file-mb or `ingest: max_file_mb`)",
        )


def check_page_count(source: str, pages: int, max_pages: int) -> None:
    """Raise LimitExceededError if a document of `pages` pages is over `max_pages`."""
    if pages > max_pages:
        raise LimitExceededError(
            source,
            f"document has {pages} pages, over the limit of {max_pages} "
            "(raise it with --max-pages or `ingest: max_pages`)",
        )


def check_image_pixels(source: str, width: int, height: int, max_pixels: int) -> None:
    """Raise LimitExceededError if a `width` x `height` image is over `max_pixels`."""
    if width * height > max_pixels:
        raise LimitExceededError(
            source,
            f"image is {width} x {height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (raise it with --max-image-pixels or "
            "`ingest: max_image_pixels`)",
        )
