"""A real `dse serve` process on a loopback port, for tests, benchmarks and notebooks.

    with serve_index("my-index", token="a-long-token") as url:
        dse.Client(url).search("revenue", k=3)

The server runs as its own process (`python -m dse.cli.main serve`), exactly as a user starts
it; the context waits for `/healthz`, and stops it (SIGTERM, then SIGKILL) on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_index(
    index: str | Path, token: str | None = None, args: Sequence[str] = (), timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """Run `dse serve --index INDEX` on 127.0.0.1 and yield its base URL.

    Args:
        index: The index directory.
        token: Bearer token for writes (written to a temporary --token-file), or None.
        args: More `dse serve` flags.
        timeout: Seconds to wait for the server to answer /healthz.
        env: Extra environment variables for the server process.
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="dse-serve-") as tmp:
        cmd = [sys.executable, "-m", "dse.cli.main", "serve", "--index", str(index), "--host", "127.0.0.1",
               "--port", str(port), *args]
        if token is not None:
            token_file = Path(tmp) / "token"
            token_file.write_text(token, encoding="utf-8")
            cmd += ["--token-file", str(token_file)]
        log = open(Path(tmp) / "server.log", "w+b")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, proc, timeout, log)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            log.close()


def post_json(url: str, body: Any, path: str = "/v1/search", timeout: float = 60.0) -> tuple[int, Any]:
    """POST `body` as JSON to a server's `path`: (status, decoded answer), errors included.

    An error answer must be an RFC 9457 problem (`application/problem+json`): anything else
    raises AssertionError, so a test sees a stack trace served as a 500 for what it is.
    """
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the test's server
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        kind = exc.headers.get("content-type", "")
        if not kind.startswith("application/problem+json"):
            raise AssertionError(f"POST {path}: {exc.code} answered as {kind!r}, not a problem JSON") from exc
        return exc.code, json.loads(exc.read())


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float, log: object) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)  # type: ignore[attr-defined]
            raise RuntimeError(f"dse serve exited with {proc.returncode}: {log.read().decode()[-2000:]}")  # type: ignore[attr-defined]
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"dse serve did not answer at {url} within {timeout} s")
