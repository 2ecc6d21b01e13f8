"""The `llm` rewriter: a tiny random causal LM built offline, and a real chat endpoint on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from dse import Retriever, load_encoder
from dse.prompts import LLM_REWRITE_SYSTEM
from dse.rewrite import Rewrite, RewriteError, load_rewriter, load_rewriters
from dse.rewrite.chat_endpoint import EndpointError
from dse.rewrite.llm import LLMRewriter, rewrite_prompt
from dse.testing.chat_server import ChatServer, reply_for
from dse.testing.server import free_port
from dse.testing.tiny_lm import build_tiny_causal_lm

TEXTS = ["the margins fell because costs rose", "bread needs flour and an oven", "the football league scores",
         "reasoning about margins: costs, prices, demand"]


# ---------------------------------------------------------------------------------------- local model
@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm") / "chat")


@pytest.fixture(scope="module")
def tiny_plain_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm") / "plain", chat_template=False)


def test_local_model_rewrites_deterministically(tiny_lm: Path, tmp_path: Path) -> None:
    a = load_rewriter("llm", model=str(tiny_lm), max_new_tokens=12, device="cpu", cache=False)
    b = load_rewriter("llm", model=str(tiny_lm), max_new_tokens=12, device="cpu", cache=False)
    out = a.rewrite("why did margins fall?")
    assert isinstance(out, Rewrite) and out.rewriter == "llm" and out.prompt_version == "1" and not out.cached
    assert out.text.strip() and out.text != "why did margins fall?"
    assert b.rewrite("why did margins fall?") == out  # same weights, greedy: the same text
    assert a.rewrite("revenue by segment").text != out.text  # the text follows the prompt
    assert a.identity.startswith("transformers sha256:") and "max_new_tokens=12" in a.identity


def test_local_model_reads_the_chat_template_or_the_plain_prompt(tiny_lm: Path, tiny_plain_lm: Path) -> None:
    chat = LLMRewriter(model=str(tiny_lm), max_new_tokens=4, device="cpu", cache=False).generator
    plain = LLMRewriter(model=str(tiny_plain_lm), max_new_tokens=4, device="cpu", cache=False).generator
    prompt = rewrite_prompt("q")
    assert chat.model_input(LLM_REWRITE_SYSTEM, prompt) == (  # type: ignore[attr-defined]
        f"<|im_start|>system\n{LLM_REWRITE_SYSTEM}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert plain.model_input(LLM_REWRITE_SYSTEM, prompt) == prompt  # type: ignore[attr-defined]
    assert chat.identity != plain.identity  # the tokenizer files differ: their rewrites are cached apart


def test_include_query_and_bad_options(tiny_lm: Path) -> None:
    base = load_rewriter("llm", model=str(tiny_lm), max_new_tokens=6, device="cpu", cache=False)
    both = load_rewriter("llm", model=str(tiny_lm), max_new_tokens=6, device="cpu", cache=False, include_query=True)
    assert both.rewrite("margins").text == "margins\n\n" + base.rewrite("margins").text
    with pytest.raises(ValueError, match="needs model="):
        load_rewriter("llm")
    with pytest.raises(ValueError, match="max_new_tokens"):
        load_rewriter("llm", model=str(tiny_lm), max_new_tokens=0)
    with pytest.raises(RewriteError, match="no-such-dir"):
        load_rewriter("llm", model=str(tiny_lm.parent / "no-such-dir"))
    with pytest.raises(TypeError, match=r"queries\[1\]"):
        base.rewrite_many(["ok", 3])  # type: ignore[list-item]


# ---------------------------------------------------------------------------------------- endpoint
@pytest.fixture()
def endpoint() -> Iterator[ChatServer]:
    with ChatServer() as server:
        yield server


def test_endpoint_request_body_auth_and_answer(endpoint: ChatServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSE_TEST_KEY", "sk-test-123")
    rewriter = load_rewriter("llm", url=endpoint.url, model="tiny-chat", api_key_env="DSE_TEST_KEY",
                             max_new_tokens=64, cache=False)
    out = rewriter.rewrite("why did\nmargins fall?")
    assert out.text == reply_for(rewrite_prompt("why did\nmargins fall?")) == (
        "reasoning: why did margins fall? needs costs and prices")
    path, headers, body = endpoint.requests[-1]
    assert path == "/v1/chat/completions" and headers["authorization"] == "Bearer sk-test-123"
    assert body == {"model": "tiny-chat", "max_tokens": 64, "temperature": 0.0,
                    "messages": [{"role": "system", "content": LLM_REWRITE_SYSTEM},
                                 {"role": "user", "content": rewrite_prompt("why did\nmargins fall?")}]}
    assert "sk-test" not in rewriter.identity and endpoint.url in rewriter.identity
    monkeypatch.delenv("DSE_TEST_KEY")
    rewriter.rewrite("second")
    assert "authorization" not in endpoint.requests[-1][1]  # no key in the environment: no header


@pytest.mark.parametrize(("mode", "message"), [("500", "HTTP 500"), ("bad-json", "did not answer JSON"),
                                               ("no-choices", "without choices")])
def test_endpoint_errors_name_the_url(endpoint: ChatServer, mode: str, message: str) -> None:
    endpoint.mode = mode
    rewriter = load_rewriter("llm", url=endpoint.url, model="m", cache=False)
    with pytest.raises(EndpointError, match=message) as info:
        rewriter.rewrite("q")
    assert endpoint.url + "/chat/completions" in str(info.value)


def test_unreachable_endpoint_and_bad_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(EndpointError, match="cannot reach http://127.0.0.1:.*/v1/chat/completions"):
        load_rewriter("llm", url=url, model="m", cache=False, timeout=5).rewrite("q")
    with pytest.raises(ValueError, match="http"):
        load_rewriter("llm", url="ftp://example.org", model="m")
    with pytest.raises(ValueError, match="taken by none"):
        load_rewriters(["prf"], {"model": "x"})


# ---------------------------------------------------------------------------------------- cache
def test_cache_hits_misses_and_disk(endpoint: ChatServer, tmp_path: Path) -> None:
    path = tmp_path / "rewrites.sqlite"
    first = load_rewriter("llm", url=endpoint.url, model="m", cache_path=str(path))
    a = first.rewrite("margins")
    assert not a.cached and len(endpoint.requests) == 1
    again = first.rewrite("margins")
    assert again.cached and again.text == a.text and len(endpoint.requests) == 1  # memory hit
    assert first.cache is not None and first.cache.stats().memory_hits == 1
    second = load_rewriter("llm", url=endpoint.url, model="m", cache_path=str(path))  # a new process, same file
    assert second.rewrite("margins").cached and len(endpoint.requests) == 1
    assert second.cache is not None and second.cache.stats().disk_hits == 1
    other = load_rewriter("llm", url=endpoint.url, model="other-model", cache_path=str(path))
    assert not other.rewrite("margins").cached and len(endpoint.requests) == 2  # another model: a miss
    off = load_rewriter("llm", url=endpoint.url, model="m", cache=False)
    assert not off.rewrite("margins").cached and len(endpoint.requests) == 3


def test_cache_is_an_lru_safe_across_threads(tmp_path: Path) -> None:
    from dse.rewrite.cache import RewriteCache, cache_key

    cache = RewriteCache(tmp_path / "c.sqlite", capacity=2)
    keys = [cache_key("llm", "m", "1", f"q{i}") for i in range(3)]
    assert len(set(keys)) == 3 and cache_key("llm", "m", "2", "q0") != keys[0]
    for i, key in enumerate(keys):
        cache.put(key, f"t{i}")
    assert cache.get(keys[0]) == "t0" and cache.stats().disk_hits == 1  # evicted from memory, read from disk
    assert cache.get(cache_key("llm", "m", "1", "nope")) is None and cache.stats().misses == 1
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                key = cache_key("llm", "m", "1", f"t{n}-{i}")
                cache.put(key, str(i))
                assert cache.get(key) == str(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert RewriteCache(tmp_path / "c.sqlite").get(cache_key("llm", "m", "1", "t7-49")) == "49"
    with pytest.raises(ValueError, match="is a folder"):
        RewriteCache(tmp_path)


# ---------------------------------------------------------------------------------------- search
@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Retriever]:
    from dse.retrieve.indexing import index_pages
    from ingest.page import Page, make_page_id

    directory = tmp_path_factory.mktemp("llm-rw") / "index"
    with Retriever.create(directory, load_encoder("bm25"), image_size=0) as r:
        digest = hashlib.sha256(b"llm-corpus").hexdigest()
        pages = [Page(make_page_id(digest, n), "corpus", n, Image.new("RGB", (8, 8)), text, digest, {})
                 for n, text in enumerate(TEXTS, start=1)]
        index_pages(r.encoder, r.index, [("corpus", digest, iter(pages))])
        yield r


def test_retriever_and_cli_search_the_llms_text(index: Retriever, endpoint: ChatServer, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from dse.cli.main import main

    rewriter = load_rewriter("llm", url=endpoint.url, model="m", cache_path=str(tmp_path / "r.sqlite"))
    text = rewriter.rewrite("why?").text
    want = [(h.page_id, h.score) for h in index.search(text, k=3)]
    assert want and [(h.page_id, h.score) for h in index.search("why?", k=3, rewrite=rewriter)] == want
    args = ["search", "why?", "--index", str(index.index.directory), "--json", "--rewrite", "llm",
            "--rewrite-url", endpoint.url, "--rewrite-model", "m", "--rewrite-option", "cache=false"]
    assert main(args) == 0
    assert [h["page_id"] for h in json.loads(capsys.readouterr().out)] == [p for p, _ in want]
    assert main(["search", "why?", "--index", str(index.index.directory), "--rewrite", "llm"]) == 2
    assert "needs model=" in capsys.readouterr().err
    assert main(["search", "why?", "--index", str(index.index.directory), "--rewrite", "prf",
                 "--rewrite-option", "nonsense=1"]) == 2
    assert "nonsense are taken by none of prf" in capsys.readouterr().err


def test_eval_with_the_llm_rewriter_records_it(endpoint: ChatServer, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from dse.cli.main import main
    from dse.evaluate.report import EvalResult

    root = Path(__file__).resolve().parents[1]
    data = tmp_path / "local"
    shutil.copytree(root / "examples" / "corpus", data / "pdfs")
    shutil.copy(root / "tests" / "eval_fixtures" / "example-questions.jsonl", data / "questions.jsonl")
    out = tmp_path / "llm.json"
    args = ["eval", str(data), "--scope", "corpus", "-k", "5", "-o", str(out), "--rewrite", "llm",
            "--rewrite-url", endpoint.url, "--rewrite-model", "tiny-chat", "--rewrite-option",
            f"cache_path={tmp_path / 'rw.sqlite'}", "--rewrite-option", "include_query=true"]
    assert main(args) == 0
    assert "rewrite llm" in capsys.readouterr().out
    recorded = EvalResult.load(out).config["search_options"]["rewrite"]
    assert recorded["name"] == "llm" and recorded["prompt_version"] == "1"
    assert "tiny-chat" in recorded["identity"] and "include_query=True" in recorded["identity"]
    asked = len(endpoint.requests)
    assert asked == 6  # one generation per question
    assert main(args) == 0 and len(endpoint.requests) == asked  # the second run reads the cache
