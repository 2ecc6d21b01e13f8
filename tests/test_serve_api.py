"""`dse serve` as users run it: a real server process on a loopback port, spoken to over HTTP."""

from __future__ import annotations

import io
import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import dse
from dse.testing.server import serve_index

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "corpus"
TOKEN = "test-token-0123456789"
QUERIES = ["oven temperature for bread", "revenue by segment", "peregrine falcon", "solar panel inverter",
           "harbour ferry timetable", "zzzz nothing matches this"]


def _http(url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None,
          raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request; HTTP errors are returned, not raised."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    hdrs = dict(headers or {})
    if body is not None:
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def _problem(status: int, headers: dict[str, str], body: bytes, expected: int) -> dict[str, Any]:
    assert status == expected, body
    assert headers["content-type"].startswith("application/problem+json")
    doc = json.loads(body)
    assert doc["status"] == expected and doc["title"] and doc["detail"]
    assert "Traceback" not in doc["detail"]
    return doc


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = "dse-test-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _wait_job(url: str, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, body = _http(f"{url}/v1/jobs/{job_id}")
        assert status == 200
        job = json.loads(body)
        if job["finished"] is not None:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


@pytest.fixture(scope="module")
def text_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-text")
    corpus = root / "corpus"
    shutil.copytree(EXAMPLES, corpus)
    with dse.Retriever.create(root / "idx", dse.load_encoder("bm25")) as r:
        assert r.add([corpus], workers=0).pages == 11
    return root / "idx"


@pytest.fixture(scope="module")
def server(text_index: Path) -> Iterator[str]:
    with serve_index(text_index, token=TOKEN, args=["--max-upload-mb", "0.5", "--max-k", "50"]) as url:
        yield url


def test_health_openapi_and_docs(server: str) -> None:
    assert json.loads(_http(f"{server}/healthz")[2]) == {"status": "ok"}
    status, _, body = _http(f"{server}/openapi.json")
    spec = json.loads(body)
    assert status == 200 and {"/v1/search", "/v1/pages/{page_id}/image", "/v1/sources", "/v1/jobs/{job_id}"} <= set(
        spec["paths"])
    status, headers, body = _http(f"{server}/docs")
    assert status == 200 and headers["content-type"].startswith("text/html")
    info = json.loads(_http(f"{server}/v1/index")[2])
    assert info["pages"] == 11 and info["sources"] == 5 and info["kind"] == "text" and info["modes"] == ["text"]
    assert info["writable"] is True and info["manifest"]["encoder"]["name"] == "bm25"


def test_search_equals_the_retriever(server: str, text_index: Path) -> None:
    with dse.Retriever.open(text_index) as r:
        for query in QUERIES:
            for k in (1, 3, 10):
                status, _, body = _http(f"{server}/v1/search", "POST", {"query": query, "k": k})
                assert status == 200, body
                got = json.loads(body)
                want = r.search(query, k)
                assert [(h["page_id"], h["rank"]) for h in got["hits"]] == [(h.page_id, h.rank) for h in want]
                assert [h["score"] for h in got["hits"]] == pytest.approx([h.score for h in want])
                assert got["query"] == query and got["mode"] == "text"
        where = {"source": {"glob": "*acme*"}}
        got = json.loads(_http(f"{server}/v1/search", "POST", {"queries": QUERIES[:3], "k": 5, "where": where})[2])
        want = r.search_many(QUERIES[:3], 5, where=where)
        assert [[h["page_id"] for h in res["hits"]] for res in got["results"]] == [[h.page_id for h in w] for w in want]
        client = dse.Client(server)
        assert client.search_many(QUERIES, 4) == r.search_many(QUERIES, 4)
        assert client.search(QUERIES[0], 2, where={"kind": "pdf"}) == r.search(QUERIES[0], 2, where={"kind": "pdf"})


def test_hits_carry_what_the_page_shows(server: str) -> None:
    hit = json.loads(_http(f"{server}/v1/search", "POST", {"query": "oven temperature", "k": 1})[2])["hits"][0]
    assert hit["source_name"] == "sourdough-baking.pdf" and hit["page"] == 2
    assert hit["image_url"] == f"/v1/pages/{hit['page_id']}/image"
    marked = [hit["snippet"][a:b].lower() for a, b in hit["highlights"]]
    assert marked and all(word.startswith(("oven", "temperatur")) for word in marked)
    status, headers, body = _http(server + hit["source_url"].split("#")[0])
    assert status == 200 and body[:5] == b"%PDF-" and hit["source_url"].endswith("#page=2")
    page = json.loads(_http(f"{server}/v1/pages/{hit['page_id']}")[2])
    assert page["page"] == 2 and "oven" in page["text"].lower()
    status, headers, body = _http(server + hit["image_url"])
    assert status == 200 and headers["content-type"] == "image/jpeg" and "etag" in headers
    assert "max-age" in headers["cache-control"]
    assert _http(server + hit["image_url"], headers={"If-None-Match": headers["etag"]})[0] == 304
    small = Image.open(io.BytesIO(_http(server + hit["image_url"] + "?max_side=64")[2]))
    assert max(small.size) == 64


@pytest.mark.parametrize("path", [
    "/v1/pages/..%2F..%2F..%2Fetc%2Fpasswd/image", "/v1/pages/%2Fetc%2Fpasswd", "/v1/pages/..%2Fmanifest.json",
    "/v1/pages/ed395669a8ba7939-p00002%2F..%2F..%2Fmanifest.json/image", "/v1/pages/ED395669A8BA7939-p00002",
    "/v1/pages/....//....//etc/passwd/image", "/v1/pages/%252e%252e%252fmanifest.json/image",
    "/v1/sources/file?source=%2Fetc%2Fpasswd", "/v1/sources/file?source=..%2F..%2F..%2Fetc%2Fpasswd",
    "/v1/sources/file?source=manifest.json", "/static/..%2F..%2Fservice.py", "/static/../app.py",
])
def test_traversal_attempts_never_reach_a_file(server: str, path: str) -> None:
    status, headers, body = _http(server + path)
    assert status in (404, 422), (path, status)
    assert b"root:" not in body and b"def " not in body and b"encoder" not in body
    assert headers["content-type"].startswith(("application/problem+json", "application/json"))


def test_bad_requests_are_problem_documents(server: str) -> None:
    search = f"{server}/v1/search"
    _problem(*_http(search, "POST", {"query": "x", "k": 0}), 422)
    _problem(*_http(search, "POST", {"query": "x", "k": 51}), 422)  # over --max-k
    _problem(*_http(search, "POST", {"query": "x" * 2001}), 422)
    _problem(*_http(search, "POST", {"query": "x", "mode": "visual"}), 422)  # a text-only index
    _problem(*_http(search, "POST", {"query": "x", "mode": "fuzzy"}), 422)
    _problem(*_http(search, "POST", {"query": "x", "where": {"colour": "red"}}), 422)
    _problem(*_http(search, "POST", {"query": "x", "where": {"page": {"near": 3}}}), 422)
    _problem(*_http(search, "POST", {"query": "x", "queries": ["y"]}), 422)
    _problem(*_http(search, "POST", {"query": "x", "rerank": "colqwen2"}), 422)  # not offered by this server
    _problem(*_http(search, "POST", raw=b"{not json", headers={"Content-Type": "application/json"}), 422)
    _problem(*_http(f"{server}/v1/pages/0123456789abcdef-p00001"), 404)
    _problem(*_http(f"{server}/v1/jobs/nope"), 404)
    _problem(*_http(f"{server}/v1/nothing-here"), 404)
    _problem(*_http(f"{server}/v1/pages/ed395669a8ba7939-p00002/explain?query=x"), 409)  # not multi-vector


def test_writes_need_the_token(server: str, text_index: Path) -> None:
    body, ctype = _multipart("a.pdf", b"%PDF-1.4 nothing")
    doc = _problem(*_http(f"{server}/v1/sources", "POST", raw=body, headers={"Content-Type": ctype}), 401)
    assert "Bearer" in doc["detail"]
    status, headers, _ = _http(f"{server}/v1/sources", "POST", raw=body,
                               headers={"Content-Type": ctype, "Authorization": "Bearer wrong-token"})
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    _problem(*_http(f"{server}/v1/sources?source=x", "DELETE"), 401)
    with serve_index(text_index) as read_only:  # no token configured: every write is refused
        _problem(*_http(f"{read_only}/v1/sources", "POST", raw=body, headers={"Content-Type": ctype}), 403)
        _problem(*_http(f"{read_only}/v1/sources?source=x", "DELETE", headers={"Authorization": "Bearer x"}), 403)


def test_oversized_and_broken_uploads_change_nothing(server: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    big, ctype = _multipart("big.pdf", b"%PDF-1.4\n" + b"0" * 600_000)  # over --max-upload-mb 0.5
    doc = _problem(*_http(f"{server}/v1/sources", "POST", raw=big, headers={"Content-Type": ctype, **auth}), 413)
    assert "--max-upload-mb" in doc["detail"]
    broken, ctype = _multipart("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage")
    status, headers, body = _http(f"{server}/v1/sources", "POST", raw=broken, headers={"Content-Type": ctype, **auth})
    assert status == 202 and headers["location"].startswith("/v1/jobs/")
    job = _wait_job(server, json.loads(body)["id"])
    assert job["state"] == "failed" and [f["source"] for f in job["failures"]] == ["broken.pdf"]
    assert "broken.pdf" in job["failures"][0]["error"] and "/uploads/" not in job["failures"][0]["error"]
    _problem(*_http(f"{server}/v1/sources", "POST", {"url": "file:///etc/passwd"}, headers=auth), 422)
    job = json.loads(_http(f"{server}/v1/sources", "POST", {"url": "http://127.0.0.1:9/x.html"}, headers=auth)[2])
    job = _wait_job(server, job["id"])  # loopback: refused by the private-address rule of dse index
    assert job["state"] == "failed" and job["failures"][0]["source"] == "http://127.0.0.1:9/x.html"
    _problem(*_http(f"{server}/v1/sources", "POST", raw=b"hello", headers={"Content-Type": "text/plain", **auth}), 415)
    assert json.loads(_http(f"{server}/v1/index")[2])["pages"] == 11


def test_upload_search_delete(server: str, text_index: Path) -> None:
    client = dse.Client(server, token=TOKEN)
    pdf = EXAMPLES / "bird-field-guide.pdf"
    edited = Path(str(text_index) + "-edited") / "field-notes.pdf"
    edited.parent.mkdir(exist_ok=True)
    edited.write_bytes(pdf.read_bytes() + b"\n% an edit: other bytes, the same pages\n")
    job = client.add([edited], metadata={"collection": "uploads"})
    assert job["state"] == "done" and job["added"] == ["field-notes.pdf"] and job["pages_done"] == 2
    assert job["pages_total"] == 2 and job["sources_done"] == 1 and not job["failures"]
    hits = client.search("peregrine falcon", 10, where={"collection": "uploads"})  # searchable at once
    assert [h.page for h in hits] == [1] and "/uploads/" in hits[0].source
    assert client.info()["pages"] == 13
    again = client.add([edited])
    assert again["state"] == "done" and again["skipped"] == ["field-notes.pdf"] and not again["added"]
    assert client.delete([hits[0].source]) == {"pages": 2, "sources": 1}
    assert not client.search("peregrine falcon", 10, where={"source": {"glob": "*uploads*"}})
    assert not Path(hits[0].source).exists()  # the uploaded copy goes with its source
    with pytest.raises(dse.RemoteError) as err:
        client.delete(["/no/such/source.pdf"])
    assert err.value.status == 404
    assert client.info()["pages"] == 11


@pytest.fixture(scope="module")
def visual_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-visual")
    with dse.Retriever.create(root / "idx", dse.load_encoder("tiny-colqwen2")) as r:
        assert r.add([EXAMPLES / "sourdough-baking.pdf", EXAMPLES / "harbour-line-timetable.png"], workers=0).pages == 3
    return root / "idx"


def test_visual_and_hybrid_search_and_similarity_maps(visual_index: Path) -> None:
    with dse.Retriever.open(visual_index) as r, serve_index(visual_index) as url:
        client = dse.Client(url)
        for mode in ("visual", "hybrid", "text"):
            got = client.search_many(QUERIES[:3], 3, mode=mode)
            want = r.search_many(QUERIES[:3], 3, mode=mode)
            assert [[h.page_id for h in q] for q in got] == [[h.page_id for h in q] for q in want]
            assert [h.score for q in got for h in q] == pytest.approx([h.score for q in want for h in q], rel=1e-5)
        info = client.info()
        assert info["kind"] == "multi" and info["explain"] is True and info["modes"] == ["visual", "text", "hybrid"]
        page_id = want[0][0].page_id
        tokens = json.loads(_http(f"{url}/v1/explain/tokens?query=oven")[2])["tokens"]
        assert len(tokens) == len(r.encoder.encode_queries(["oven"])[0])
        size = r.page_image(page_id).size
        for token in ("all", "0", str(len(tokens) - 1)):
            status, headers, body = _http(f"{url}/v1/pages/{page_id}/explain?query=oven&token={token}")
            assert status == 200 and headers["content-type"] == "image/png"
            overlay = Image.open(io.BytesIO(body))
            assert overlay.mode == "RGBA" and overlay.size == size
        _problem(*_http(f"{url}/v1/pages/{page_id}/explain?query=oven&token={len(tokens)}"), 422)
