"""Capture one web page in a fresh browser context: load, scroll, settle, read text, screenshot.

The page's time limit (`WebOptions.page_timeout`) is spent where it matters: loading and
settling end by `LOAD_SHARE` of it (a page still parsing gets until `PARSE_SHARE`, since a
capture of an unparsed page is empty), and the tiles get the rest (`ingest.web.tiles`), each
step bounded, so a slow page ends with the tiles taken by then rather than with nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ingest.errors import IngestError
from ingest.web.local import file_url_path, local_file_handler
from ingest.web.pages import Capture, TextBox, WebOptions, tile_spans
from ingest.web.proxy import FilteringProxy, Resolver
from ingest.web.safety import BlockedAddressError, check_web_url
from ingest.web.tiles import capture_tiles

logger = logging.getLogger(__name__)

_SCROLL_JS = """async ({step, limit, pause, budget}) => {
  const height = () => Math.max(document.documentElement.scrollHeight,
                                document.body ? document.body.scrollHeight : 0);
  const end = performance.now() + budget;
  for (let y = step; y < Math.min(height(), limit) && performance.now() < end; y += step) {
    window.scrollTo(0, y);
    await new Promise(resolve => setTimeout(resolve, pause));
  }
  window.scrollTo(0, 0);
}"""

LOAD_SHARE = 0.4
"""Fraction of `page_timeout` by which loading, scrolling and settling end."""
PARSE_SHARE = 0.6
"""Fraction of `page_timeout` until which a page whose HTML is still being parsed is waited for."""
CLOSE_MARGIN = 1.0
"""Seconds kept at the end of `page_timeout` to close the page."""
CLOSE_TIMEOUT = 15.0
"""Seconds closing a page's context may take (a wedged browser must not hold the run)."""

_HEIGHT_JS = """() => Math.max(document.documentElement.scrollHeight,
                             document.body ? document.body.scrollHeight : 0)"""

_TEXT_JS = """(width) => {
  const out = [], blocks = new Map(), range = document.createRange();
  const blockOf = (el) => {
    const start = el;
    while (el && el !== document.body && el !== document.documentElement) {
      if (blocks.has(el)) return blocks.get(el);
      const display = getComputedStyle(el).display;
      if (!display.startsWith("inline") && display !== "contents") break;
      el = el.parentElement;
    }
    blocks.set(start, el);
    return el;
  };
  const root = document.body || document.documentElement;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  let last = null;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || !node.nodeValue.trim()) continue;
    if (parent.closest("script,style,noscript,template,title")) continue;
    if (parent.checkVisibility &&
        !parent.checkVisibility({opacityProperty: true, visibilityProperty: true})) continue;
    range.selectNodeContents(node);
    const r = range.getBoundingClientRect();
    if ((r.width === 0 && r.height === 0) || r.right <= 0 || r.left >= width) continue;
    const block = blockOf(parent);
    out.push([node.nodeValue.replace(/\\s+/g, " "), r.top + window.scrollY,
              r.bottom + window.scrollY, block !== last]);
    last = block;
  }
  return out;
}"""


