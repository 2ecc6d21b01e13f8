"""`"rewrite"` in the server's search: a real `dse serve` (prf, and llm at a real local chat endpoint)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import dse
from dse.rewrite import load_rewriter, summarize
from dse.rewrite.llm import rewrite_prompt
from dse.testing.chat_server import ChatServer, reply_for
from dse.testing.server import post_json, serve_index

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "corpus"


@pytest.fixture(scope="module")
def text_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-rewrite")
    shutil.copytree(EXAMPLES, root / "corpus")
    with dse.Retriever.create(root / "idx", dse.load_encoder("bm25")) as r:
        assert r.add([root / "corpus"], workers=0).pages == 11
    return root / "idx"


@pytest.fixture(scope="module")
def chat() -> Iterator[ChatServer]:
    with ChatServer() as server:
        yield server


@pytest.fixture(scope="module")
def server(text_index: Path, chat: ChatServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    args = ["--rewrite", "prf", "--rewrite", "llm", "--rewrite-url", chat.url, "--rewrite-model", "tiny-chat",
            "--rewrite-option", "max_new_tokens=128"]
    env = {"DSE_CACHE_DIR": str(tmp_path_factory.mktemp("serve-rewrite-cache"))}
    with serve_index(text_index, args=args, env=env) as url:
        yield url


def test_index_lists_the_rewriters(server: str) -> None:
    assert dse.Client(server).info()["rewriters"] == ["llm", "prf"]


def test_prf_rewrite_equals_the_retriever(server: str, text_index: Path) -> None:
    with dse.Retriever.open(text_index) as r:
        for query in ("oven temperature for bread", "revenue by segment"):
            status, got = post_json(server, {"query": query, "k": 5, "rewrite": "prf"})
            assert status == 200, got
            want = r.search(query, 5, rewrite="prf")
            assert [h["page_id"] for h in got["hits"]] == [h.page_id for h in want]
            expanded = load_rewriter("prf").rewrite(query, r.index)
            assert got["query"] == query and got["rewrite"]["text"] == expanded.text
            assert got["rewrite"]["rewriter"] == "prf"
            assert got["rewrite"]["terms"] == [[t, round(w, 6)] for t, w in expanded.terms]  # as before
            # readable: each term once, the query's own first, then the expansion's with weights
            assert got["rewritten"] == summarize(expanded).to_json()
            terms = got["rewritten"]["terms"]
            assert [t["term"] for t in terms if t["original"]] == [w for w in query.split() if w not in ("for", "by")]
            assert len({t["token"] for t in terms}) == len(terms) == len(expanded.terms)
            assert terms.index(next(t for t in terms if not t["original"])) == sum(t["original"] for t in terms)
            text = got["rewritten"]["text"]
            assert text.startswith(" ".join(t["term"] for t in terms if t["original"]) + " + ")
            words = [w for w in text.replace(",", " ").split() if w in {t["term"] for t in terms}]
            assert len(words) == len(set(words))  # no term repeated by weight
        assert dse.Client(server).search_many(["revenue"], 3, rewrite="prf") == r.search_many(["revenue"], 3,
                                                                                               rewrite="prf")


def test_llm_rewrite_searches_the_endpoints_text(server: str, text_index: Path, chat: ChatServer) -> None:
    query = "why would a bakery raise its oven temperature?"
    text = reply_for(rewrite_prompt(query))
    with dse.Retriever.open(text_index) as r:
        want = r.search(text, 4)
    before = len(chat.requests)
    status, got = post_json(server, {"query": query, "k": 4, "rewrite": "llm"})
    assert status == 200, got
    assert [h["page_id"] for h in got["hits"]] == [h.page_id for h in want]
    assert got["rewrite"]["text"] == text and got["rewrite"]["cached"] is False
    assert got["rewrite"]["prompt_version"] == "1" and "identity" not in got["rewrite"]  # no internal URL
    assert got["rewritten"] == {"text": text, "terms": [], "rewriter": "llm"}  # an LLM's text reads as it is
    _, _, body = chat.requests[-1]
    assert len(chat.requests) == before + 1
    assert body["model"] == "tiny-chat" and body["max_tokens"] == 128
    assert body["messages"][-1] == {"role": "user", "content": rewrite_prompt(query)}
    assert dse.Client(server).search(query, 4, rewrite="llm") == want  # cached now: no new request
    assert len(chat.requests) == before + 1
    status, batch = post_json(server, {"queries": [query, "solar"], "k": 2, "rewrite": "llm"})
    assert status == 200 and [res["rewrite"]["cached"] for res in batch["results"]] == [True, False]


def test_openapi_documents_the_readable_rewrite(server: str) -> None:
    import json
    import urllib.request

    with urllib.request.urlopen(server + "/openapi.json") as resp:
        spec = json.load(resp)
    schemas = spec["components"]["schemas"]
    out = schemas["SearchOut"]["properties"]
    assert "rewrite" in out and "rewritten" in out
    assert set(schemas["RewrittenOut"]["properties"]) == {"text", "terms", "rewriter"}
    assert set(schemas["RewriteTermOut"]["properties"]) == {"term", "token", "weight", "original"}
    status, plain = post_json(server, {"query": "bread", "k": 2})
    assert status == 200 and "rewritten" not in plain and "rewrite" not in plain  # no rewrite asked: as before


def test_rewrite_errors_are_problems(server: str, chat: ChatServer) -> None:
    status, doc = post_json(server, {"query": "bread", "rewrite": "nope"})
    assert status == 422 and "'nope'" in doc["detail"] and "offered: llm, prf" in doc["detail"]
    chat.mode = "500"
    try:
        status, doc = post_json(server, {"query": "a question never asked before", "rewrite": "llm"})
    finally:
        chat.mode = "ok"
    assert status == 502 and "HTTP 500" in doc["detail"] and chat.url in doc["detail"]
    status, doc = post_json(server, {"query": "bread", "rewrite": 3})
    assert status == 422
    import base64
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (16, 16), "white").save(png, format="PNG")
    status, doc = post_json(server, {"image": base64.b64encode(png.getvalue()).decode(), "rewrite": "prf"})
    assert status == 422 and "text queries only" in doc["detail"]


def test_serve_checks_rewrite_flags_before_starting(text_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dse.cli.main import main

    assert main(["serve", "--index", str(text_index), "--rewrite", "llm"]) == 2
    assert "--rewrite llm needs --rewrite-model" in capsys.readouterr().err
    assert main(["serve", "--index", str(text_index), "--rewrite-model", "x"]) == 2
    assert "need --rewrite NAME" in capsys.readouterr().err
    assert main(["serve", "--index", str(text_index), "--rewrite", "prf", "--rewrite-option", "fb_docs"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["serve", "--index", str(text_index), "--rewrite", "nope"]) == 2
    assert "unknown rewriter 'nope'" in capsys.readouterr().err


def test_a_server_without_rewriters_refuses_one(text_index: Path) -> None:
    with serve_index(text_index) as url:
        status, doc = post_json(url, {"query": "bread", "rewrite": "prf"})
        assert status == 422 and "'prf' is not offered" in doc["detail"] and "offered: none" in doc["detail"]
        assert dse.Client(url).info()["rewriters"] == []


def test_a_slow_rewrite_does_not_hold_a_search_thread(text_index: Path, chat: ChatServer,
                                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    import threading

    args = ["--rewrite", "llm", "--rewrite-url", chat.url, "--rewrite-model", "tiny-chat", "--search-threads", "1"]
    env = {"DSE_CACHE_DIR": str(tmp_path_factory.mktemp("serve-rewrite-slow"))}
    with serve_index(text_index, args=args, env=env) as url:
        answers: list[int] = []
        chat.delay = 6.0
        try:
            slow = threading.Thread(target=lambda: answers.append(post_json(url, {"query": "a slow one", "rewrite": "llm"})[0]))
            slow.start()
            for _ in range(100):  # until the endpoint holds the rewrite
                if any(r[2]["messages"][-1]["content"].startswith("a slow one") for r in chat.requests):
                    break
                threading.Event().wait(0.05)
            status, doc = post_json(url, {"query": "which bird dives fastest"})  # the only search thread is free meanwhile
            assert status == 200 and doc["hits"] and slow.is_alive()
        finally:
            chat.delay = 0.0
        slow.join(30)
        assert answers == [200]
