"""BM25: the engine against a Lucene-BM25 oracle, ranking sanity, and the tokenizer encoder."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dse.encoders.bm25 import BM25Encoder
from dse.engines.results import topk
from dse.engines.bm25.engine import BM25Engine

DOCS = [
    "The quarterly revenue report shows growth in cloud services.",
    "A runner runs the marathon; running shoes are reviewed on page two.",
    "Installation guide: connect the power cable, then press the reset button.",
    "",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "Revenue fell in the hardware division while cloud revenue doubled.",
]


def lucene_oracle(docs: list[list[str]], q: list[str], k1: float = 1.5, b: float = 0.75) -> np.ndarray:
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    df = Counter(t for d in docs for t in set(d))
    out = np.zeros(n)
    for j, d in enumerate(docs):
        tf = Counter(d)
        for t in q:
            if tf[t]:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                out[j] += idf * tf[t] / (tf[t] + k1 * (1 - b + b * len(d) / avgdl))
    return out


@pytest.fixture(scope="module")
def encoder() -> BM25Encoder:
    return BM25Encoder(scheme="dse-1")  # the pipeline these tests pin; dse-2: tests/test_text_tokenizer.py


@pytest.mark.parametrize("n", [1, 5, 40, 200])
def test_engine_matches_lucene_oracle(n: int) -> None:
    rng = np.random.default_rng(n)
    words = [f"t{i}" for i in range(30)]
    docs = [list(rng.choice(words, size=int(rng.integers(0, 15)))) for _ in range(n)]
    qs = [list(rng.choice(words + ["unseen"], size=int(s))) for s in rng.integers(0, 5, size=8)]
    engine = BM25Engine()
    engine.add(docs[: n // 2])
    engine.search(qs, 3)  # builds a model that the next add must invalidate
    engine.add(docs[n // 2 :])
    oracle = np.array([lucene_oracle(docs, q) for q in qs])
    np.testing.assert_allclose(engine.scores(qs), oracle, rtol=1e-5, atol=1e-6)
    for k in (1, 4, n + 5):
        scores, rows = engine.search(qs, k)
        want_scores, want_rows = topk(oracle.astype(np.float32), k)
        assert rows.shape == (8, min(k, n)) and rows.dtype == np.int64
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
        # the rows returned are the rows whose oracle scores those are (right up to float ties)
        np.testing.assert_allclose(np.take_along_axis(oracle, rows, axis=1), scores, rtol=1e-5, atol=1e-6)
        assert (rows == want_rows).mean() > 0.9


def test_ties_and_empty_queries_keep_row_order() -> None:
    engine = BM25Engine()
    engine.add([["a", "b"], ["c"], ["a", "b"], [], ["a", "b"]])
    scores, rows = engine.search([["a"], [], ["zzz"]], 5)
    assert list(rows[0][:3]) == [0, 2, 4] and scores[0][0] == scores[0][2] > 0
    assert list(rows[1]) == list(rows[2]) == [0, 1, 2, 3, 4]
    assert not scores[1].any() and not scores[2].any()


def test_all_empty_pages_score_zero() -> None:
    engine = BM25Engine()
    engine.add([[], []])
    scores, rows = engine.search([["anything"]], 3)
    assert rows.tolist() == [[0, 1]] and not scores.any()


def test_query_words_find_the_right_page(encoder: BM25Encoder) -> None:
    engine = BM25Engine()
    engine.add(encoder.encode_pages(DOCS))
    cases = {
        "cloud revenue": 5,
        "how do I reset the power?": 2,
        "photosynthesis light energy": 4,
        "running": 1,  # stemmed: matches 'runner runs ... running'
        "RUNS": 1,
    }
    for query, want in cases.items():
        _, rows = engine.search(encoder.encode_queries([query]), 3)
        assert rows[0][0] == want, query


def test_stemming_running_finds_runs(encoder: BM25Encoder) -> None:
    engine = BM25Engine()
    engine.add(encoder.encode_pages(["she runs every day", "he walks to work", "nothing here"]))
    scores, rows = engine.search(encoder.encode_queries(["running"]), 3)
    assert rows[0][0] == 0 and scores[0][0] > 0 and scores[0][1] == 0


def test_encoder_pipeline_and_determinism(encoder: BM25Encoder) -> None:
    text = "The Runners were RUNNING; the ﬁnancial reports, and a x-y plot."
    tokens = encoder.encode_pages([text])[0]
    assert tokens == ["runner", "were", "run", "financi", "report", "plot"]  # bm25s stopwords, 1-char words dropped
    assert encoder.encode_queries([text])[0] == tokens  # same pipeline both sides
    assert BM25Encoder(scheme="dse-1").encode_pages([text] * 3) == [tokens] * 3
    assert encoder.encode_pages(["", "   ", "the and of"]) == [[], [], []]
    assert encoder.encode_queries([]) == []


def test_encoder_metadata_and_options() -> None:
    from dse.encoders import load_encoder

    enc = load_encoder("bm25")
    assert enc.name == "bm25" and enc.kind == "text" and enc.input == "text"
    assert enc.dim is None and enc.model_id == "bm25s"
    assert enc.options() == {"language": "en", "stemmer": "english", "stopwords": "en-snowball",
                             "scheme": "dse-2", "glossary": "finance-1"}
    again = load_encoder("bm25", model=enc.model_id, **enc.options())  # as a retriever reopens it
    assert again.encode_pages(["Running reports"]) == enc.encode_pages(["Running reports"])
    plain = {"scheme": "dse-1"}
    assert BM25Encoder(stemmer="none", stopwords="none", **plain).encode_pages(["The runs"]) == [["the", "runs"]]
    assert BM25Encoder(language="de", **plain).encode_pages(["Die Häuser"]) == [["haus"]]


def test_encoder_errors() -> None:
    with pytest.raises(ValueError, match="unsupported BM25 language 'xx'"):
        BM25Encoder(language="xx")
    with pytest.raises(ValueError, match="no model weights"):
        BM25Encoder(model="some/checkpoint")
    with pytest.raises(ValueError, match="unknown stemmer 'nope'"):
        BM25Encoder(stemmer="nope")
    with pytest.raises(TypeError, match=r"pages\[1\] must be a str"):
        BM25Encoder().encode_pages(["ok", object()])
    with pytest.raises(TypeError, match="got one string"):
        BM25Encoder().encode_queries("a query")


def test_engine_errors_and_options(tmp_path: Path) -> None:
    engine = BM25Engine(k1=1.2, b=0.5)
    assert engine.options() == {"k1": 1.2, "b": 0.5, "method": "lucene"}
    with pytest.raises(ValueError, match=r"pages\[0\] must be a list of str tokens"):
        engine.add(["not a token list"])
    with pytest.raises(ValueError, match="unknown BM25 method"):
        BM25Engine(method="tfidf")
    engine.add([["a", "b"], ["b", "c", "c"]])
    engine.save(tmp_path / "text")
    loaded = BM25Engine.load(tmp_path / "text", rows=2, **engine.options())
    assert loaded.k1 == 1.2 and loaded.tokens(1) == ["b", "c", "c"]
    np.testing.assert_allclose(loaded.scores([["c"]]), engine.scores([["c"]]))
    assert (tmp_path / "text" / "shard-000001.jsonl").read_text().splitlines() == ['["a", "b"]', '["b", "c", "c"]']


def _bm25s_scores(docs: list[list[str]], qs: list[list[str]], method: str) -> np.ndarray:
    """bm25s itself, indexed once over every page: the library this engine must equal, bit for bit."""
    import bm25s

    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(t, len(vocab)) for t in d] for d in docs]
    model = bm25s.BM25(method=method)
    model.index((ids, vocab), create_empty_token=False, show_progress=False)
    out = np.zeros((len(qs), len(docs)), np.float32)
    for i, q in enumerate(qs):
        known = [vocab[t] for t in q if t in vocab]
        if known:
            out[i] = model.get_scores_from_ids(known)
    return out


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire", "bm25l", "bm25+"])
def test_segments_equal_bm25s_indexed_at_once(tmp_path: Path, method: str) -> None:
    rng = np.random.default_rng(7)
    words = [f"w{i}" for i in range(400)]
    zipf = 1 / np.arange(1, 401)
    docs = [list(rng.choice(words, size=int(rng.integers(0, 60)), p=zipf / zipf.sum())) for _ in range(300)]
    qs = [list(rng.choice(words + ["unseen"], size=int(s))) for s in rng.integers(0, 9, size=20)]
    engine = BM25Engine(method=method)
    for start in range(0, 300, 70):  # five shards, as five commits make
        engine.add(docs[start : start + 70])
        engine.save(tmp_path)
    assert np.array_equal(engine.scores(qs), _bm25s_scores(docs, qs, method))
    loaded = BM25Engine.load(tmp_path, rows=300, method=method)  # from the postings files
    assert np.array_equal(loaded.scores(qs), _bm25s_scores(docs, qs, method))
    head = BM25Engine.load(tmp_path, rows=180, method=method)  # a commit point inside a shard
    assert np.array_equal(head.scores(qs), _bm25s_scores(docs[:180], qs, method))
    assert head.tokens(150) == docs[150] and loaded.tokens(299) == docs[299]


def test_snapshots_leave_the_original_unchanged_and_old_shards_load(tmp_path: Path) -> None:
    docs = [t.lower().split() for t in DOCS]
    engine = BM25Engine()
    engine.add(docs[:3])
    engine.save(tmp_path)
    before = engine.scores([["revenue"], ["cloud"]])
    copy = engine.snapshot()
    copy.add(docs[3:])
    copy.save(tmp_path)
    assert len(engine) == 3 and np.array_equal(engine.scores([["revenue"], ["cloud"]]), before)
    assert np.array_equal(copy.scores([["revenue"]]), _bm25s_scores(docs, [["revenue"]], "lucene"))
    for postings in tmp_path.glob("*.postings.npz"):  # an index written before postings files existed
        postings.unlink()
    old = BM25Engine.load(tmp_path, rows=len(docs))
    assert np.array_equal(old.scores([["revenue"], ["cloud"]]), copy.scores([["revenue"], ["cloud"]]))


@pytest.mark.parametrize("text, want", [
    ("3M's FY2018 capital expenditure", ["3m", "fy2018", "fy", "2018", "capit", "expenditur"]),
    ("revenue of 1,577 and 1.577 million", ["revenu", "1577", "1577", "million"]),
    ("the 10-K and the 10K filing", ["10k", "10k", "file"]),
    ("AMAZON_2017_10K.pdf", ["amazon", "2017", "10k", "pdf"]),
    ("an exam-\n  ple of hyphen-\nation", ["exampl", "hyphen"]),
    ("Q3'23 results, ﬁnancial", ["q3", "23", "result", "financi"]),
    ("doc3 page0", ["doc3", "doc", "page0", "page"]),
    ("3.5 percent and 12,345,678", ["percent", "12345678"]),
])
def test_dse1_scheme_writes_one_form(text: str, want: list[str]) -> None:
    assert BM25Encoder(scheme="dse-1").encode_pages([text])[0] == want


def test_bm25s_scheme_is_bm25s_plain() -> None:
    plain = BM25Encoder(scheme="bm25s")
    assert plain.encode_pages(["FY2018 1,577 AMAZON_2017_10K"])[0] == ["fy2018", "577", "amazon_2017_10k"]
    with pytest.raises(ValueError, match="scheme"):
        BM25Encoder(scheme="nope")


def test_an_index_from_before_schemes_keeps_its_tokenizer(tmp_path) -> None:
    """A manifest without `scheme` was built with bm25s's plain tokenizer: it is searched with it."""
    import json

    from dse import Retriever, load_encoder

    for encoder in ("bm25", "tiny-dse"):
        directory = tmp_path / encoder
        Retriever.create(directory, load_encoder(encoder)).close()
        manifest = json.loads((directory / "manifest.json").read_text())
        with Retriever.open(directory) as r:
            assert r.index.tokenize(["FY2018"]) == [["fy2018", "fy", "2018", "fy2018_fy", "fy_2018"]]  # dse-2
        if encoder == "bm25":
            del manifest["encoder"]["options"]["scheme"]
        else:
            del manifest["store"]["text"]["tokenizer"]["scheme"]
        (directory / "manifest.json").write_text(json.dumps(manifest))
        with Retriever.open(directory) as r:
            assert r.index.tokenize(["FY2018"]) == [["fy2018"]]
            if encoder == "bm25":
                assert r.encoder.options()["scheme"] == "bm25s"
