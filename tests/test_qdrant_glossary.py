"""The query glossary on a Qdrant-backed index: text queries expanded exactly as the embedded BM25 does.

A bm25 index (the encoder records `glossary: finance-1`) on the embedded index directory, on
qdrant-client's local mode and on qdrant-edge-py, the same pages: a text search naming a measure
("current ratio") ranks the statement that reports its line items first, on every backend, and
the hits are the embedded index's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dse.backends import NewPage, NewSource, backend_class
from dse.encoders.bm25 import BM25Encoder
from dse.text.tokenizer import Tokenizer

PAGES = [
    "ACME annual report. Our current strategy and the ratio of stores to regions.",
    "Consolidated balance sheets. Total current assets 5,000. Total current liabilities 2,500.",
    "Risk factors. Competition, regulation and currency.",
    "Statements of income. Revenues 9,000. Cost of sales 6,000.",
    "Management discussion of the current year and the ratio of debt.",
]
QUERIES = ["What is ACME's current ratio in FY2021?", "ACME inventory turnover", "current ratio", "risk factors"]


def _make(backend: str, tmp: Path):
    encoder = BM25Encoder()
    options: dict = {}
    if backend != "directory":
        pytest.importorskip("qdrant_client")
        if backend == "qdrant-edge":
            pytest.importorskip("qdrant_edge")
        options = {"qdrant": f"edge:{tmp / 'edge'}" if backend == "qdrant-edge" else str(tmp / "local"),
                   "collection": "g"}
    record = {"name": "bm25", "kind": "text", "model": "bm25s", "dim": None, "prompt_version": "1",
              "options": encoder.options()}
    index = backend_class(backend.split("-")[0]).create(tmp / "idx", record, options, image_size=0)
    src = NewSource("/docs/ACME_2021_10K.pdf", "d1", "pdf",
                    tuple(NewPage(f"{0:016x}-p{i + 1:05d}", i + 1, text, None, {}) for i, text in enumerate(PAGES)))
    index.add_sources([src], [encoder.encode_pages(list(PAGES))])
    return index


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> list[list[tuple[int, float]]]:
    with _make("directory", tmp_path_factory.mktemp("emb")) as index:
        return [[(h.record.page, h.score) for h in hits if h.score > 0] for hits in index.search_text(QUERIES, 5)]


@pytest.mark.parametrize("backend", ["qdrant", "qdrant-edge"])
def test_text_queries_use_the_glossary_as_the_embedded_index_does(backend: str, tmp_path: Path,
                                                                   embedded: list[list[tuple[int, float]]]) -> None:
    with _make(backend, tmp_path) as index:
        assert index.tokenize(["current ratio"], queries=True)[0] == Tokenizer(glossary="finance-1").tokenize_query(
            "current ratio")
        assert index.tokenize(["current ratio"])[0] == Tokenizer().tokenize("current ratio")  # pages: never expanded
        got = [[(h.record.page, h.score) for h in hits if h.score > 0] for hits in index.search_text(QUERIES, 5)]
    assert embedded[0][0][0] == 2 and embedded[1][0][0] == 4  # the statements that report the measures
    for mine, theirs in zip(got, embedded):
        assert [p for p, _ in mine] == [p for p, _ in theirs]
