"""Resource limits on one source: pages, file size, pixels, time, memory, and the sandbox.

A source over a limit fails with `LimitExceededError` (an `IngestError` naming the file, the
limit and how to raise it); the rest of a batch goes on. Set them with `ingest.render(...,
limits=Limits(...))`, `Retriever.add(..., limits=...)`, `dse index --max-pages ...` or the
`ingest:` section of a config (`Limits.from_config`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any, Mapping

from ingest.errors import LimitExceededError, RenderTimeoutError

DEFAULT_MAX_PAGES = 5000
DEFAULT_MAX_FILE_MB = 500
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
"""Pillow's own default `PIL.Image.MAX_IMAGE_PIXELS` (a 1024 x 1024 x 1024 / 4 / 3 RGB image).

Pillow's decompression-bomb guard stays on as well: it refuses images over twice its
`Image.MAX_IMAGE_PIXELS`, whatever this limit says."""
DEFAULT_CONVERT_TIMEOUT = 300.0
"""Seconds LibreOffice may spend converting one office document to PDF."""
DEFAULT_PAGE_TIMEOUT = 30.0
"""Seconds poppler may spend on one page (rendering it, or reading its text): a call over n pages
gets n times this. A normal page takes well under a second."""
DEFAULT_FILE_TIMEOUT = 900.0
"""Seconds all of one file's rendering and text extraction may take together (15 minutes: a
600-page PDF takes about a minute at 144 dpi on one core)."""
DEFAULT_MAX_MEMORY_MB = 4096
"""Address space (MiB) of each render worker, poppler call and LibreOffice conversion."""
SANDBOX_MODES = ("auto", "require", "strict", "off")
"""`Limits.sandbox` values, see `ingest.sandbox.jail`: auto (a network namespace when the machine
allows one, else a warning), require (a network namespace or the office file fails), strict
(bubblewrap: no network, and LibreOffice sees only the system folders and the document), off."""

CONFIG_KEYS = ("max_pages", "max_file_mb", "max_image_pixels", "convert_timeout")
"""Keys of the `ingest:` config section that are also `dse index` flags."""
MORE_CONFIG_KEYS = ("page_timeout", "file_timeout", "max_memory_mb", "sandbox")
"""Further keys `Limits.from_config` reads (time, memory and sandbox limits)."""

_MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-source limits, checked before the expensive work where possible.

    Attributes:
        max_pages: Most pages (PDF pages, slides, TIFF frames) a document may have.
        max_file_bytes: Largest file accepted, in bytes (checked before rendering).
        max_image_pixels: Largest image (each frame of an image file) in pixels (width x height);
            a PDF page that would be larger at the requested dpi is rendered at a lower dpi.
        convert_timeout: Seconds an office document's conversion to PDF may take.
        page_timeout: Seconds poppler may spend per page (a call over n pages gets n times it).
        file_timeout: Seconds one file's rendering and text extraction may take in all.
        max_memory_mb: Address-space cap (MiB) of every render worker, poppler call and
            LibreOffice conversion.
        sandbox: How LibreOffice is contained (`SANDBOX_MODES`; default "auto").
    """

    max_pages: int = DEFAULT_MAX_PAGES
    max_file_bytes: int = DEFAULT_MAX_FILE_MB * _MB
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    convert_timeout: float = DEFAULT_CONVERT_TIMEOUT
    page_timeout: float = DEFAULT_PAGE_TIMEOUT
    file_timeout: float = DEFAULT_FILE_TIMEOUT
    max_memory_mb: int = DEFAULT_MAX_MEMORY_MB
    sandbox: str = "auto"

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name == "sandbox":
                if value not in SANDBOX_MODES:
                    raise ValueError(f"limit sandbox must be one of {SANDBOX_MODES}, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"limit {spec.name} must be a positive number, got {value!r}")

    @property
    def max_memory_bytes(self) -> int:
        """`max_memory_mb` in bytes."""
        return int(self.max_memory_mb * _MB)

    @classmethod
    def from_config(cls, values: Mapping[str, Any]) -> "Limits":
        """Build limits from config-style keys (`CONFIG_KEYS`, `MORE_CONFIG_KEYS`; None or
        absent: the default).

        `max_file_mb` and `max_memory_mb` are in MiB (fractions allowed for the file size); the
        others are as in the attributes.

        Raises:
            ValueError: A value is not a positive number, or `sandbox` is not a known mode.
        """
        base = cls()
        mb = _number(values, "max_file_mb", base.max_file_bytes / _MB, float)
        sandbox = values.get("sandbox")
        return cls(
            max_pages=_number(values, "max_pages", base.max_pages, int),
            max_file_bytes=int(mb * _MB),
            max_image_pixels=_number(values, "max_image_pixels", base.max_image_pixels, int),
            convert_timeout=_number(values, "convert_timeout", base.convert_timeout, float),
            page_timeout=_number(values, "page_timeout", base.page_timeout, float),
            file_timeout=_number(values, "file_timeout", base.file_timeout, float),
            max_memory_mb=_number(values, "max_memory_mb", base.max_memory_mb, int),
            sandbox=base.sandbox if sandbox is None else str(sandbox),
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


class Clock:
    """The time one file may still spend in its renderers (`page_timeout`, `file_timeout`).

    Args:
        source: The file, as named in errors.
        limits: Its limits.
        spent: Seconds already spent on it (by other processes, for a file split in chunks).
    """

    def __init__(self, source: str, limits: Limits | None = None, spent: float = 0.0) -> None:
        self.source = source
        self.limits = limits or Limits()
        self.spent = spent

    def timeout(self, pages: int) -> float:
        """Seconds the next call over `pages` pages may take; RenderTimeoutError if none is left."""
        left = self.limits.file_timeout - self.spent
        if left <= 0:
            raise self._file_error()
        return min(left, self.limits.page_timeout * max(1, pages))

    def charge(self, seconds: float) -> None:
        """Count `seconds` of work on the file."""
        self.spent += seconds

    def expired(self, what: str, pages: int, timeout: float) -> RenderTimeoutError:
        """The error for a call over `pages` pages stopped after `timeout` seconds (charged)."""
        if self.spent >= self.limits.file_timeout:
            return self._file_error()
        return RenderTimeoutError(
            self.source,
            f"{what} took longer than {timeout:g} s ({self.limits.page_timeout:g} s a page) and "
            "was stopped (raise the limit with `ingest: page_timeout`)",
        )

    def check(self) -> None:
        """Raise RenderTimeoutError if the file's time is used up."""
        if self.spent >= self.limits.file_timeout:
            raise self._file_error()

    def _file_error(self) -> RenderTimeoutError:
        return RenderTimeoutError(
            self.source,
            f"rendering it took longer than {self.limits.file_timeout:g} s in all and was stopped "
            "(raise the limit with `ingest: file_timeout`)",
        )


class Stopwatch:
    """Charges the time between laps to a Clock (for work done in this process)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._start = time.monotonic()

    def lap(self) -> None:
        """Charge the time since the last lap; raise RenderTimeoutError past the file's limit."""
        now = time.monotonic()
        self.clock.charge(now - self._start)
        self._start = now
        self.clock.check()


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


def check_image_pixels(
    source: str, width: int, height: int, max_pixels: int, what: str = "image"
) -> None:
    """Raise LimitExceededError if a `width` x `height` image (or `what`) is over `max_pixels`."""
    if width * height > max_pixels:
        raise LimitExceededError(
            source,
            f"{what} is {width} x {height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (raise it with --max-image-pixels or "
            "`ingest: max_image_pixels`)",
        )
