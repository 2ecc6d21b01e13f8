"""The FastAPI application of `dse serve`: routes, RFC 9457 errors, the web page's files.

Routes live in `dse.serve.routes_read` (search, index, pages, maps) and
`dse.serve.routes_write` (uploads, deletes, jobs); this module puts them together with the error
handlers, the upload size limit and the static web page.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from dse.serve.problems import PROBLEM_TYPE, ApiError, problem
from dse.serve.service import ServeConfig, Service

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"


class UploadTooLarge(Exception):
    """The request body of an upload passed the server's limit."""


DRAIN_BYTES = 16 * 1024 * 1024  # an oversized upload read past the limit before the 413, at most


class _BodyLimit:
    """ASGI middleware: a body of `POST /v1/sources` over `limit` bytes ends the request with 413."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != "/v1/sources":
            await self.app(scope, receive, send)
            return
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # read (and drop) what the client is still sending, up to a bound, so that it
                    # gets the 413 instead of a broken pipe; a larger body has its connection cut
                    drained = 0
                    while message.get("more_body") and drained < DRAIN_BYTES:
                        message = await receive()
                        if message["type"] != "http.request":
                            break
                        drained += len(message.get("body", b""))
                    raise UploadTooLarge()
            return message

        await self.app(scope, limited, send)


def create_app(config: ServeConfig, service: Service | None = None) -> Any:
    """The application serving `config.index` (a `Service` is made unless one is given)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from dse import __version__
    from dse.serve import routes_read, routes_write

    holder: dict[str, Service] = {}
    if service is not None:
        holder["service"] = service

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202 - FastAPI's lifespan protocol
        if "service" not in holder:
            holder["service"] = Service(config)
        app.state.service = holder["service"]
        try:
            yield
        finally:
            if service is None:
                holder.pop("service").close()

    app = FastAPI(title="dse", version=__version__, lifespan=lifespan,
                  description="Find the right page in PDFs, slides and web pages: search an index of page screenshots.")
    if service is not None:
        app.state.service = service

    def respond(status: int, detail: str, title: str | None = None, headers: dict | None = None, **extra: Any):
        return JSONResponse(problem(status, detail, title, **extra), status_code=status, media_type=PROBLEM_TYPE,
                            headers=headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):  # noqa: ANN202
        return respond(exc.status, exc.detail, exc.title, exc.headers)

    @app.exception_handler(UploadTooLarge)
    async def _too_large(request: Request, exc: UploadTooLarge):  # noqa: ANN202
        return respond(413, f"the upload is larger than this server's limit of {config.max_upload_bytes} bytes "
                            "(dse serve --max-upload-mb)")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):  # noqa: ANN202
        errors = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))} for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
        return respond(422, detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):  # noqa: ANN202
        return respond(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):  # noqa: ANN202
        logger.exception("unexpected error serving %s %s", request.method, request.url.path)
        return respond(500, f"unexpected error ({type(exc).__name__}); the server log has the details")

    @app.get("/healthz", tags=["service"], summary="liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(routes_read.router)
    app.include_router(routes_write.router)

    @app.get("/", include_in_schema=False)
    def home() -> Any:
        page = STATIC_DIR / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html", headers={"Cache-Control": "no-cache"})
        return HTMLResponse("<!doctype html><title>dse</title><p>dse is running: see <a href='/docs'>/docs</a>.")

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return _BodyLimit(app, config.max_upload_bytes) if config.max_upload_bytes else app


def service_of(request: Any) -> Service:
    """The request's shared `Service`."""
    return request.app.state.service
