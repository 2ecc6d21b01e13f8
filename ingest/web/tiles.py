"""Screenshots of a rendered page, tile by tile, within a deadline.

One giant full-page screenshot (or one "beyond the viewport" capture per tile, which makes
Chromium lay out and raster the whole page each time) is what timed out on long real pages when
the machine was busy. Instead each tile is captured as a viewport: scroll to the tile, wait for
a frame, and take a plain `Page.captureScreenshot` of that clip (no per-shot work in every
frame). A tile that takes longer than its share of the time is retried once with twice the
time; if that fails too, or the page cannot scroll there (scroll locked, page shrank), it is
captured with Playwright's full-page clip instead. Elements fixed to the viewport are shown in
the first tile only, as in a full-page screenshot. Capturing stops at the deadline and keeps the
tiles taken so far.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass, field
from typing import Any

from ingest.web.pages import WebOptions

logger = logging.getLogger(__name__)

MIN_ATTEMPT = 2.0
"""Seconds below which a screenshot attempt is not started."""

_FREEZE_JS = """() => {
  const style = document.createElement("style");
  style.textContent = `*, *::before, *::after { animation-duration: 0s !important;
    animation-delay: 0s !important; transition: none !important; caret-color: transparent !important;
    scroll-behavior: auto !important; }`;
  (document.head || document.documentElement).appendChild(style);
}"""

_SCROLL_TO_JS = """async (y) => {
  window.scrollTo({top: y, left: 0, behavior: "instant"});
  await new Promise(done => { requestAnimationFrame(() => requestAnimationFrame(done)); setTimeout(done, 500); });
  return [window.scrollY, window.innerHeight, Math.max(document.documentElement.scrollHeight,
          document.body ? document.body.scrollHeight : 0)];
}"""

_HIDE_FIXED_JS = """() => {
  let hidden = 0;
  for (const el of document.querySelectorAll("body *")) {
    if (getComputedStyle(el).position === "fixed") {
      el.style.setProperty("visibility", "hidden", "important");
      hidden += 1;
    }
  }
  return hidden;
}"""


class _PageEnded(Exception):
    """The page got shorter than the tile's top while it was being captured."""


@dataclass
class Tiles:
    """What `capture_tiles` took: `(offset_y, png)` per tile, and how it went.

    Attributes:
        shots: The tiles in order.
        retries: Tiles that needed a second attempt.
        fallbacks: Tiles taken by the full-page clip instead of the viewport.
        stopped: Why capturing stopped before the last tile (None: it did not).
    """

    shots: list[tuple[int, bytes]] = field(default_factory=list)
    retries: int = 0
    fallbacks: int = 0
    stopped: str | None = None

    @property
    def bottom(self) -> int:
        """Page pixels covered, from the top."""
        return max((offset + _png_height(png) for offset, png in self.shots), default=0)


def _png_height(png: bytes) -> int:
    return int.from_bytes(png[20:24], "big") if png[:8] == b"\x89PNG\r\n\x1a\n" else 0


async def _within(awaitable: Any, seconds: float) -> Any:
    return await asyncio.wait_for(awaitable, max(0.01, seconds))


