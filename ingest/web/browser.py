"""One headless Chromium (driven by Playwright) shared by every web page of a run.

The browser lives on a private thread running its own asyncio loop, so callers stay synchronous
(and work inside Jupyter's running loop), and several pages render at once: each page gets a new
browser context, at most `max_parallel` at a time. Chromium keeps its sandbox unless a page's
`WebOptions.sandbox` (or the renderer's `sandbox`, or `$DSE_CHROMIUM_SANDBOX=0`) turns it off;
as root it runs as an unprivileged user for that (`ingest.web.sandbox`). A sandboxed and an
unsandboxed browser can coexist, each started on first use.
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
from ingest.web.capture import capture
from ingest.web.pages import Capture, WebOptions
from ingest.web.proxy import Resolver
from ingest.web.sandbox import LaunchPlan, executable_for, launch_error, plan_launch, sandbox_wanted, warn_unsandboxed

logger = logging.getLogger(__name__)

DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ENV = "DSE_CHROMIUM"
CHROMIUM_ARGS = (
    "--headless",
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
LAUNCH_TIMEOUT = 60.0
"""Seconds Chromium gets to start (a busy machine is slow)."""


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
        sandbox: Sandbox choice for pages whose `WebOptions.sandbox` is None (None:
            `$DSE_CHROMIUM_SANDBOX`, default on).
    """

    def __init__(
        self,
        max_parallel: int = DEFAULT_PARALLEL,
        executable: str | None = None,
        extra_args: tuple[str, ...] = (),
        sandbox: bool | None = None,
    ) -> None:
        if max_parallel < 1:
            raise ValueError(f"max_parallel must be >= 1, got {max_parallel}")
        if "--no-sandbox" in extra_args:
            raise ValueError("turn the sandbox off with sandbox=False, not --no-sandbox")
        self.max_parallel = max_parallel
        self.sandbox = sandbox
        self._executable = executable
        self._args = CHROMIUM_ARGS + tuple(extra_args)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._playwright: Any = None
        self._browsers: dict[bool, Any] = {}
        self._plans: dict[bool, LaunchPlan] = {}
        self._resolver = Resolver()
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

    def launch_plan(self, sandbox: bool | None = None) -> LaunchPlan:
        """How Chromium is (or will be) started for pages with `WebOptions(sandbox=sandbox)`.

        Raises:
            MissingToolError: Chromium is missing, or cannot be sandboxed as root (no setpriv or user).
        """
        self._start()
        wanted = sandbox_wanted(sandbox, self.sandbox)
        with self._lock:
            if wanted not in self._plans:
                self._plans[wanted] = plan_launch(self._executable or chromium_path(), wanted)
            return self._plans[wanted]

    def sandbox_report(self, sandbox: bool | None = None, timeout: float = 60.0) -> str:
        """Chromium's own account of its sandbox (the text of chrome://sandbox), for diagnostics.

        Raises:
            MissingToolError: The browser cannot start.
        """
        loop = self._start()
        return asyncio.run_coroutine_threadsafe(self._sandbox_text(sandbox), loop).result(timeout=timeout)

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
        self._resolver.close()
        with self._lock:
            self._plans = {}

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

    async def _ensure_browser(self, sandbox: bool) -> Any:
        """Launch Playwright and Chromium (in the `sandbox` mode) on first use, and again if it died."""
        browser = self._browsers.get(sandbox)
        if browser is not None and browser.is_connected():
            return browser
        try:
            from playwright.async_api import async_playwright
        except ImportError as exc:
            raise MissingToolError(
                "web pages need the 'playwright' package (the 'web' extra): pip install 'dse-search[web]'"
            ) from exc
        plan = await asyncio.get_running_loop().run_in_executor(None, self.launch_plan, sandbox)
        if self._playwright is None:
            self._playwright = await async_playwright().start()
        try:
            with executable_for(plan) as executable:
                browser = await self._playwright.chromium.launch(
                    executable_path=executable,
                    chromium_sandbox=plan.sandbox,
                    args=list(self._args),
                    timeout=LAUNCH_TIMEOUT * 1000,
                )
        except Exception as exc:
            raise launch_error(plan, exc) from exc
        if not plan.sandbox:
            warn_unsandboxed(plan)
        logger.debug("started %s", plan.describe())
        self._browsers[sandbox] = browser
        return browser

    async def _browser_for(self, sandbox: bool | None) -> Any:
        if self._slots is None or self._launching is None:
            self._slots, self._launching = asyncio.Semaphore(self.max_parallel), asyncio.Lock()
        async with self._launching:
            return await self._ensure_browser(sandbox_wanted(sandbox, self.sandbox))

    async def _render(self, source: str, url: str, options: WebOptions) -> Capture:
        browser = await self._browser_for(options.sandbox)
        assert self._slots is not None
        async with self._slots:
            return await capture(browser, source, url, options, self._resolver)

    async def _sandbox_text(self, sandbox: bool | None) -> str:
        browser = await self._browser_for(sandbox)
        context = await browser.new_context()
        try:
            page = await context.new_page()
            await page.goto("chrome://sandbox")
            return str(await page.inner_text("body"))
        finally:
            await context.close()

    async def _shutdown(self) -> None:
        browsers, playwright = list(self._browsers.values()), self._playwright
        self._browsers, self._playwright, self._slots, self._launching = {}, None, None, None
        for browser in browsers:
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
