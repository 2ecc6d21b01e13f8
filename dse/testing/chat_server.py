"""A small OpenAI-compatible `/v1/chat/completions` server on 127.0.0.1, for the `llm` rewriter's tests.

    with ChatServer() as server:
        load_rewriter("llm", url=server.url, model="m").rewrite("why?")
        server.requests[-1]   # (path, headers (lower-case names), JSON body) of each request

It answers each chat with a fixed reasoning text built from the user message's first line
(`reply_for`), so a test knows what the rewriter searches. `mode` makes it fail on purpose:
"500" (an HTTP error), "bad-json" (an HTML body), "no-choices" (JSON without an answer).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def reply_for(user_message: str) -> str:
    """What the server answers to a user message."""
    return f"reasoning: {user_message.splitlines()[0] if user_message else ''} needs costs and prices"


class ChatServer:
    """A real HTTP server in a thread (stdlib `http.server`), listening on a free loopback port."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.mode = "ok"
        self.delay = 0.0  # seconds each answer waits (a slow model)
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw)
                with outer._lock:
                    outer.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if outer.delay:
                    time.sleep(outer.delay)
                if outer.mode == "500":
                    self._send(500, b'{"error": "boom"}')
                elif outer.mode == "bad-json":
                    self._send(200, b"<html>not json</html>")
                elif outer.mode == "no-choices":
                    self._send(200, b'{"object": "chat.completion", "choices": []}')
                else:
                    text = reply_for(body["messages"][-1]["content"])
                    answer = {"object": "chat.completion", "model": body.get("model"),
                              "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
                    self._send(200, json.dumps(answer).encode())

            def _send(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, name="chat-server", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "ChatServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
