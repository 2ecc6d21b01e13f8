"""Errors of the HTTP API as RFC 9457 problem documents (`application/problem+json`)."""

from __future__ import annotations

from typing import Any

PROBLEM_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
    409: "Conflict", 413: "Payload too large", 415: "Unsupported media type", 422: "Unprocessable content",
    429: "Too many requests", 500: "Internal server error", 502: "Bad gateway", 503: "Service unavailable",
}


class ApiError(Exception):
    """An error the API answers with a problem document.

    Args:
        status: HTTP status code.
        detail: What went wrong, for the user (names the input).
        title: Short summary (default: the status's phrase).
        headers: Extra response headers (e.g. WWW-Authenticate).
    """

    def __init__(self, status: int, detail: str, title: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail = int(status), detail
        self.title = title or _TITLES.get(self.status, "Error")
        self.headers = headers or {}


def problem(status: int, detail: str, title: str | None = None, **extra: Any) -> dict[str, Any]:
    """A problem document's body."""
    body: dict[str, Any] = {"type": "about:blank", "title": title or _TITLES.get(status, "Error"),
                            "status": int(status), "detail": detail}
    body.update(extra)
    return body
