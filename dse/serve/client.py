"""`dse.Client`: the HTTP API from Python, with `Retriever.search`'s signature and `Hit` results.

Code written against a local `Retriever` moves to a server unchanged::

    searcher = dse.Client("http://127.0.0.1:8000")   # or dse.Retriever.open("my-index")
    for hit in searcher.search("which quarter had the highest margin", k=5):
        print(hit.rank, hit.score, hit.source, hit.page)

Standard library only (urllib), so it runs where dse's heavy dependencies are not wanted.
"""

from __future__ import annotations

import base64
import io
import json
import mimetypes
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from dse.retrieve.results import Hit


class RemoteError(RuntimeError):
    """The server answered with an error (its RFC 9457 problem document).

    Attributes:
        status: HTTP status code.
        title: The problem's title.
        detail: What went wrong.
    """

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail = status, title, detail


class Client:
    """A `dse serve` server.

    Args:
        url: The server, e.g. "http://127.0.0.1:8000".
        token: Bearer token for writes (add, delete).
        timeout: Seconds to wait for an answer.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    # ------------------------------------------------------------------ search
    def search(self, query: Any, k: int = 10, **options: Any) -> list[Hit]:
        """The top-k pages for one query, best first (`options`: those of `search_many`).

        `query`: a text, or for indexes whose encoder takes them (dse-qwen2, gme-qwen2,
        qwen3-vl-embedding) a PIL image or an (image, text) pair, as `Retriever.search`.
        """
        if isinstance(query, str):
            return self.search_many([query], k, **options)[0]
        image, text = query if isinstance(query, tuple) else (query, None)
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")
        body: dict[str, Any] = {"image": base64.b64encode(buf.getvalue()).decode("ascii"), "query": text, "k": k,
                                "snippets": False, **{key: v for key, v in options.items() if v is not None}}
        return [_hit(h) for h in self._json("POST", "/v1/search", body)["hits"]]

    def search_many(
        self, queries: Sequence[str], k: int = 10, *, mode: str | None = None, fusion: str = "rrf",
        rrf_k: float = 60.0, weight: float = 1.0, rerank: str | None = None, alpha: float = 0.5, depth: int = 50,
        where: Mapping[str, Any] | None = None, rewrite: str | None = None,
    ) -> list[list[Hit]]:
        """The top-k pages for each query, as `Retriever.search_many`.

        A reranker and a rewriter are named (`rerank="colqwen2"`, `rewrite="llm"`): the server's
        own, those `dse serve --rerank / --rewrite` started it with (`info()`).
        """
        if isinstance(queries, str):
            raise TypeError("search_many takes a list of queries; use search() for one")
        if not queries:
            return []
        body: dict[str, Any] = {"queries": list(queries), "k": k, "mode": mode, "fusion": fusion, "rrf_k": rrf_k,
                                "weight": weight, "alpha": alpha, "depth": depth, "snippets": False}
        if rerank is not None:
            body["rerank"] = rerank
        if where is not None:
            body["where"] = dict(where)
        if rewrite is not None:
            if not isinstance(rewrite, str):
                raise TypeError(f"rewrite is a rewriter's name on the server (e.g. 'prf'), got {type(rewrite).__name__}")
            body["rewrite"] = rewrite
        out = self._json("POST", "/v1/search", body)
        return [[_hit(h) for h in result["hits"]] for result in out["results"]]

    # ------------------------------------------------------------------ pages
    def page(self, page_id: str) -> dict[str, Any]:
        """A page's source, number, text and metadata."""
        return self._json("GET", f"/v1/pages/{quote(page_id, safe='')}")

    def page_text(self, page_id: str) -> str:
        """The text layer of a page."""
        return str(self.page(page_id)["text"])

    def page_image(self, page_id: str) -> Any:
        """The stored image of a page (PIL, RGB)."""
        from PIL import Image

        data, _ = self._request("GET", f"/v1/pages/{quote(page_id, safe='')}/image")
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB")

    def info(self) -> dict[str, Any]:
        """The index: manifest, counts, modes."""
        return self._json("GET", "/v1/index")

    # ------------------------------------------------------------------ writes
    def add(self, sources: Iterable[str | Path] | str | Path, metadata: Mapping[str, Any] | None = None,
            wait: bool = True, timeout: float = 600.0) -> dict[str, Any]:
        """Upload files (or submit http(s) URLs) to index; returns the job (finished when `wait`)."""
        if isinstance(sources, (str, Path)):
            sources = [sources]
        sources = [str(s) for s in sources]
        urls = [s for s in sources if s.startswith(("http://", "https://"))]
        files = [s for s in sources if s not in urls]
        jobs = [self._json("POST", "/v1/sources", {"url": u, "metadata": dict(metadata) if metadata else None})
                for u in urls]
        if files:
            body, ctype = _multipart(files, metadata)
            data, _ = self._request("POST", "/v1/sources", body, {"Content-Type": ctype})
            jobs.append(json.loads(data))
        if wait:
            jobs = [self.wait(j["id"], timeout) for j in jobs]
        return jobs[0] if len(jobs) == 1 else {"jobs": jobs}

    def job(self, job_id: str) -> dict[str, Any]:
        """An indexing job's state."""
        return self._json("GET", f"/v1/jobs/{quote(job_id, safe='')}")

    def wait(self, job_id: str, timeout: float = 600.0) -> dict[str, Any]:
        """Poll a job until it ends (TimeoutError after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["finished"] is not None:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout} s")
            time.sleep(0.1)

    def delete(self, sources: Iterable[str]) -> dict[str, int]:
        """Delete sources by their paths as indexed; returns the pages and sources deleted."""
        if isinstance(sources, str):
            raise TypeError("delete takes a list of sources")
        total = {"pages": 0, "sources": 0}
        for source in sources:
            out = self._json("DELETE", "/v1/sources?" + urlencode({"source": source}))
            total = {k: total[k] + int(out[k]) for k in total}
        return total

    # ------------------------------------------------------------------ transport
    def _json(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        raw, _ = self._request(method, path, data, {"Content-Type": "application/json"} if data else {})
        return json.loads(raw)

    def _request(self, method: str, path: str, data: bytes | None = None,
                 headers: Mapping[str, str] | None = None) -> tuple[bytes, Any]:
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=dict(headers or {}))
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - the user's server
                return resp.read(), resp.headers
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                body = json.loads(raw)
                raise RemoteError(exc.code, str(body.get("title", exc.reason)), str(body.get("detail", ""))) from None
            except (ValueError, AttributeError):
                raise RemoteError(exc.code, str(exc.reason), raw[:300].decode("utf-8", "replace")) from None


def _hit(h: Mapping[str, Any]) -> Hit:
    return Hit(h["page_id"], h["source"], int(h["page"]), float(h["score"]), int(h["rank"]), h.get("metadata") or {})


def _multipart(files: Sequence[str], metadata: Mapping[str, Any] | None) -> tuple[bytes, str]:
    """A multipart/form-data body with each file in a field `file` (and `metadata` as JSON)."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for path in files:
        name = Path(path).name.replace('"', "_")
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                     f"Content-Type: {ctype}\r\n\r\n".encode() + Path(path).read_bytes() + b"\r\n")
    if metadata:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n'
                     f"{json.dumps(dict(metadata))}\r\n".encode())
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
