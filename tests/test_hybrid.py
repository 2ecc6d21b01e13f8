"""Hybrid search: RRF and weighted fusion of BM25 and visual rankings, checked against hand-computed oracles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from dse import Hit, Retriever, load_encoder
from dse.cli.main import main
from dse.retrieve.hybrid import FUSION_DEPTH, fuse, min_max


def _hits(pairs: list[tuple[str, float]]) -> list[Hit]:
    return [Hit(pid, f"{pid}.pdf", 1, score, rank) for rank, (pid, score) in enumerate(pairs, start=1)]


VISUAL = _hits([("a", 0.9), ("b", 0.8), ("c", 0.5), ("d", 0.1)])
TEXT = _hits([("c", 12.0), ("e", 6.0), ("a", 3.0)])


def test_rrf_scores_are_reciprocal_rank_sums() -> None:
    got = fuse(VISUAL, TEXT, k=10, fusion="rrf", rrf_k=60)
    want = {"a": 1 / 61 + 1 / 63, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 64, "e": 1 / 62}
    assert {h.page_id: h.score for h in got} == pytest.approx(want)
    # a and c tie (1/61 + 1/63): both have best rank 1, so the visual rank decides; b and e tie on 1/62
    assert [h.page_id for h in got] == ["a", "c", "b", "e", "d"]
    assert [h.rank for h in got] == [1, 2, 3, 4, 5]
    assert [h.page_id for h in fuse(VISUAL, TEXT, k=2)] == ["a", "c"]


def test_weighted_is_normalised_bm25_plus_lambda_similarity() -> None:
    weight = 0.5
    got = {h.page_id: h.score for h in fuse(VISUAL, TEXT, k=10, fusion="weighted", weight=weight)}
    vis = {"a": 1.0, "b": 0.7 / 0.8, "c": 0.4 / 0.8, "d": 0.0}  # (s - 0.1) / (0.9 - 0.1)
    txt = {"c": 1.0, "e": 3.0 / 9.0, "a": 0.0}  # (s - 3) / (12 - 3)
    want = {p: txt.get(p, 0.0) + weight * vis.get(p, 0.0) for p in "abcde"}
    assert got == pytest.approx(want)
    # lambda 0: the text order, then the visual-only pages (score 0) by their visual rank
    assert [h.page_id for h in fuse(VISUAL, TEXT, k=10, fusion="weighted", weight=0.0)] == ["c", "e", "a", "b", "d"]
    # a large lambda: the visual order (d, the visual side's worst, normalises to 0 like a missing page)
    assert [h.page_id for h in fuse(VISUAL, TEXT, k=3, fusion="weighted", weight=1e6)] == ["a", "b", "c"]


def test_min_max_and_edge_cases() -> None:
    assert min_max([3.0, 1.0, 2.0]) == pytest.approx([1.0, 0.0, 0.5])
    assert min_max([5.0, 5.0]).tolist() == [1.0, 1.0] and min_max([]).size == 0
    assert fuse([], [], k=3) == []
    assert [h.page_id for h in fuse([], TEXT, k=3, fusion="weighted")] == ["c", "e", "a"]


@pytest.mark.parametrize("kwargs, match", [
    ({"fusion": "sum"}, "unknown fusion 'sum'"),
    ({"weight": -1.0}, "weight must be"),
    ({"rrf_k": -5}, "rrf_k must be"),
])
def test_bad_fusion_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fuse(VISUAL, TEXT, k=3, **kwargs)


@pytest.fixture(scope="module")
def visual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Retriever]:
    """A tiny-dse index over the example corpus (random weights: the visual ranking is arbitrary)."""
    from tests.conftest import EXAMPLES

    directory = tmp_path_factory.mktemp("hybrid") / "idx"
    with Retriever.create(directory, load_encoder("tiny-dse", max_pixels=64 * 28 * 28)) as r:
        r.add(EXAMPLES)
        yield r


QUERIES = ["how do I wire the inverter", "revenue by segment", "peregrine falcon"]


def test_modes_match_their_oracles(visual: Retriever) -> None:
    n = len(visual)
    assert visual.search_many(QUERIES, 3) == visual.search_many(QUERIES, 3, mode="visual")
    for q in QUERIES:
        assert visual.search(q, 3, mode="text") == visual.search_text(q, 3)
        vis, txt = visual.search(q, FUSION_DEPTH), visual.search_text(q, FUSION_DEPTH)
        assert len(vis) == n  # each side went FUSION_DEPTH deep (all 11 pages here)
        for fusion in ("rrf", "weighted"):
            got = visual.search(q, 4, mode="hybrid", fusion=fusion, weight=0.3)
            assert got == fuse(vis, txt, 4, fusion=fusion, weight=0.3)
            assert len(got) == 4 and [h.rank for h in got] == [1, 2, 3, 4]


def test_hybrid_puts_the_text_match_first_when_the_visual_side_is_noise(visual: Retriever) -> None:
    hits = visual.search("how do I wire the inverter", 3, mode="hybrid", fusion="weighted", weight=0.0)
    assert (Path(hits[0].source).name, hits[0].page) == ("solar-installation-guide.pdf", 3)
    text_first = visual.search_text("revenue by segment", 1)[0].page_id
    rrf = visual.search_many(QUERIES, len(visual), mode="hybrid")
    assert text_first in {h.page_id for h in rrf[1]}
    scores = np.array([h.score for h in rrf[1]])  # (n,)
    assert (np.diff(scores) <= 0).all()


def test_mode_errors(visual: Retriever, tmp_path: Path, corpus: Path) -> None:
    with pytest.raises(ValueError, match="unknown search mode 'both'"):
        visual.search("x", mode="both")
    with Retriever.create(tmp_path / "bm25", load_encoder("bm25"), image_size=0) as r:
        r.add(corpus / "acme-q3-2025-report.pdf")
        assert r.search("revenue", 2) == r.search("revenue", 2, mode="text")
        with pytest.raises(ValueError, match="mode 'hybrid' needs a visual index"):
            r.search("revenue", mode="hybrid")


def test_cli_hybrid_matches_python(visual: Retriever, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["search", "--index", str(visual.index.directory), "-k", "3", "--json", "revenue by segment"]
    assert main(args + ["--mode", "hybrid", "--fusion", "weighted", "--weight", "0.5"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = visual.search("revenue by segment", 3, mode="hybrid", fusion="weighted", weight=0.5)
    assert got == [h.to_json() for h in want]
    with pytest.raises(SystemExit):
        main(args + ["--mode", "hybrid", "--fusion", "max"])
    assert "invalid choice: 'max'" in capsys.readouterr().err
