"""Read routes of the API: the index, search, pages, their images and similarity maps."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from dse.serve.problems import ApiError
from dse.serve.schemas import (
    MAX_IMAGE_QUERY_BYTES,
    MAX_IMAGE_QUERY_PIXELS,
    MAX_QUERY_CHARS,
    BatchOut,
    PageOut,
    SearchOut,
    SearchRequest,
)
from dse.serve.service import Service, check_page_id

router = APIRouter()


def _service(request: Request) -> Service:
    return request.app.state.service


def source_url(source: str, page: int, kind: str | None) -> str | None:
    """Where a browser opens the source: the URL of a web page, or the served file (PDFs at the page)."""
    if source.startswith(("http://", "https://")):
        return source
    url = f"/v1/sources/file?source={quote(source, safe='')}"
    return f"{url}#page={page}" if kind == "pdf" else url


def _name(source: str) -> str:
    return source if source.startswith(("http://", "https://")) else Path(source).name


@router.get("/v1/index", tags=["index"], summary="the index: manifest, counts, supported modes")
def index_info(request: Request) -> dict[str, Any]:
    svc = _service(request)
    info = svc.retriever.info()
    kind = svc.index.manifest.kind
    modes = ["text"] if kind == "text" else ["visual", "text", "hybrid"]
    fields = svc.index.metadata_keys()
    return {"manifest": info, "pages": info["pages"], "sources": info["sources"], "kind": kind, "modes": modes,
            "default_mode": modes[0], "explain": kind == "multi", "metadata_fields": fields,
            "writable": bool(svc.config.token), "rerankers": sorted(getattr(svc, "rerankers", {}) or {}),
            "rewriters": sorted(getattr(svc, "rewriters", {}) or {}),
            "max_k": svc.config.max_k, "ocr": info["ocr"]}


@router.post("/v1/search", tags=["search"], summary="search the index", response_model=SearchOut | BatchOut)
async def search(body: SearchRequest, request: Request) -> Any:
    # the work runs on the service's few search threads (`--search-threads`), not on the pool of
    # 40 that the other routes share: more threads than cores only fight over the GIL
    import anyio

    svc = _service(request)
    rewrites = None
    if body.rewrite is not None:  # an LLM's seconds run on the shared pool, never holding a search thread
        texts = [body.query] if body.query is not None else list(body.queries or [])
        _check_lengths(svc, texts)
        rewrites = await anyio.to_thread.run_sync(_rewrite, svc, body, texts)
    return await svc.run_search(_search, svc, body, rewrites)


def _check_lengths(svc: Service, texts: list[str]) -> None:
    """422 for a query longer than this server takes."""
    if any(len(q) > MAX_QUERY_CHARS or len(q) > svc.config.max_query_chars for q in texts):
        raise ApiError(422, f"a query is longer than {min(MAX_QUERY_CHARS, svc.config.max_query_chars)} characters")


def _search(svc: Service, body: SearchRequest, rewrites: Any = None) -> Response:
    """A search request's answer (on a search thread); `rewrites`: the queries' rewrites, made before."""
    from dse.encoders.hub import ModelLoadError
    from dse.encoders.query_length import fit_encoder_queries
    from dse.extras import MissingExtraError
    from dse.rewrite.summary import summarize
    from dse.storage.manifest import EncoderMismatchError

    if body.image is not None:
        if body.queries is not None:
            raise ApiError(422, "an image query is one query: give 'image' (and optionally 'query'), not 'queries'")
    elif (body.query is None) == (body.queries is None):
        raise ApiError(422, "give either 'query' (one text) or 'queries' (a list of texts), or 'image'")
    texts = [body.query] if body.query is not None else list(body.queries or [])
    if body.image is not None:
        picture = _image_query(body.image)
        queries: list[Any] = [picture if body.query is None else (picture, body.query)]
        texts = [body.query or ""]
    else:
        queries = list(texts)
    _check_lengths(svc, texts)
    if body.k > svc.config.max_k:
        raise ApiError(422, f"k={body.k} is over this server's limit of {svc.config.max_k} (dse serve --max-k)")
    options: dict[str, Any] = {"mode": body.mode, "fusion": body.fusion, "weight": body.weight, "rrf_k": body.rrf_k,
                               "where": body.where}
    if body.rerank is not None:
        reranker = (getattr(svc, "rerankers", {}) or {}).get(body.rerank)
        if reranker is None:
            raise ApiError(422, f"rerank {body.rerank!r} is not offered by this server (dse serve --rerank ENCODER)")
        options.update(rerank=reranker, alpha=body.alpha, depth=max(body.depth, body.k))
    mode = body.mode or ("text" if svc.index.manifest.kind == "text" else "visual")
    started = time.perf_counter()
    if rewrites is not None:
        queries = [r.text for r in rewrites]
    try:
        if body.image is None and mode != "text" and not getattr(svc.retriever.encoder, "truncate_queries", True):
            # the long-query policy here, in this request's thread: a query too long is this
            # request's 422, never an error for the others its batch would be encoded with
            fit_encoder_queries(svc.retriever.encoder, queries)
        if body.image is None and mode != "text" and svc.config.query_cache > 0:
            # encoded before taking a search slot, so that queries arriving together share one
            # encoder batch; the search below finds them in the batcher's cache
            with svc.batcher.expecting(len(queries)):
                svc.batcher(queries)
        with svc.search_slots:  # at most max_searches at once: the rest queue here, not in the scorers
            results = svc.retriever.search_many(queries, body.k, **options)
    except (ModelLoadError, MissingExtraError, OSError) as exc:
        raise ApiError(503, f"the index's encoder cannot be loaded: {exc}") from None
    except EncoderMismatchError as exc:
        raise ApiError(409, str(exc)) from None
    except (ValueError, TypeError, KeyError) as exc:
        raise ApiError(422, str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)) from None
    took = (time.perf_counter() - started) * 1000
    out = [{"query": q, "mode": mode, "took_ms": took, "hits": _hits(svc, hits, q, body.snippets)}
           for q, hits in zip(texts, results)]
    for answer, rewrite in zip(out, rewrites or []):  # not its identity: that may name an internal endpoint
        answer["rewrite"] = {k: v for k, v in rewrite.to_json().items() if k != "identity"}
        answer["rewritten"] = summarize(rewrite).to_json()
    # the dicts are the response models' JSON already: encoded once here, not validated and
    # re-encoded by FastAPI (a third of a small search's time); the models document the API
    one = body.query is not None or body.image is not None
    payload = out[0] if one else {"mode": mode, "took_ms": took, "results": out}
    return Response(json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(),
                    media_type="application/json")


def _rewrite(svc: Service, body: SearchRequest, texts: list[str]) -> Any:
    """The request's queries rewritten by the rewriter it names (None: no rewrite asked).

    422 for a rewriter this server does not offer or an image query; 502 when the rewriter's
    model or endpoint fails (`RewriteError`).
    """
    from dse.retrieve.rewriting import rewrite_queries
    from dse.rewrite import RewriteError

    if body.rewrite is None:
        return None
    offered = getattr(svc, "rewriters", {}) or {}
    rewriter = offered.get(body.rewrite)
    if rewriter is None:
        names = ", ".join(sorted(offered)) or "none"
        raise ApiError(422, f"rewrite {body.rewrite!r} is not offered by this server (offered: {names}; start it "
                            f"with dse serve --rewrite {body.rewrite} ...)")
    if body.image is not None:
        raise ApiError(422, "'rewrite' applies to text queries only, not to an image query")
    try:
        return rewrite_queries(texts, rewriter, svc.index, body.where)
    except RewriteError as exc:
        raise ApiError(502, f"rewrite {body.rewrite!r} failed: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise ApiError(422, str(exc)) from None


def _image_query(encoded: str) -> Any:
    """The picture of an image query: base64 decoded, checked, as RGB (422 naming what is wrong)."""
    import base64
    import binascii

    from PIL import Image, UnidentifiedImageError

    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "'image' is not base64 (send the picture's bytes, base64-encoded)") from None
    if len(data) > MAX_IMAGE_QUERY_BYTES:
        raise ApiError(413, f"the query picture is {len(data)} bytes, over the limit of {MAX_IMAGE_QUERY_BYTES}")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_IMAGE_QUERY_PIXELS:
                raise ApiError(422, f"the query picture is {img.width} x {img.height} pixels, over the limit of "
                                    f"{MAX_IMAGE_QUERY_PIXELS:,}")
            img.load()
            return img.convert("RGB")
    except ApiError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ApiError(422, f"'image' is not a picture dse can read (PNG, JPEG, WebP): {exc}") from None


def _hits(svc: Service, hits: list[Any], query: str, snippets: bool) -> list[dict[str, Any]]:
    """The hits of one query as JSON objects, with their snippets (a page deleted since: none)."""
    found = svc.snippets.many([h.page_id for h in hits], query) if snippets and hits else [None] * len(hits)
    return [_hit(h, s) for h, s in zip(hits, found)]


def _hit(hit: Any, found: Any) -> dict[str, Any]:
    kind = hit.metadata.get("kind") if isinstance(hit.metadata, dict) else None
    text, marks = (found.text, found.highlights) if found is not None else ("", ())
    return {"page_id": hit.page_id, "source": hit.source, "source_name": _name(hit.source), "page": hit.page,
            "score": float(hit.score), "rank": hit.rank, "image_url": f"/v1/pages/{hit.page_id}/image",
            "source_url": source_url(hit.source, hit.page, kind), "snippet": text,
            "highlights": [list(m) for m in marks], "metadata": dict(hit.metadata)}


def _record(svc: Service, page_id: str) -> Any:
    check_page_id(page_id)
    try:
        return svc.index.page(page_id)
    except KeyError:
        raise ApiError(404, f"no page {page_id!r} in this index") from None


@router.get("/v1/pages/{page_id}", tags=["pages"], summary="a page: source, number, text, metadata",
            response_model=PageOut)
def page(page_id: str, request: Request) -> Any:
    svc = _service(request)
    rec = _record(svc, page_id)
    kind = rec.metadata.get("kind") if isinstance(rec.metadata, dict) else None
    return {"page_id": rec.page_id, "source": rec.source, "source_name": _name(rec.source), "page": rec.page,
            "text": rec.text, "metadata": dict(rec.metadata), "image_url": f"/v1/pages/{rec.page_id}/image",
            "source_url": source_url(rec.source, rec.page, kind)}


@router.get("/v1/pages/{page_id}/image", tags=["pages"], summary="the stored page image (JPEG)",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
def page_image(request: Request, page_id: str,
               max_side: int | None = Query(None, ge=16, le=4096, description="downscale to this long side")) -> Any:
    from dse.storage.layout import UnsafeIndexPathError

    svc = _service(request)
    check_page_id(page_id)
    etag = f'"{page_id}-{max_side or 0}"'  # a page id names its bytes: the image never changes
    headers = {"ETag": etag, "Cache-Control": "public, max-age=86400"}
    try:  # images/<id>.jpg inside the index, opened without following symbolic links
        with svc.index.open_page_image(page_id) as fh:
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers=headers)
            data = fh.read()
    except KeyError:
        raise ApiError(404, f"no page {page_id!r} in this index") from None
    except FileNotFoundError:
        raise ApiError(404, f"page {page_id!r} has no stored image (the index was built with image_size=0, "
                            "or the file is gone)") from None
    except UnsafeIndexPathError as exc:
        raise ApiError(409, str(exc)) from None
    if max_side is None:
        return Response(data, media_type="image/jpeg", headers=headers)
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGB")
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=82)
    return Response(buf.getvalue(), media_type="image/jpeg", headers=headers)


def _multi(svc: Service) -> Any:
    if svc.index.manifest.kind != "multi":
        raise ApiError(409, f"similarity maps need a multi-vector index (ColPali family); this index is "
                            f"{svc.index.manifest.kind}-vector ({svc.index.manifest.encoder.get('name')})")
    try:
        return svc.retriever.encoder
    except Exception as exc:  # noqa: BLE001 - the model cannot load here
        raise ApiError(503, f"the index's encoder cannot be loaded: {exc}") from None


@router.get("/v1/explain/tokens", tags=["pages"], summary="the query tokens a similarity map is indexed by")
def explain_tokens(request: Request, query: str = Query(..., min_length=1, max_length=MAX_QUERY_CHARS)) -> Any:
    from dse.retrieve.explain import query_tokens

    return {"query": query, "tokens": query_tokens(_multi(_service(request)), query)}


@router.get("/v1/pages/{page_id}/explain", tags=["pages"], summary="similarity map of a query over a page (PNG)",
            response_class=Response, responses={200: {"content": {"image/png": {}}}})
def explain_page(request: Request, page_id: str, query: str = Query(..., min_length=1, max_length=MAX_QUERY_CHARS),
                 token: str = Query("all", pattern=r"^(all|[0-9]{1,4})$")) -> Any:
    from dse.storage.layout import UnsafeIndexPathError
    from dse.retrieve.explain import token_maps

    svc = _service(request)
    _record(svc, page_id)
    encoder = _multi(svc)
    maps = svc.similarity_maps.get((page_id, query))
    if maps is None:
        try:
            image = svc.index.page_image(page_id)
        except (KeyError, FileNotFoundError) as exc:
            raise ApiError(404, f"page {page_id!r} has no stored image to explain: {exc}") from None
        except UnsafeIndexPathError as exc:
            raise ApiError(409, str(exc)) from None
        try:
            maps = (token_maps(encoder, query, image), image.size)  # (q_tokens, rows, cols)
        except ValueError as exc:
            raise ApiError(409, str(exc)) from None
        svc.similarity_maps.put((page_id, query), maps)
    per_token, size = maps
    if token == "all":
        heat = per_token.sum(axis=0)  # (rows, cols)
    elif int(token) < len(per_token):
        heat = per_token[int(token)]  # (rows, cols)
    else:
        raise ApiError(422, f"token {token} is out of range: the query has {len(per_token)} tokens")
    return Response(_heat_png(heat, size), media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def _heat_png(heat: Any, size: tuple[int, int]) -> bytes:
    """A transparent PNG of `size` with the heat drawn in (blue: weak, red: strong)."""
    import numpy as np
    from PIL import Image

    lo, hi = float(heat.min()), float(heat.max())
    norm = ((heat - lo) / (hi - lo + 1e-10)).astype(np.float32)  # (rows, cols) in [0, 1]
    grid = Image.fromarray(norm, mode="F").resize(size, Image.Resampling.BILINEAR)
    h = np.clip(np.asarray(grid, dtype=np.float32), 0, 1)  # (height, width)
    colour = np.stack([np.clip(1.5 - np.abs(4 * h - c), 0, 1) for c in (3, 2, 1)], axis=-1)  # (height, width, 3)
    alpha = (0.15 + 0.6 * h)[..., None]  # (height, width, 1)
    rgba = np.concatenate([colour, alpha], axis=-1)  # (height, width, 4)
    buf = io.BytesIO()
    Image.fromarray(np.round(rgba * 255).astype(np.uint8), mode="RGBA").save(buf, format="PNG")
    return buf.getvalue()
