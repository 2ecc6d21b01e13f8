"""Query glossaries (`dse.text.glossary`): a measure a question names brings its statement line items.

Pinned token for token; pages are never expanded; new indexes record "finance-1"; an index that
records no glossary (built before them) keeps tokenizing queries as pages, whichever way it is opened.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_ingest import make_pdf, write

from dse import Retriever, load_encoder
from dse.encoders.bm25 import BM25Encoder
from dse.text.glossary import FINANCE_1, GLOSSARIES
from dse.text.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def finance() -> Tokenizer:
    return Tokenizer(glossary="finance-1")


def test_a_named_measure_brings_its_line_items(finance: Tokenizer) -> None:
    query = "What is Nike's current ratio in FY2021?"
    assert finance.tokenize_query(query) == finance.tokenize(query) + [
        "total", "current", "asset", "total_current", "current_asset",
        "total", "current", "liabil", "total_current", "current_liabil",
        "balanc", "sheet", "balanc_sheet"]  # each line item tokenized alone: no pair joins two


@pytest.mark.parametrize("query", ["3M debt-to-equity ratio", "3M Debt/Equity", "the debt to equity of 3M"])
def test_entries_match_on_words(finance: Tokenizer, query: str) -> None:
    extra = finance.tokenize_query(query)[len(finance.tokenize(query)):]
    assert extra[:3] == ["long", "term", "debt"] and "sharehold_equiti" in extra


def test_no_measure_no_glossary_and_pages_unchanged(finance: Tokenizer) -> None:
    plain = Tokenizer()
    assert plain.options().get("glossary") is None and plain.glossary == "none"
    assert plain.tokenize_query("current ratio") == plain.tokenize("current ratio")
    assert finance.tokenize_query("revenue growth in 2021") == finance.tokenize("revenue growth in 2021")
    assert finance.tokenize("current ratio") == plain.tokenize("current ratio")  # pages: never expanded
    encoder = BM25Encoder()
    assert encoder.glossary == "finance-1" and encoder.options()["glossary"] == "finance-1"
    assert encoder.encode_pages(["current ratio"]) == [plain.tokenize("current ratio")]
    assert len(encoder.encode_queries(["current ratio"])[0]) > len(plain.tokenize("current ratio"))


def test_every_entry_has_words_and_line_items(finance: Tokenizer) -> None:
    assert set(GLOSSARIES) == {"finance-1"}
    for key, items in FINANCE_1.items():
        assert finance.words(key), key
        assert items and all(finance.tokenize(item) for item in items), key


def test_unknown_glossary_names_the_choices() -> None:
    with pytest.raises(ValueError, match="finance-1"):
        Tokenizer(glossary="nope")
    with pytest.raises(ValueError, match="finance-1"):
        BM25Encoder(glossary="nope")


def _statements(folder: Path) -> Path:
    write(folder / "ACME_2021_10K.pdf", make_pdf([
        "ACME annual report. Our current strategy and the ratio of stores to regions.",
        "Consolidated balance sheets. Total current assets 5,000. Total current liabilities 2,500.",
        "Risk factors. Competition, regulation and currency.",
    ], size=(900, 300)))
    return folder


def test_a_new_index_records_the_glossary_and_finds_the_statement(tmp_path: Path) -> None:
    docs = _statements(tmp_path / "docs")
    with Retriever.create(tmp_path / "new", load_encoder("bm25")) as r:
        r.add([docs], workers=0)
        assert r.search("current ratio", k=1, mode="text")[0].page == 2
    recorded = json.loads((tmp_path / "new" / "manifest.json").read_text())["encoder"]["options"]
    assert recorded["glossary"] == "finance-1"
    with Retriever.create(tmp_path / "off", load_encoder("bm25", glossary="none")) as r:
        r.add([docs], workers=0)
        assert r.search("current ratio", k=1, mode="text")[0].page == 1  # the words alone: page 1


@pytest.mark.parametrize("how", ["manifest", "bm25"])
def test_an_index_recording_no_glossary_keeps_queries_as_pages(tmp_path: Path, how: str) -> None:
    """A dse-2 index built before glossaries (its manifest records none) ranks as it did."""
    docs = _statements(tmp_path / "docs")
    directory = tmp_path / "old"
    with Retriever.create(directory, load_encoder("bm25")) as r:
        r.add([docs], workers=0)
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["encoder"]["options"]["glossary"]
    path.write_text(json.dumps(manifest))
    with Retriever.open(directory, None if how == "manifest" else load_encoder("bm25")) as r:
        assert r.encoder.options().get("glossary") is None and r.encoder.glossary == "none"
        assert r.search("current ratio", k=1, mode="text")[0].page == 1
    with pytest.raises(Exception, match="glossary"):
        Retriever.open(directory, load_encoder("bm25", glossary="finance-1"))
