"""Reranking: the interpolation of both stages, and MaxSim over stored page images checked against an oracle."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pytest

from dse import Hit, Retriever, load_encoder
from dse.encoders.colpali.col import score_maxsim
from dse.retrieve.rerank import Candidate, MaxSimReranker, Reranker, rerank


class Fixed:
    """A reranker returning given scores by page id."""

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    def score(self, query: str, candidates: Sequence[Candidate]) -> np.ndarray:
        return np.array([self.scores[c.page_id] for c in candidates])  # (n,)


def _candidates(pairs: list[tuple[str, float]]) -> list[Candidate]:
    return [Candidate(Hit(pid, "doc.pdf", r, s, r), text=pid, load_image=lambda: None)
            for r, (pid, s) in enumerate(pairs, start=1)]


FIRST = _candidates([("a", 10.0), ("b", 8.0), ("c", 6.0), ("d", 2.0)])
SECOND = Fixed({"a": 0.0, "b": 1.0, "c": 3.0, "d": 2.0})


def test_final_score_interpolates_normalised_stages() -> None:
    assert isinstance(SECOND, Reranker)
    got = {h.page_id: h.score for h in rerank("q", FIRST, SECOND, k=4, alpha=0.25)}
    first = {"a": 1.0, "b": 6 / 8, "c": 4 / 8, "d": 0.0}  # (s - 2) / (10 - 2)
    second = {"a": 0.0, "b": 1 / 3, "c": 1.0, "d": 2 / 3}  # s / 3
    assert got == pytest.approx({p: 0.25 * first[p] + 0.75 * second[p] for p in "abcd"})
    assert [h.page_id for h in rerank("q", FIRST, SECOND, k=4, alpha=1.0)] == ["a", "b", "c", "d"]
    assert [h.page_id for h in rerank("q", FIRST, SECOND, k=2, alpha=0.0)] == ["c", "d"]
    assert [h.rank for h in rerank("q", FIRST, SECOND, k=3, alpha=0.0)] == [1, 2, 3]


def test_ties_keep_the_first_stage_order() -> None:
    flat = Fixed({"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0})
    assert [h.page_id for h in rerank("q", FIRST[::-1], flat, k=4, alpha=0.0)] == ["d", "c", "b", "a"]


def test_bad_rerankers_and_options(tmp_path: Path, corpus: Path) -> None:
    class Short:
        def score(self, query: str, candidates: Sequence[Candidate]) -> np.ndarray:
            return np.zeros(1)

    with pytest.raises(ValueError, match="Short.score returned 1 scores for 4 candidates"):
        rerank("q", FIRST, Short(), k=2, alpha=0.5)
    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as r:
        r.add(corpus / "acme-q3-2025-report.pdf")
        with pytest.raises(TypeError, match="score\\(query, candidates\\)"):
            r.search("revenue", rerank=object())
        with pytest.raises(ValueError, match="alpha must be in"):
            r.search("revenue", rerank=SECOND, alpha=2)
        with pytest.raises(ValueError, match="depth must be"):
            r.search("revenue", rerank=SECOND, depth=0)
    with pytest.raises(ValueError, match="needs a multi-vector encoder; 'bm25' is text"):
        MaxSimReranker(load_encoder("bm25"))


class Counting:
    """Wraps an encoder and counts the pages it encodes."""

    def __init__(self, encoder: Any) -> None:
        self.inner, self.kind, self.pages = encoder, encoder.kind, 0

    def encode_queries(self, queries: list[str]) -> Any:
        return self.inner.encode_queries(queries)

    def encode_pages(self, pages: list[Any]) -> Any:
        self.pages += len(pages)
        return self.inner.encode_pages(pages)


@pytest.fixture(scope="module")
def bm25(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Retriever]:
    from tests.conftest import EXAMPLES

    with Retriever.create(tmp_path_factory.mktemp("rerank") / "idx", load_encoder("bm25")) as r:
        r.add(EXAMPLES)
        yield r


def test_maxsim_reranker_matches_brute_force(bm25: Retriever) -> None:
    encoder = load_encoder("tiny-colqwen2", max_visual_tokens=64)
    counting = Counting(encoder)
    reranker = MaxSimReranker(counting)
    query = "revenue growth and operating margin"
    first = bm25.search(query, k=5)
    assert len(first) >= 3
    got = bm25.search(query, k=3, rerank=reranker, alpha=0.0, depth=5)
    q = encoder.encode_queries([query])[0]  # (q_tokens, dim)
    pages = encoder.encode_pages([bm25.page_image(h.page_id) for h in first])
    oracle = {h.page_id: score_maxsim(q, p) for h, p in zip(first, pages)}
    want = sorted(first, key=lambda h: -oracle[h.page_id])[:3]
    assert [h.page_id for h in got] == [h.page_id for h in want]
    assert counting.pages == len(first)
    mixed = bm25.search(query, k=len(first), rerank=reranker, alpha=0.5, depth=5)  # cached: no new encoding
    assert counting.pages == len(first)
    assert sorted(h.page_id for h in mixed) == sorted(h.page_id for h in first)
    assert (np.diff([h.score for h in mixed]) <= 0).all() and mixed[0].score <= 1.0


def test_cli_rerank_matches_python(bm25: Retriever, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from dse.cli.main import main

    query = "solar panel wiring"
    assert main(["search", "--index", str(bm25.index.directory), "--json", "-k", "2", "--rerank", "tiny-colqwen2",
                 "--alpha", "0.2", "--depth", "3", query]) == 0
    got = json.loads(capsys.readouterr().out)
    want = bm25.search(query, 2, rerank=MaxSimReranker("tiny-colqwen2"), alpha=0.2, depth=3)
    assert got == [h.to_json() for h in want] and len(got) == 2
