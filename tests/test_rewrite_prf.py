"""RM3 pseudo-relevance feedback (`dse.rewrite.prf`) on a real BM25 index, checked against a hand-computed oracle."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image

from dse import Retriever, load_encoder
from dse.rewrite import Rewrite, load_rewriter
from dse.rewrite.prf import RM3Rewriter
from dse.text.tokenizer import PAIR


def _words(tokens: list[str]) -> Counter:
    """The word tokens (the "dse-2" scheme's adjacent-word pairs left out: RM3's feedback terms are words)."""
    return Counter(t for t in tokens if PAIR not in t)

TEXTS = [
    "revenue grew in the cloud segment; cloud margins and cloud revenue rose",
    "cloud revenue and subscription revenue by segment",
    "the annual report lists revenue, profit and cash flow",
    "a recipe for bread: flour, water, salt and yeast",
    "bread baking needs flour and an oven",
    "football scores of the weekend league",
    "tennis results and football fixtures",
    "weather forecast: rain, wind and sun",
    "the museum opens an exhibition of paintings",
    "train timetables for the northern line",
    "hotel rooms and breakfast prices",
    "gardening tips: roses, tulips and soil",
]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Retriever]:
    from dse.retrieve.indexing import index_pages
    from ingest.page import Page, make_page_id

    directory = tmp_path_factory.mktemp("prf") / "index"
    with Retriever.create(directory, load_encoder("bm25"), image_size=0) as r:
        digest = hashlib.sha256("prf-corpus".encode()).hexdigest()
        pages = [Page(make_page_id(digest, n), "corpus", n, Image.new("RGB", (8, 8)), text, digest, {})
                 for n, text in enumerate(TEXTS, start=1)]
        index_pages(r.encoder, r.index, [("corpus", digest, iter(pages))])
        yield r


def _oracle(r: Retriever, query: str, fb_docs: int, fb_terms: int, alpha: float) -> dict[str, float]:
    """RM3 written out from its definition (no df filter), for comparison."""
    hits = [sp for sp in r.index.search_text([query], fb_docs)[0] if sp.score > 0]
    q = Counter(r.index.tokenize([query])[0])  # the query model: every token of the query, its pairs too
    rel: dict[str, float] = {}
    for sp in hits:
        counts = _words(r.index.tokenize([sp.record.text])[0])
        top = dict(sorted(counts.items(), key=lambda tw: (-tw[1], tw[0]))[:fb_terms])
        for t, c in top.items():
            rel[t] = rel.get(t, 0.0) + c / sum(top.values()) * sp.score
    rel = dict(sorted(rel.items(), key=lambda tw: (-tw[1], tw[0]))[:fb_terms])
    total = sum(rel.values())
    return {t: alpha * q.get(t, 0) / sum(q.values()) + (1 - alpha) * rel.get(t, 0.0) / total
            for t in set(q) | set(rel)}


def test_weights_match_the_relevance_model(index: Retriever) -> None:
    rewriter = RM3Rewriter(fb_docs=3, fb_terms=5, max_df_ratio=None)
    feedback = [sp for sp in index.index.search_text(["cloud revenue"], 3)[0] if sp.score > 0]
    got = rewriter.weights("cloud revenue", feedback, index.index)
    assert got == pytest.approx(_oracle(index, "cloud revenue", 3, 5, 0.5))
    assert sum(got.values()) == pytest.approx(1.0)


def test_expanded_text_repeats_terms_by_weight_and_is_deterministic(index: Retriever) -> None:
    rewriter = load_rewriter("prf", fb_docs=3, fb_terms=5, max_df_ratio=None)
    out = rewriter.rewrite("cloud revenue", index.index)
    assert isinstance(out, Rewrite) and out.query == "cloud revenue" and out.rewriter == "prf"
    tokens = _words(index.index.tokenize([out.text])[0])
    for term, weight in out.terms:
        assert tokens[term] == max(1, round(weight * rewriter.resolution))
    assert set(tokens) == {t for t, _ in out.terms}
    assert "segment" in tokens  # a feedback term the query does not hold
    assert rewriter.rewrite("cloud revenue", index.index) == out


def test_expansion_reaches_pages_without_the_query_words(index: Retriever) -> None:
    rewriter = load_rewriter("prf", fb_docs=2, fb_terms=10, max_df_ratio=None)
    text = rewriter.rewrite("bread", index.index).text
    pages = {sp.record.page for sp in index.index.search_text([text], 5)[0] if sp.score > 0}
    assert {4, 5} <= pages


def test_df_filter_drops_common_terms(index: Retriever) -> None:
    # "revenue" is on 3 of 12 pages: over a 0.2 ratio (2 pages), so it cannot be a feedback term
    out = load_rewriter("prf", fb_docs=3, fb_terms=5, max_df_ratio=0.2).rewrite("profit", index.index)
    assert "revenu" not in dict(out.terms)


def test_no_match_leaves_the_query_alone_and_bad_input_is_named(index: Retriever) -> None:
    rewriter = load_rewriter("prf")
    assert rewriter.rewrite("zzzz qqqq", index.index).text == "zzzz qqqq"
    with pytest.raises(ValueError, match="index="):
        rewriter.rewrite("cloud")
    with pytest.raises(TypeError, match=r"queries\[0\]"):
        rewriter.rewrite_many([3], index.index)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="unknown rewriter 'nope'"):
        load_rewriter("nope")
    with pytest.raises(ValueError, match="fb_docs"):
        RM3Rewriter(fb_docs=0)


def test_retriever_searches_the_rewritten_text(index: Retriever, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from dse.cli.main import main

    rewriter = load_rewriter("prf", fb_docs=2, max_df_ratio=None)
    expanded = rewriter.rewrite("bread", index.index).text
    want = [(h.page_id, h.score) for h in index.search(expanded, k=5)]
    assert [(h.page_id, h.score) for h in index.search("bread", k=5, rewrite=rewriter)] == want
    assert index.search("bread", k=5, rewrite="prf")  # by registry name, default options
    with pytest.raises(TypeError, match="rewrite must be"):
        index.search("bread", rewrite=3)
    assert main(["search", "bread", "--index", str(index.index.directory), "--rewrite", "prf", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)
    assert main(["search", "bread", "--index", str(index.index.directory), "--rewrite", "nope"]) == 2
    assert "--rewrite nope: unknown rewriter 'nope'" in capsys.readouterr().err


def test_summary_lists_distinct_terms_the_querys_first(index: Retriever) -> None:
    from dse.rewrite import RewriteTerm, summarize

    rewriter = load_rewriter("prf", fb_docs=3, fb_terms=5, max_df_ratio=None)
    out = rewriter.rewrite("revenue of the cloud", index.index)
    summary = summarize(out, top=2)
    tokens = [t.token for t in summary.terms]
    assert len(tokens) == len(set(tokens)) and set(tokens) == {t for t, _ in out.terms}  # every term once
    own = [t for t in summary.terms if t.original]
    assert [t.token for t in own] == ["revenu", "cloud"]  # the query's order, first
    assert [t.term for t in own] == ["revenue", "cloud"]  # the query's own words, not the stems
    expansion = summary.terms[len(own):]
    assert expansion and not any(t.original for t in expansion)
    assert [t.weight for t in expansion] == sorted((t.weight for t in expansion), reverse=True)
    assert dict((t.token, t.weight) for t in summary.terms) == dict(out.terms)
    for t in summary.terms:  # a word that BM25 reads as the term's token
        assert index.index.tokenize([t.term])[0] == [t.token]
    shown = ", ".join(f"{t.term} {t.weight:.2g}" for t in expansion[:2])
    rest = len(expansion) - 2
    assert summary.text == "revenue cloud + " + shown + (f", ... {rest} more" if rest > 0 else "")
    assert summary.to_json()["terms"][0] == {"term": "revenue", "token": "revenu",
                                             "weight": round(dict(out.terms)["revenu"], 6), "original": True}
    assert isinstance(summary.terms[0], RewriteTerm) and summary.rewriter == "prf"
    assert "revenu revenu" in out.text  # the text searched is unchanged: repeated by weight
    words = summary.text.split()
    assert len([w for w in words if w == "revenue"]) == 1


def test_summary_of_a_rewrite_without_terms_is_its_text(index: Retriever) -> None:
    from dse.rewrite import summarize

    alone = load_rewriter("prf").rewrite("zzzz qqqq", index.index)
    assert summarize(alone).text == "zzzz qqqq" and summarize(alone).terms == ()
    llm = Rewrite("why?", "a reasoned rewrite", "llm", "tiny", "1")
    assert summarize(llm).to_json() == {"text": "a reasoned rewrite", "terms": [], "rewriter": "llm"}
    with pytest.raises(ValueError, match="top"):
        summarize(llm, top=-1)


def test_cli_prints_the_rewrite_readable(index: Retriever, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import json

    from dse.cli.main import main
    from dse.rewrite import summarize

    directory = str(index.index.directory)
    summary = summarize(load_rewriter("prf").rewrite("cloud revenue", index.index))
    want = [h.page_id for h in index.search("cloud revenue", k=3, rewrite="prf")]
    assert main(["search", "cloud revenue", "--index", directory, "--rewrite", "prf", "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"searched as (rewritten by prf): {summary.text}"
    assert [line.split("[")[-1].rstrip("]") for line in lines[1:]] == want
    assert main(["search", "cloud revenue", "--index", directory, "--rewrite", "prf", "-k", "3", "--json"]) == 0
    captured = capsys.readouterr()
    assert [h["page_id"] for h in json.loads(captured.out)] == want  # the list as before; the rewrite on stderr
    assert f"searched as (rewritten by prf): {summary.text}" in captured.err
    queries = tmp_path / "q.txt"
    queries.write_text("cloud revenue\nbread\n")
    assert main(["search", "--queries", str(queries), "--index", directory, "--rewrite", "prf", "-k", "3"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [h["page_id"] for h in rows[0]["hits"]] == want and rows[0]["rewritten"] == summary.to_json()
    assert rows[1]["rewritten"]["terms"][0]["term"] == "bread"
