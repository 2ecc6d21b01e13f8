"""Capture one web page in a fresh browser context: load, scroll, settle, read text, screenshot."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from ingest.errors import IngestError
from ingest.web_pages import Capture, TextBox, WebOptions, tile_spans
from ingest.web_proxy import FilteringProxy
from ingest.web_safety import BlockedAddressError, allowed_addresses, check_web_url

logger = logging.getLogger(__name__)

_SCROLL_JS = """async ({step, limit, pause}) => {
  const height = () => Math.max(document.documentElement.scrollHeight,
                                document.body ? document.body.scrollHeight : 0);
  for (let y = step; y < Math.min(height(), limit); y += step) {
    window.scrollTo(0, y);
    await new Promise(resolve => setTimeout(resolve, pause));
  }
  window.scrollTo(0, 0);
}"""

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


def _file_guard(root: Path, refusals: list[tuple[str, str]]) -> Any:
    """Route handler: a local page may load files from its own folder (and below) only."""

    async def handle(route: Any) -> None:
        from urllib.parse import unquote, urlsplit

        url = route.request.url
        path = Path(unquote(urlsplit(url).path)).resolve()
        if path == root or root in path.parents:
            await route.continue_()
        else:
            refusals.append((url, f"refused: outside the page's folder {root}"))
            await route.abort("accessdenied")

    return handle


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


async def capture(browser: Any, source: str, url: str, options: WebOptions) -> Capture:
    """Render `url` in a new context of `browser`, within `options.page_timeout` seconds.

    Args:
        browser: A Playwright (async) Chromium browser.
        source: The name errors carry (the URL as given, or the local file's path).
        url: The http(s) or file URL to load.
        options: Geometry, timeouts and address policy.

    Returns:
        The capture; `settled` is False if the network never went quiet before the deadline.

    Raises:
        IngestError: The URL is refused, unreachable, answers with an HTTP error, is a download,
            or the page did not finish within `options.page_timeout`.
    """
    loop = asyncio.get_running_loop()
    if not url.startswith("file:"):
        try:
            host, port = check_web_url(url)
            await loop.run_in_executor(None, allowed_addresses, host, port, options.allow_private)
        except (ValueError, BlockedAddressError) as exc:
            raise IngestError(source, str(exc)) from exc
    proxy = FilteringProxy(options.allow_private)
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
            await context.close()
        await proxy.close()


async def _capture(
    context: Any, proxy: FilteringProxy, source: str, url: str, options: WebOptions
) -> Capture:
    from playwright.async_api import Error as PlaywrightError

    loop = asyncio.get_running_loop()
    if url.startswith("file:"):
        from urllib.parse import unquote, urlsplit

        root = Path(unquote(urlsplit(url).path)).resolve().parent
        await context.route(lambda target: target.startswith("file:"), _file_guard(root, proxy.refusals))
    page = await context.new_page()
    activity = _Activity(loop)
    page.on("request", activity.started)
    page.on("requestfinished", activity.ended)
    page.on("requestfailed", activity.ended)
    page.on("dialog", activity.dialog)
    page.on("download", activity.download)
    page.on("response", activity.response)
    start = loop.time()
    try:
        response = await page.goto(url, wait_until="commit", timeout=options.nav_timeout * 1000)
    except PlaywrightError as exc:
        if activity.status is not None and activity.status[0] >= 400:
            raise IngestError(source, _http_error(*activity.status, proxy, url)) from exc
        raise IngestError(source, _navigation_error(str(exc), proxy, url)) from exc
    status = response.status if response is not None else None
    if status is not None and status >= 400:
        raise IngestError(source, _http_error(status, response.status_text, proxy, response.url))
    deadline = start + options.settle_timeout
    settled = True
    try:
        await page.wait_for_load_state("load", timeout=max(1.0, deadline - loop.time()) * 1000)
    except PlaywrightError:
        settled = False
    step = max(1, options.tile_height - 100)
    await _evaluate(
        page, _SCROLL_JS, {"step": step, "limit": options.max_height, "pause": options.scroll_pause_ms}
    )
    settled = await activity.wait_idle(deadline, options.idle_ms / 1000) and settled
    if not settled:
        logger.warning(
            "%s: the network did not settle within %g s; captured as it was (settled=False)",
            source,
            options.settle_timeout,
        )
    height = int(await _evaluate(page, _HEIGHT_JS))
    captured = max(1, min(height, options.max_height))
    rows = await _evaluate(page, _TEXT_JS, options.width)
    boxes = tuple(TextBox(str(text), float(top), float(bottom), bool(new)) for text, top, bottom, new in rows)
    tiles = []
    for offset, tile_height in tile_spans(captured, options):
        clip = {"x": 0, "y": offset, "width": options.width, "height": tile_height}
        png = await page.screenshot(clip=clip, full_page=True, animations="disabled", caret="hide")
        tiles.append((offset, png))
    return Capture(
        final_url=page.url,
        title=await page.title(),
        status=status,
        page_height=height,
        captured_height=captured,
        settled=settled,
        tiles=tuple(tiles),
        boxes=boxes,
        dialogs=activity.dialogs,
        downloads=activity.downloads,
        refused=tuple(f"{target}: {reason}" for target, reason in proxy.refusals[:20]),
    )
