"""The long-query policy (`dse.encoders.query_length`) on tiny checkpoints with small limits: nothing cut silently."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from dse import load_encoder
from dse.encoders.query_length import QueryTooLongError, fit_queries

LIMIT = 64
LONG = " ".join(["revenue margins fell because costs rose"] * 40)  # about 240 words


def _small_limit(name: str, **options: Any) -> Any:
    """A tiny encoder whose limit is LIMIT tokens (the max_length option, or its query_limit set small)."""
    if name in ("tiny-gme", "tiny-qwen3-vl-embedding"):
        return load_encoder(name, device="cpu", max_length=LIMIT, **options)
    encoder = load_encoder(name, device="cpu", **options)
    assert encoder.query_limit == (4096 if name == "tiny-dse" else 1024)  # read from the tiny config at load
    encoder.query_limit = LIMIT
    return encoder


FAMILIES = ["tiny-dse", "tiny-gme", "tiny-qwen3-vl-embedding", "tiny-colqwen2", "tiny-biqwen2", "tiny-colpali"]


@pytest.mark.parametrize("name", FAMILIES)
def test_a_query_past_the_limit_is_an_error_naming_both_lengths(name: str) -> None:
    encoder = _small_limit(name)
    tokens = encoder.query_tokens(LONG)
    assert tokens > LIMIT
    with pytest.raises(QueryTooLongError, match=rf"queries\[1\] is {tokens} tokens long .* limit of {LIMIT} tokens") as info:
        encoder.encode_queries(["short query", LONG])
    assert isinstance(info.value, ValueError) and info.value.limit == LIMIT and info.value.tokens == tokens
    assert "truncate_queries=True" in str(info.value)
    assert len(encoder.encode_queries(["short query"])) == 1


@pytest.mark.parametrize("name", FAMILIES)
def test_truncate_queries_cuts_the_text_to_fit_with_a_warning(name: str, caplog: pytest.LogCaptureFixture) -> None:
    strict = _small_limit(name)
    cutting = _small_limit(name, truncate_queries=True)
    cut = fit_queries([LONG], limit=LIMIT, count=strict.query_tokens, tokenizer=strict.processor.tokenizer,
                      encoder=name, truncate=True)[0]
    assert cut and LONG.startswith(cut) and len(cut) < len(LONG)
    assert LIMIT - 3 <= strict.query_tokens(cut) <= LIMIT  # as much of the query as fits, the template kept
    with caplog.at_level(logging.WARNING, logger="dse.encoders.query_length"):
        got = cutting.encode_queries([LONG, "short query"])
    assert f"over the limit of {LIMIT}" in caplog.text and "queries[0]" in caplog.text
    want = strict.encode_queries([cut, "short query"])
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5)


def test_bm25_has_no_limit() -> None:
    encoder = load_encoder("bm25")
    word = encoder.encode_queries(["margins"])[0]  # its one token
    tokens = encoder.encode_queries([" ".join(["margins"] * 5000)])[0]  # words, and the dse-2 word pairs
    assert len(word) == 1 and list(tokens).count(word[0]) == 5000


def test_a_retriever_search_reports_the_limit(tmp_path: Any) -> None:
    from dse import Retriever

    encoder = _small_limit("tiny-colqwen2")
    with Retriever.create(tmp_path / "idx", encoder, image_size=0) as r:
        with pytest.raises(QueryTooLongError, match=f"limit of {LIMIT}"):
            r.search(LONG, k=1)


def test_the_server_answers_a_long_query_with_its_own_422(tmp_path: Any) -> None:
    import shutil
    from pathlib import Path

    from dse import Retriever
    from dse.testing.server import post_json, serve_index

    png = next((Path(__file__).resolve().parents[1] / "examples" / "corpus").glob("*.png"))
    shutil.copy(png, tmp_path / png.name)
    with Retriever.create(tmp_path / "idx", load_encoder("tiny-colqwen2", device="cpu"), image_size=0) as r:
        assert r.add([tmp_path / png.name], workers=0).pages == 1
    long_query = "ж" * 1900  # 1,900 characters (under the server's 2,000), 3,800 byte-level tokens: over 1,024

    with serve_index(tmp_path / "idx", args=["--device", "cpu"]) as url:
        status, doc = post_json(url, {"queries": ["a chart", long_query], "k": 1}, timeout=120)
        assert status == 422 and "queries[1] is" in doc["detail"] and "limit of 1024 tokens" in doc["detail"]
        status, got = post_json(url, {"query": "a chart", "k": 1}, timeout=120)
        assert status == 200 and len(got["hits"]) == 1
    with serve_index(tmp_path / "idx", args=["--device", "cpu", "--truncate-queries"]) as url:
        status, got = post_json(url, {"query": long_query, "k": 1}, timeout=120)
        assert status == 200 and len(got["hits"]) == 1