class _Activity:
    """Requests in flight and the time of the last network event, for the settle test."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.inflight: set[Any] = set()
        self.last = loop.time()
        self.dialogs = 0
        self.downloads = 0
        self.status: tuple[int, str] | None = None  # last main-document response

    def response(self, response: Any) -> None:
        request = response.request
        if request.is_navigation_request() and request.frame.parent_frame is None:
            self.status = (response.status, response.status_text)

    def started(self, request: Any) -> None:
        self.inflight.add(request)
        self.last = self.loop.time()

    def ended(self, request: Any) -> None:
        self.inflight.discard(request)
        self.last = self.loop.time()

    def dialog(self, dialog: Any) -> None:
        self.dialogs += 1
        asyncio.ensure_future(dialog.dismiss())

    def download(self, download: Any) -> None:
        self.downloads += 1
        asyncio.ensure_future(download.cancel())

    async def wait_idle(self, deadline: float, idle: float) -> bool:
        """Wait until no request has been in flight for `idle` s; False if `deadline` comes first."""
        while self.loop.time() < deadline:
            if not self.inflight and self.loop.time() - self.last >= idle:
                return True
            await asyncio.sleep(0.05)
        return False


async def _evaluate(page: Any, script: str, arg: Any = None) -> Any:
    """Evaluate `script`; if the page navigated meanwhile (a script redirect), retry once on the new page."""
    from playwright.async_api import Error as PlaywrightError

    try:
        return await page.evaluate(script, arg)
    except PlaywrightError as exc:
        if "context was destroyed" not in str(exc) and "navigat" not in str(exc):
            raise
        await page.wait_for_load_state("load")
        return await page.evaluate(script, arg)


async def _wait_state(page: Any, state: str, until: float) -> bool:
    """Wait for the load state `state` until event-loop time `until`; False if it did not come."""
    from playwright.async_api import Error as PlaywrightError

    seconds = until - asyncio.get_running_loop().time()
    try:
        await page.wait_for_load_state(state, timeout=max(0.05, seconds) * 1000)
        return True
    except PlaywrightError:
        return False


def _http_error(status: int, text: str, proxy: FilteringProxy, url: str) -> str:
    """An HTTP error status, or the proxy's reason when the proxy produced it."""
    return proxy.reason_for(url) or f"HTTP error {status} {text}".rstrip()


def _navigation_error(message: str, proxy: FilteringProxy, url: str) -> str:
    """Turn a failed `goto` into a reason a user can act on."""
    if "Download is starting" in message:
        return "the URL is a download (not a page), and downloads are refused"
    reason = proxy.reason_for(url) or (proxy.refusals[-1][1] if proxy.refusals else None)
    first = message.splitlines()[0] if message else "navigation failed"
    if "net::ERR_TIMED_OUT" in message or "Timeout" in first:
        return f"unreachable: no response ({first})"
    return f"unreachable: {reason}" if reason else f"unreachable ({first})"


