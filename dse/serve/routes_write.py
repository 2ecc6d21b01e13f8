"""Write routes of the API (bearer token): upload files or URLs to index, delete sources; jobs; source files."""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse

from dse.serve.problems import ApiError
from dse.serve.schemas import DeleteOut, JobOut
from dse.serve.service import Service

router = APIRouter()

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                "metadata": {"type": "string", "description": "JSON object recorded on every page"}},
                "required": ["file"]}},
            "application/json": {"schema": {"$ref": "#/components/schemas/UrlSource"}},
        },
    }
}


def _service(request: Request) -> Service:
    return request.app.state.service


def _check_source(source: str) -> str:
    """A source as a client names it: no NUL or control characters (they are never a path)."""
    if any(ord(c) < 32 for c in source):
        raise ApiError(422, "a source path or URL cannot contain control characters")
    return source


def _metadata(raw: Any) -> dict[str, Any] | None:
    from dse.storage.filters import check_metadata

    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ApiError(422, f"metadata is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ApiError(422, "metadata must be a JSON object, e.g. {\"collection\": \"legal\"}")
    try:
        return check_metadata(raw)
    except (ValueError, TypeError) as exc:
        raise ApiError(422, f"metadata: {exc}") from None


@router.post("/v1/sources", tags=["sources"], status_code=202, response_model=JobOut, openapi_extra=_UPLOAD_BODY,
             summary="index uploaded files (multipart) or a web page (JSON {url}) in a background job")
async def add_sources(request: Request) -> Any:
    from dse.serve.schemas import UrlSource

    svc = _service(request)
    svc.check_token(request.headers.get("authorization"))
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > svc.config.max_upload_bytes:
        raise ApiError(413, f"the upload ({length} bytes) is larger than this server's limit of "
                            f"{svc.config.max_upload_bytes} bytes (dse serve --max-upload-mb)")
    if ctype == "application/json":
        try:
            body = UrlSource.model_validate(await request.json())
        except ValueError as exc:
            raise ApiError(422, f"expected {{\"url\": \"https://...\"}}: {exc}") from None
        job = svc.jobs.submit([body.url], [body.url], _metadata(body.metadata))
        return _accepted(job)
    if ctype != "multipart/form-data":
        raise ApiError(415, "send files as multipart/form-data (field 'file') or a URL as JSON {\"url\": ...}")
    form = await request.form(max_files=100, max_fields=20)
    try:
        files = [f for f in form.getlist("file") if hasattr(f, "read")]
        if not files:
            raise ApiError(422, "no file in the upload: send each one in a multipart field named 'file'")
        meta = _metadata(form.get("metadata"))
        names, paths = [], []
        for upload in files:
            names.append(upload.filename or "upload")
            paths.append(await _store(svc, upload))
    finally:
        await form.close()
    job = svc.jobs.submit(names, paths, meta, cleanup=lambda: svc.drop_unindexed(paths))
    return _accepted(job)


async def _store(svc: Service, upload: Any) -> str:
    """Copy one uploaded file into the uploads folder; returns its path there."""
    fd, tmp = svc.new_upload()
    try:
        with os.fdopen(fd, "wb") as fh:
            while chunk := await upload.read(1 << 20):
                fh.write(chunk)
        return svc.keep_upload(tmp, upload.filename or "upload")
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _accepted(job: Any) -> JSONResponse:
    return JSONResponse(job.to_json(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


@router.delete("/v1/sources", tags=["sources"], response_model=DeleteOut, summary="delete a source by its path")
def delete_source(request: Request, source: str = Query(..., min_length=1, max_length=4096)) -> Any:
    svc = _service(request)
    svc.check_token(request.headers.get("authorization"))
    report = svc.retriever.delete(sources=[_check_source(source)])
    if report.missing:
        raise ApiError(404, f"no source {source!r} in this index")
    svc.drop_unindexed([source] if _inside(svc, source) else [])
    return {"pages": report.pages, "sources": report.sources}


def _inside(svc: Service, path: str) -> bool:
    try:
        root = os.path.realpath(svc.uploads)
        return os.path.commonpath([os.path.realpath(path), root]) == root
    except ValueError:
        return False


@router.get("/v1/sources", tags=["sources"], summary="the live sources: path, kind, pages, when added")
def list_sources(request: Request) -> Any:
    return {"sources": _service(request).index.sources()}


@router.get("/v1/sources/file", tags=["sources"], summary="the original file of an indexed local source",
            response_class=FileResponse)
def source_file(request: Request, source: str = Query(..., min_length=1, max_length=4096)) -> Any:
    path = _service(request).source_file(_check_source(source))
    return FileResponse(path, filename=path.name, content_disposition_type="inline")


@router.get("/v1/jobs", tags=["jobs"], summary="the recent indexing jobs, newest first")
def jobs(request: Request) -> Any:
    return {"jobs": [j.to_json() for j in _service(request).jobs.recent()]}


@router.get("/v1/jobs/{job_id}", tags=["jobs"], response_model=JobOut, summary="an indexing job")
def job(job_id: str, request: Request) -> Any:
    found = _service(request).jobs.get(job_id)
    if found is None:
        raise ApiError(404, f"no job {job_id!r} (jobs are kept until the server restarts)")
    return found.to_json()