async def _viewport_shot(page: Any, cdp: Any, offset: int, height: int, width: int, seconds: float) -> bytes | None:
    """Scroll to `offset` and capture the viewport clip; None if the page cannot scroll there.

    Raises:
        _PageEnded: The page is no longer as tall as `offset`.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    scroll_y, viewport, page_height = await _within(page.evaluate(_SCROLL_TO_JS, offset), seconds)
    if offset > 0 and page_height <= offset:
        raise _PageEnded
    height = min(height, int(page_height) - offset) if page_height > offset else height
    if offset < scroll_y or offset + height > scroll_y + viewport:
        return None
    clip = {"x": 0, "y": offset, "width": width, "height": height, "scale": 1}
    params = {"format": "png", "clip": clip, "captureBeyondViewport": False, "fromSurface": True}
    result = await _within(cdp.send("Page.captureScreenshot", params), end - loop.time())
    return base64.b64decode(result["data"])


async def _full_page_shot(page: Any, offset: int, height: int, width: int, seconds: float) -> bytes:
    """Capture the clip beyond the viewport (Playwright's full-page screenshot of that clip)."""
    clip = {"x": 0, "y": offset, "width": width, "height": height}
    shot = page.screenshot(clip=clip, full_page=True, caret="hide", timeout=seconds * 1000)
    return await _within(shot, seconds + 1)


async def _tile(
    page: Any, cdp: Any, offset: int, height: int, options: WebOptions, share: float, deadline: float, tiles: Tiles
) -> bytes | None:
    """One tile: viewport shot, a retry with twice the time, then the full-page clip."""
    loop = asyncio.get_running_loop()
    for attempt, seconds in enumerate((share, 2 * share)):
        seconds = min(seconds, deadline - loop.time())
        if seconds < MIN_ATTEMPT:
            return None
        try:
            png = await _viewport_shot(page, cdp, offset, height, options.width, seconds)
        except _PageEnded:
            raise
        except asyncio.TimeoutError:
            logger.info("tile at y=%d: no screenshot within %.1f s (attempt %d)", offset, seconds, attempt + 1)
            tiles.retries += attempt == 0
            continue
        except Exception as exc:  # noqa: BLE001 - a protocol error: try the other way
            logger.info("tile at y=%d: viewport screenshot failed: %s", offset, exc)
            break
        if png is None:
            break  # the page does not scroll there: capture beyond the viewport
        return png
    seconds = deadline - loop.time()
    if seconds < MIN_ATTEMPT:
        return None
    tiles.fallbacks += 1
    try:
        return await _full_page_shot(page, offset, height, options.width, seconds)
    except Exception as exc:  # noqa: BLE001 - out of ways to take this tile
        logger.warning("tile at y=%d: no screenshot (%s)", offset, str(exc).splitlines()[0] if str(exc) else exc)
        return None


async def capture_tiles(page: Any, spans: list[tuple[int, int]], options: WebOptions, deadline: float) -> Tiles:
    """Screenshot each `(offset, height)` span of `page` before `deadline` (event-loop time).

    Args:
        page: A Playwright (async) page whose viewport is `options.width x options.tile_height`.
        spans: The tiles, from `ingest.web.pages.tile_spans`.
        options: Width and `tile_timeout`.
        deadline: When to stop (the tiles taken by then are kept).

    Returns:
        The tiles taken, with counts of retries and fallbacks, and why capturing stopped early.
    """
    loop = asyncio.get_running_loop()
    tiles = Tiles()
    cdp = await _within(page.context.new_cdp_session(page), max(MIN_ATTEMPT, deadline - loop.time()))
    try:
        await _within(page.evaluate(_FREEZE_JS), min(5.0, deadline - loop.time()))
    except Exception as exc:  # noqa: BLE001 - a page may forbid inline styles; capture anyway
        logger.debug("could not pause animations: %s", exc)
    try:
        for index, (offset, height) in enumerate(spans):
            share = min(options.tile_timeout, max(MIN_ATTEMPT, (deadline - loop.time()) / (len(spans) - index)))
            try:
                png = await _tile(page, cdp, offset, height, options, share, deadline, tiles)
            except _PageEnded:
                break  # the page got shorter: the tiles taken cover it
            if png is None:
                tiles.stopped = "time limit" if deadline - loop.time() < MIN_ATTEMPT else "screenshot failed"
                break
            tiles.shots.append((offset, png))
            if index == 0 and len(spans) > 1:
                try:
                    await _within(page.evaluate(_HIDE_FIXED_JS), min(5.0, deadline - loop.time()))
                except Exception as exc:  # noqa: BLE001 - fixed elements then repeat in each tile
                    logger.debug("could not hide fixed elements: %s", exc)
    finally:
        try:
            await _within(cdp.detach(), 2.0)
        except Exception:  # noqa: BLE001 - the page may be gone
            pass
    return tiles