async def capture(
    browser: Any, source: str, url: str, options: WebOptions, resolver: Resolver | None = None
) -> Capture:
    """Render `url` in a new context of `browser`, within `options.page_timeout` seconds.

    Args:
        browser: A Playwright (async) Chromium browser.
        source: The name errors carry (the URL as given, or the local file's path).
        url: The http(s) or file URL to load.
        options: Geometry, timeouts and address policy.
        resolver: Host lookups shared with other pages (default: this page's own).

    Returns:
        The capture; `settled` is False if the network never went quiet before the deadline.

    Raises:
        IngestError: The URL is refused, unreachable, answers with an HTTP error, is a download,
            or the page did not finish within `options.page_timeout`.
    """
    resolver = resolver or Resolver()
    if not url.startswith("file:"):
        try:
            host, port = check_web_url(url)
            await resolver.addresses(host, port, options.allow_private)
        except (ValueError, BlockedAddressError) as exc:
            raise IngestError(source, str(exc)) from exc
    proxy = FilteringProxy(options.allow_private, resolver)
    context = None
    try:
        context = await browser.new_context(
            viewport={"width": options.width, "height": options.tile_height},
            device_scale_factor=1,
            accept_downloads=False,
            service_workers="block",
            proxy={"server": await proxy.start()},
        )
        return await asyncio.wait_for(_capture(context, proxy, source, url, options), options.page_timeout)
    except asyncio.TimeoutError:
        raise IngestError(source, f"the page did not render within {options.page_timeout:g} s") from None
    finally:
        if context is not None:
            try:
                await asyncio.wait_for(context.close(), CLOSE_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - a dead browser closed it
                logger.debug("%s: closing the page: %s", source, exc)
        await proxy.close()


async def _capture(
    context: Any, proxy: FilteringProxy, source: str, url: str, options: WebOptions
) -> Capture:
    from playwright.async_api import Error as PlaywrightError

    loop = asyncio.get_running_loop()
    start = loop.time()
    if url.startswith("file:"):
        handler = local_file_handler(file_url_path(url), options.local_files, proxy.refusals)
        await context.route("file://**", handler)
    page = await context.new_page()
    activity = _Activity(loop)
    page.on("request", activity.started)
    page.on("requestfinished", activity.ended)
    page.on("requestfailed", activity.ended)
    page.on("dialog", activity.dialog)
    page.on("download", activity.download)
    page.on("response", activity.response)
    try:
        response = await page.goto(url, wait_until="commit", timeout=options.nav_timeout * 1000)
    except PlaywrightError as exc:
        if activity.status is not None and activity.status[0] >= 400:
            raise IngestError(source, _http_error(*activity.status, proxy, url)) from exc
        raise IngestError(source, _navigation_error(str(exc), proxy, url)) from exc
    status = response.status if response is not None else None
    if status is not None and status >= 400:
        raise IngestError(source, _http_error(status, response.status_text, proxy, response.url))
    settled = await _load(page, activity, source, options, start)
    height = int(await _evaluate(page, _HEIGHT_JS))
    captured = max(1, min(height, options.max_height))
    rows = await _evaluate(page, _TEXT_JS, options.width)
    boxes = tuple(TextBox(str(text), float(top), float(bottom), bool(new)) for text, top, bottom, new in rows)
    title = await page.title()
    deadline = start + options.page_timeout - min(CLOSE_MARGIN, 0.1 * options.page_timeout)
    tiles = await capture_tiles(page, tile_spans(captured, options), options, deadline)
    if not tiles.shots:
        raise IngestError(source, f"no screenshot within the page's time limit ({options.page_timeout:g} s)")
    if tiles.stopped:
        logger.warning("%s: %s after %d tile(s); kept those (stopped=%r)", source, tiles.stopped,
                       len(tiles.shots), tiles.stopped)
    return Capture(
        final_url=page.url,
        title=title,
        status=status,
        page_height=height,
        captured_height=min(captured, tiles.bottom),
        settled=settled,
        tiles=tuple(tiles.shots),
        boxes=boxes,
        dialogs=activity.dialogs,
        downloads=activity.downloads,
        refused=tuple(f"{target}: {reason}" for target, reason in proxy.refusals[:20]),
        tile_retries=tiles.retries,
        tile_fallbacks=tiles.fallbacks,
        stopped=tiles.stopped,
    )


async def _load(page: Any, activity: _Activity, source: str, options: WebOptions, start: float) -> bool:
    """Wait for the load event, scroll for lazy content, wait for the network to settle.

    Returns:
        Whether the page settled by `settle_timeout` (or by `LOAD_SHARE` of the time limit).
    """
    loop = asyncio.get_running_loop()
    deadline = start + min(options.settle_timeout, LOAD_SHARE * options.page_timeout)
    settled = await _wait_state(page, "load", max(deadline, loop.time() + 1.0))
    if not settled and not await _wait_state(page, "domcontentloaded", start + PARSE_SHARE * options.page_timeout):
        logger.warning("%s: the HTML was still being parsed after %g s", source, PARSE_SHARE * options.page_timeout)
    step = max(1, options.tile_height - 100)
    budget = max(1.0, deadline - loop.time()) * 1000
    scroll = {"step": step, "limit": options.max_height, "pause": options.scroll_pause_ms, "budget": budget}
    await _evaluate(page, _SCROLL_JS, scroll)
    settled = await activity.wait_idle(deadline, options.idle_ms / 1000) and settled
    if not settled:
        logger.warning(
            "%s: the network did not settle within %g s; captured as it was (settled=False)",
            source,
            deadline - start,
        )
    return settled
