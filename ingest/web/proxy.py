"""A filtering HTTP proxy that every request of a rendered page goes through.

Playwright's route interception does not see redirect hops (measured: the target of a 302 is
fetched without reaching the route handler), so address checks live here instead: Chromium's
browser context is pointed at this proxy (loopback included), which resolves each host itself,
refuses non-public addresses (see `ingest.web.safety`) and connects to the address it checked,
so a DNS answer cannot change between the check and the connection. Plain HTTP is forwarded one
request per connection; HTTPS and WebSockets go through CONNECT tunnels.

Host lookups go through a `Resolver` shared by the pages of one browser: a saved page asks for the
same unreachable host dozens of times (buzzfeed-1.html has 45 parser-blocking scripts on one
host), and one lookup per request (through a 6-thread default executor, with resolver timeouts of
5 s) kept its parser waiting past the settle time.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ingest.web.safety import BlockedAddressError, check_addresses, lookup

CONNECT_TIMEOUT = 15.0
HEAD_TIMEOUT = 30.0
_HOP_HEADERS = (b"proxy-connection", b"connection", b"keep-alive", b"proxy-authorization")


class Resolver:
    """Cached, de-duplicated host lookups on a thread pool of their own (one event loop's).

    Args:
        ttl: Seconds an answer is reused.
        negative_ttl: Seconds a failed lookup is reused.
        workers: Lookups run at once.
    """

    def __init__(self, ttl: float = 60.0, negative_ttl: float = 20.0, workers: int = 8) -> None:
        self.ttl, self.negative_ttl = ttl, negative_ttl
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cache: dict[tuple[str, int], tuple[float, asyncio.Future[list[str]]]] = {}

    async def addresses(self, host: str, port: int, allow_private: bool) -> list[str]:
        """The addresses `host` may be reached at (see `ingest.web.safety.allowed_addresses`).

        Raises:
            BlockedAddressError: Unresolvable, or a non-public address that is not allowed.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._cache = loop, {}
        key, now = (host.lower(), port), loop.time()
        entry = self._cache.get(key)
        if entry is None or entry[0] < now:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="dse-dns")
            future = loop.run_in_executor(self._pool, lookup, host, port)
            future.add_done_callback(lambda done: self._settle(key, done))
            self._cache[key] = (now + self.ttl, future)
        else:
            future = entry[1]
        return check_addresses(host, await asyncio.shield(future), allow_private)

    def _settle(self, key: tuple[str, int], future: asyncio.Future[list[str]]) -> None:
        """Mark a failed lookup's error as seen, and keep it for `negative_ttl` only."""
        if not future.cancelled() and future.exception() is not None and self._loop is not None:
            if key in self._cache and self._cache[key][1] is future:
                self._cache[key] = (self._loop.time() + self.negative_ttl, future)

    def close(self) -> None:
        """Stop the lookup threads (a later lookup starts new ones)."""
        pool, self._pool, self._cache = self._pool, None, {}
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class FilteringProxy:
    """One proxy per rendered page, with its own policy and its own record of refusals.

    Attributes:
        allow_private: Let the page reach loopback, private and link-local addresses.
        resolver: Host lookups (default: a new `Resolver`).
        refusals: `(host:port, reason)` of every connection refused or failed, in order.
    """

    allow_private: bool
    resolver: Resolver = field(default_factory=Resolver)
    refusals: list[tuple[str, str]] = field(default_factory=list)
    _server: asyncio.AbstractServer | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> str:
        """Listen on a free loopback port; return the proxy's URL."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    def reason_for(self, url: str) -> str | None:
        """Why the proxy refused (or could not reach) the host of `url`, if it did."""
        parts = urlsplit(url)
        if not parts.hostname:
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        wanted = f"{parts.hostname}:{port}"
        for target, reason in reversed(self.refusals):
            if target.lower() == wanted.lower():
                return reason
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            line, _, headers = head.partition(b"\r\n")
            method, target, version = line.decode("latin-1").split(" ", 2)
            if method.upper() == "CONNECT":
                host, _, port_text = target.rpartition(":")
                host, port, request = host.strip("[]"), int(port_text), b""
            else:
                parts = urlsplit(target)
                if parts.scheme != "http" or not parts.hostname:
                    await _reply(writer, 400, "proxy accepts absolute http URLs only")
                    return
                host, port = parts.hostname, parts.port or 80
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                request = f"{method} {path} {version}\r\n".encode("latin-1") + _close_headers(headers)
            up_reader, upstream = await self._connect(host, port, writer)
            if upstream is None:
                return
            self._writers.add(upstream)
            if request:
                upstream.write(request)
                await _pump(reader, upstream, up_reader, writer)
            else:
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await _tunnel(reader, writer, up_reader, upstream)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ValueError):
            pass
        except (ConnectionError, OSError):
            pass
        finally:
            for stream in (writer, upstream):
                if stream is not None:
                    self._writers.discard(stream)
                    stream.close()

    async def _connect(
        self, host: str, port: int, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader | None, asyncio.StreamWriter | None]:
        """Check the host, then connect to one of its checked addresses (or reply with an error)."""
        target = f"{host}:{port}"
        try:
            addresses = await self.resolver.addresses(host, port, self.allow_private)
        except BlockedAddressError as exc:
            self.refusals.append((target, str(exc)))
            await _reply(writer, 403, str(exc))
            return None, None
        last = ""
        for address in addresses:
            try:
                return await asyncio.wait_for(asyncio.open_connection(address, port), CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as exc:
                last = f"cannot connect to {address} port {port} ({exc or type(exc).__name__})"
        self.refusals.append((target, last))
        await _reply(writer, 502, last)
        return None, None


def _close_headers(headers: bytes) -> bytes:
    """Drop hop-by-hop headers and ask for the connection to close after one exchange."""
    lines = [line for line in headers.split(b"\r\n") if line]
    kept = [line for line in lines if line.split(b":", 1)[0].strip().lower() not in _HOP_HEADERS]
    return b"\r\n".join(kept + [b"Connection: close"]) + b"\r\n\r\n"


async def _reply(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    body = reason.encode("utf-8", "replace")
    title = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
    writer.write(
        f"HTTP/1.1 {status} {title}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(ConnectionError, OSError):
        await writer.drain()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()


async def _first_done(*coroutines: object) -> None:
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]  # type: ignore[arg-type]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def _tunnel(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    upstream: asyncio.StreamWriter,
) -> None:
    """Copy bytes both ways until either side closes."""
    await _first_done(_copy(reader, upstream), _copy(up_reader, writer))


async def _pump(
    reader: asyncio.StreamReader,
    upstream: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """Forward the request body and the response, telling the browser not to reuse the connection."""

    async def response() -> None:
        head = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        status, _, headers = head.partition(b"\r\n")
        writer.write(status + b"\r\n" + _close_headers(headers))
        await _copy(up_reader, writer)

    await _first_done(response(), _copy(reader, upstream))
