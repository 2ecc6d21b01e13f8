"""One headless Chromium (driven by Playwright) shared by every web page of a run.

The browser lives on a private thread running its own asyncio loop, so callers stay synchronous
(and work inside Jupyter's running loop), and several pages render at once: each page gets a new
browser context, at most `max_parallel` at a time.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
from typing import Any

from ingest.errors import MissingToolError
from ingest.web_capture import capture
from ingest.web_pages import Capture, WebOptions

logger = logging.getLogger(__name__)

DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ENV = "DSE_CHROMIUM"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    # WebRTC may not send UDP around the filtering proxy (it could reach private addresses)
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
)
DEFAULT_PARALLEL = 4
"""Pages rendered at once: loading is mostly waiting on the network, not CPU."""


def chromium_path() -> str:
    """The Chromium executable: `$DSE_CHROMIUM`, else Debian's /usr/bin/chromium.

    Raises:
        MissingToolError: It does not exist or is not executable.
    """
    path = os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise MissingToolError(
            f"Chromium not found at {path}: install it (`apt-get install chromium`) "
            f"or point ${CHROMIUM_ENV} at a Chromium/Chrome executable"
        )
    return path


class WebRenderer:
    """A lazily started browser; use as a context manager or call `close()`.

    Args:
        max_parallel: Pages rendered at once.
        executable: Chromium executable (default: `chromium_path()`).
        extra_args: More Chromium switches (e.g. `--host-resolver-rules=...`).
    """

    def __init__(
        self,
        max_parallel: int = DEFAULT_PARALLEL,
        executable: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        if max_parallel < 1:
            raise ValueError(f"max_parallel must be >= 1, got {max_parallel}")
        self.max_parallel = max_parallel
        self._executable = executable
        self._args = CHROMIUM_ARGS + tuple(extra_args)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._playwright: Any = None
        self._browser: Any = None
        self._slots: asyncio.Semaphore | None = None
        self._launching: asyncio.Lock | None = None

    def __enter__(self) -> WebRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, source: str, url: str, options: WebOptions) -> concurrent.futures.Future[Capture]:
        """Start rendering `url` (errors name `source`); the future holds the Capture."""
        loop = self._start()
        return asyncio.run_coroutine_threadsafe(self._render(source, url, options), loop)

    def close(self) -> None:
        """Close the browser and stop the thread (a later `submit` starts them again)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=30)
        except Exception as exc:  # noqa: BLE001 - a browser that died is closed already
            logger.debug("closing the browser: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                executable = self._executable or chromium_path()
                self._executable = executable
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="dse-web", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def _ensure_browser(self) -> Any:
        """Launch Playwright and Chromium on first use, and again if the browser died."""
        if self._browser is not None and self._browser.is_connected():
            return self._browser
        try:
            from playwright.async_api import async_playwright
        except ImportError as exc:
            raise MissingToolError("the 'playwright' package is missing: pip install playwright") from exc
        if self._playwright is None:
            self._playwright = await async_playwright().start()
        try:
            self._browser = await self._playwright.chromium.launch(
                executable_path=self._executable, args=list(self._args)
            )
        except Exception as exc:
            raise MissingToolError(f"cannot start Chromium ({self._executable}): {exc}") from exc
        return self._browser

    async def _render(self, source: str, url: str, options: WebOptions) -> Capture:
        if self._slots is None or self._launching is None:
            self._slots, self._launching = asyncio.Semaphore(self.max_parallel), asyncio.Lock()
        async with self._slots:
            async with self._launching:
                browser = await self._ensure_browser()
            return await capture(browser, source, url, options)

    async def _shutdown(self) -> None:
        browser, playwright = self._browser, self._playwright
        self._browser = self._playwright = self._slots = self._launching = None
        if browser is not None:
            await browser.close()
        if playwright is not None:
            await playwright.stop()


_shared: WebRenderer | None = None
_shared_lock = threading.Lock()


def shared_renderer() -> WebRenderer:
    """The process-wide renderer used by `ingest.render` and the indexer; closed at exit."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = WebRenderer()
            atexit.register(close_shared_renderer)
        return _shared


def close_shared_renderer() -> None:
    """Close the process-wide browser now (it restarts on next use)."""
    with _shared_lock:
        renderer = _shared
    if renderer is not None:
        renderer.close()


def _forget_in_child() -> None:
    """A forked child has no copy of the browser thread: it starts its own browser if it needs one."""
    global _shared, _shared_lock
    _shared, _shared_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
