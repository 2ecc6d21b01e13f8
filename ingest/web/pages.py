"""Web page geometry and records: options, tile spans, per-tile text, and the `Page` of each tile."""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingest.page import Page, make_page_id


@dataclass(frozen=True)
class WebOptions:
    """How a web page is loaded and cut into tiles.

    The default tile (1280 x 1600, 2 Mpx) is larger than the encoders' pixel budgets (0.8 Mpx for
    DSE), like a 144-dpi PDF page, so the processors only ever downscale it.

    Attributes:
        width: Viewport width in CSS pixels (= tile width; device scale factor 1).
        tile_height: Tile height in pixels (also the viewport height).
        overlap: Fraction of a tile repeated at the top of the next one (0 <= overlap < 1).
        max_height: Pages taller than this are captured down to here only (metadata `truncated`).
        settle_timeout: Seconds after the first response within which the network must settle
            (no request in flight for `idle_ms`); past it the page is captured anyway, flagged.
        idle_ms: Quiet time that counts as settled.
        nav_timeout: Seconds to wait for the first response before declaring the URL unreachable.
        page_timeout: Hard limit in seconds for one source, capture included. Loading and
            settling end by half of it whatever `settle_timeout` says, so the tiles always get
            the other half; a page whose tiles still run out of time keeps the tiles captured
            so far (metadata `truncated`, `stopped: "time limit"`).
        scroll_pause_ms: Pause after each scroll step, for lazy loaders to start their requests.
        tile_timeout: Seconds for one tile's screenshot; a slow tile is retried once with twice
            that, then captured another way (all within `page_timeout`).
        allow_private: Let pages (and their subresources) reach loopback, private and link-local
            addresses.
        local_files: What a local .html file may load from disk: `"folder"` (its own folder and
            below) or `"none"` (nothing but itself). Scripts never read local files.
        sandbox: Run Chromium inside its sandbox (None: `$DSE_CHROMIUM_SANDBOX`, default on;
            as root, Chromium then runs as an unprivileged user, see `ingest.web.sandbox`).
    """

    width: int = 1280
    tile_height: int = 1600
    overlap: float = 0.1
    max_height: int = 32_000
    settle_timeout: float = 15.0
    idle_ms: int = 500
    nav_timeout: float = 30.0
    page_timeout: float = 90.0
    scroll_pause_ms: int = 100
    tile_timeout: float = 20.0
    allow_private: bool = False
    local_files: str = "folder"
    sandbox: bool | None = None

    def __post_init__(self) -> None:
        for name in ("width", "tile_height", "max_height", "idle_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"WebOptions.{name} must be positive, got {getattr(self, name)}")
        for name in ("settle_timeout", "nav_timeout", "page_timeout", "tile_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"WebOptions.{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"WebOptions.overlap must be in [0, 1), got {self.overlap}")
        if self.local_files not in ("folder", "none"):
            raise ValueError(f"WebOptions.local_files must be 'folder' or 'none', got {self.local_files!r}")

    @property
    def stride(self) -> int:
        """Pixels between the tops of consecutive tiles."""
        return max(1, self.tile_height - round(self.tile_height * self.overlap))


@dataclass(frozen=True)
class TextBox:
    """A visible run of DOM text and its vertical extent in page pixels."""

    text: str
    top: float
    bottom: float
    new_block: bool


@dataclass(frozen=True)
class Capture:
    """What the browser saw of one source (PNG tiles still encoded)."""

    final_url: str
    title: str
    status: int | None
    page_height: int
    captured_height: int
    settled: bool
    tiles: tuple[tuple[int, bytes], ...]
    boxes: tuple[TextBox, ...]
    dialogs: int
    downloads: int
    refused: tuple[str, ...]
    tile_retries: int = 0
    tile_fallbacks: int = 0
    stopped: str | None = None


def tile_spans(height: int, options: WebOptions) -> list[tuple[int, int]]:
    """Return `(offset_y, tile_height)` of each tile covering `height` pixels.

    Tiles start every `options.stride` pixels; the last one ends at the page bottom (and may be
    shorter than `tile_height`). A page no taller than a tile is a single tile.
    """
    height = max(1, height)
    if height <= options.tile_height:
        return [(0, height)]
    count = 1 + math.ceil((height - options.tile_height) / options.stride)
    offsets = [index * options.stride for index in range(count)]
    return [(offset, min(options.tile_height, height - offset)) for offset in offsets]


def join_boxes(boxes: Sequence[TextBox]) -> str:
    """Join text runs in document order: a new line per block, inline runs glued as written."""
    pieces: list[str] = []
    for box in boxes:
        if box.new_block and pieces:
            pieces.append("\n")
        pieces.append(box.text)
    lines = (" ".join(line.split()) for line in "".join(pieces).split("\n"))
    return "\n".join(line for line in lines if line)


def tile_text(boxes: Sequence[TextBox], offset: int, height: int) -> str:
    """Text of the runs whose boxes intersect the band `[offset, offset + height)`."""
    return join_boxes([box for box in boxes if box.top < offset + height and box.bottom > offset])


def url_digest(final_url: str, boxes: Sequence[TextBox]) -> str:
    """Content digest of a URL: SHA-256 of the final URL and the page's whole visible text."""
    return hashlib.sha256(f"{final_url}\n{join_boxes(boxes)}".encode()).hexdigest()


def build_pages(
    source: str, digest: str, capture: Capture, options: WebOptions, extra: dict[str, Any]
) -> list[Page]:
    """Decode the tiles of a capture into `Page` records (tile numbers from 1)."""
    from PIL import Image

    pages = []
    for number, (offset, png) in enumerate(capture.tiles, start=1):
        with Image.open(io.BytesIO(png)) as decoded:
            image = decoded.convert("RGB")
        metadata: dict[str, Any] = {
            "kind": "web",
            **extra,
            "url": capture.final_url,
            "title": capture.title,
            "status": capture.status,
            "offset_y": offset,
            "full_height": capture.page_height,
            "captured_height": capture.captured_height,
            "truncated": capture.page_height > capture.captured_height or capture.stopped is not None,
            "stopped": capture.stopped,
            "tile_retries": capture.tile_retries,
            "tile_fallbacks": capture.tile_fallbacks,
            "settled": capture.settled,
            "width": image.width,
            "height": image.height,
            "num_pages": len(capture.tiles),
            "viewport_width": options.width,
            "overlap": options.overlap,
            "dialogs_dismissed": capture.dialogs,
            "downloads_refused": capture.downloads,
            "requests_refused": list(capture.refused),
        }
        pages.append(
            Page(
                page_id=make_page_id(digest, number),
                source=source,
                page=number,
                image=image,
                text=tile_text(capture.boxes, offset, image.height),
                source_digest=digest,
                metadata=metadata,
            )
        )
    return pages
