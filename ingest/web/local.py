"""Which local files a local `.html` page may load, and handing them to the browser.

Every `file:` request of a page (the page itself, frames, images, stylesheets, scripts, fonts,
media, and navigations) is intercepted: dse reads the file itself and fulfils the request, so the
browser (which may run as an unprivileged user, see `ingest.web.sandbox`) never opens a local
file, and no file outside the policy is ever read:

- `"folder"` (default): the page and files in its own folder and below (a saved page's
  `page_files/`), after resolving symbolic links;
- `"none"`: the page only.

Scripted reads of local files (`fetch`, `XMLHttpRequest`, `EventSource`) are refused under
both policies, so a page's scripts cannot read a file and send it anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

LOCAL_POLICIES = ("folder", "none")
RENDERED_TYPES = frozenset({"document", "stylesheet", "image", "media", "font", "script", "texttrack"})
"""Request types a local page may load from disk (what is drawn, not what scripts can read)."""
MAX_LOCAL_BYTES = 256 * 1024 * 1024
"""A local subresource larger than this is refused."""


def file_url_path(url: str) -> Path:
    """The filesystem path of a `file:` URL, resolved (symbolic links followed)."""
    return Path(unquote(urlsplit(url).path)).resolve()


def local_refusal(path: Path, page: Path, policy: str, resource_type: str) -> str | None:
    """Why `path` may not be loaded by the local page `page` (None: it may).

    Args:
        path: The requested file, resolved.
        page: The page's own file, resolved.
        policy: `"folder"` or `"none"`.
        resource_type: Playwright's request type (`"image"`, `"fetch"`, ...).
    """
    if path == page and resource_type == "document":
        return None
    if resource_type not in RENDERED_TYPES:
        return f"refused: scripts may not read local files ({resource_type})"
    if policy == "none":
        return "refused: this page may not load other local files (local_files='none')"
    root = page.parent
    if path != root and root not in path.parents:
        return f"refused: outside the page's folder {root}"
    return None


def _content_type(path: Path) -> str:
    if path.suffix.lower() in (".html", ".htm"):
        return "text/html"
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _read(path: Path) -> bytes | str:
    """The file's bytes, or why it cannot be served."""
    try:
        if not path.is_file():
            return "refused: not a file"
        if path.stat().st_size > MAX_LOCAL_BYTES:
            return f"refused: larger than {MAX_LOCAL_BYTES >> 20} MB"
        return path.read_bytes()
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"


def local_file_handler(
    page: Path, policy: str, refusals: list[tuple[str, str]]
) -> Callable[[Any], Awaitable[None]]:
    """A Playwright route handler for `file:` URLs that serves the files `policy` allows.

    Args:
        page: The local page's file (resolved).
        policy: `"folder"` or `"none"`.
        refusals: Receives `(url, reason)` of every refused request.

    Returns:
        The handler (it always ends the route: a request left pending would stall the page).
    """
    if policy not in LOCAL_POLICIES:
        raise ValueError(f"local_files must be one of {LOCAL_POLICIES}, got {policy!r}")

    async def handle(route: Any) -> None:
        url = route.request.url
        try:
            path = file_url_path(url)
            reason = local_refusal(path, page, policy, route.request.resource_type)
            body = await asyncio.get_running_loop().run_in_executor(None, _read, path) if reason is None else reason
            if isinstance(body, bytes):
                await route.fulfill(status=200, body=body, headers={"Content-Type": _content_type(path)})
                return
            refusals.append((url, body))
        except Exception as exc:  # noqa: BLE001 - any failure refuses the request, never stalls it
            refusals.append((url, f"refused: {type(exc).__name__}"))
        with contextlib.suppress(Exception):
            await route.abort("accessdenied")

    return handle
