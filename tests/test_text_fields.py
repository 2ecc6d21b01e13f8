"""The source's name as a BM25 field: a question naming the document finds that document's page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_ingest import make_pdf, write

from dse import Retriever, load_encoder
from dse.text.fields import bm25_text, source_name

PAGE = "Research and development expenses rose in the year, as the table below shows."


def test_bm25_text_and_names() -> None:
    assert source_name("/data/NETFLIX_2015_10K.pdf") == "NETFLIX_2015_10K"
    assert source_name("https://example.org/reports/q3.html") == "example.org/reports/q3.html"
    assert bm25_text("page", "/a/b.pdf", 0) == "page"
    assert bm25_text("page", "/a/b.pdf", 2) == "page\nb\nb"


@pytest.mark.parametrize("encoder", ["bm25", "tiny-dse"])
def test_a_question_naming_the_document_finds_its_page(tmp_path: Path, encoder: str) -> None:
    docs = tmp_path / "docs"
    for i, name in enumerate(("AMAZON_2015_10K", "NETFLIX_2015_10K", "ADOBE_2015_10K")):  # the same page text
        write(docs / f"{name}.pdf", make_pdf([PAGE, f"Cover page of the annual report, edition {i}."]))
    with Retriever.create(tmp_path / "idx", load_encoder(encoder)) as r:
        r.add([docs], workers=0)
        hits = r.search("What was Netflix's research and development expense in FY2015?", k=3, mode="text")
    assert Path(hits[0].source).name == "NETFLIX_2015_10K.pdf" and hits[0].page == 1
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["store"]["text_fields"] == {"version": 2}
