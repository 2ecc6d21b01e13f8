"""Word forms recorded at commit time (`dse.text.forms`): which pages they cover, and snippets from them.

Snippets from the forms must equal snippets that tokenize every word of the page; an index whose
catalogue does not record them all (built before them, or written by a dse without them) falls
back to tokenizing, never to missing highlights.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from test_ingest import make_pdf, write
from test_snippets import _old_snippet

import dse
from dse.serve.service import ServeConfig, Service
from dse.text.forms import word_forms

TEXTS = [
    ["Operating margins grew in FY2018", "Revenue of the AMAZON_2017_10K filing", "Cash flow, 1,577 units"],
    ["The margin narrowed; revenues fell", "Häuser und Öl, naïve élèves", "Q4 results: well-being programme"],
    ["İstanbul office; Straße 10-K", "Marginal notes on the cash-flow statement", ""],
]
QUERIES = ["margin", "revenue 2018", "cash flow", "Haus", "10-K Q4", "istanbul strasse", "nothing matches", ""]


def _build(root: Path, docs: list[list[str]]) -> Path:
    for i, pages in enumerate(docs):
        write(root / "docs" / f"doc{i}.pdf", make_pdf(pages, size=(400, 200)))
    with dse.Retriever.create(root / "idx", dse.load_encoder("bm25")) as r:
        for i in range(len(docs)):  # one commit each
            r.add([root / "docs" / f"doc{i}.pdf"], workers=0)
    return root / "idx"


def _coverage(index: Path) -> int | None:
    with sqlite3.connect(index / "catalogue.sqlite") as db:
        try:
            row = db.execute("SELECT value FROM store_meta WHERE key = 'word_forms_rows'").fetchone()
        except sqlite3.OperationalError:
            return None
    return None if row is None else int(row[0])


def _check_snippets(index: Path) -> None:
    svc = Service(ServeConfig(index=index, preload=False))
    try:
        pages = svc.index.live_pages()
        for query in QUERIES:
            got = svc.snippets.many([p.page_id for p in pages], query)
            want = [_old_snippet(p.text, query, svc.index.tokenize, svc.snippets._width) for p in pages]
            assert [(s.text, s.highlights) for s in got] == want, query
    finally:
        svc.close()


def test_every_commit_records_its_words(tmp_path: Path) -> None:
    index = _build(tmp_path, TEXTS)
    with dse.Retriever.open(index) as r:
        pages = r.index.live_pages()
        assert _coverage(index) == len(pages) == 9
        pairs = word_forms([p.text for p in pages], r.index.tokenize)
        by_token: dict[str, set[str]] = {}
        for token, word in pairs:
            by_token.setdefault(token, set()).add(word)
        for token in ("margin", "revenu", "2018", "fy2018", "hous", "zzz"):
            assert r.index.word_forms([token]) == {token: frozenset(by_token.get(token, ()))}, token
        assert {"margins", "margin", "Marginal"} <= r.index.word_forms(["margin"])["margin"]  # Snowball: marginal
        assert r.index.word_forms([]) == {}
        both = r.index.word_forms(["margin", "revenu", "margin"])
        assert both == {"margin": frozenset(by_token["margin"]), "revenu": frozenset(by_token["revenu"])}
    _check_snippets(index)


def test_an_index_without_forms_tokenizes_its_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A catalogue from before word forms (no record of them): snippets as before, commits add none
    and do not compute them."""
    import dse.text.forms

    index = _build(tmp_path, TEXTS[:2])
    monkeypatch.setattr(dse.text.forms, "word_forms", lambda *a: pytest.fail("word forms computed for nothing"))
    with sqlite3.connect(index / "catalogue.sqlite") as db:  # as a dse before word forms made it
        db.execute("DROP TABLE word_forms")
        db.execute("DROP TABLE store_meta")
    with dse.Retriever.open(index) as r:
        assert r.index.word_forms(["margin"]) is None
        write(tmp_path / "more.pdf", make_pdf(["margins again"], size=(400, 200)))
        r.add([tmp_path / "more.pdf"], workers=0)
        assert r.index.word_forms(["margin"]) is None and _coverage(index) is None
    _check_snippets(index)


def test_rows_committed_without_forms_are_not_covered(tmp_path: Path) -> None:
    """Rows a dse without word forms committed stay uncovered: later commits do not cover them."""
    index = _build(tmp_path, TEXTS[:1])
    with dse.Retriever.open(index) as r:
        catalogue = r.index.catalogue
        commit = catalogue.commit_sources

        def without_forms(sources, forms=None):  # what an older dse's commit does
            return commit(sources)

        catalogue.commit_sources = without_forms
        write(tmp_path / "old.pdf", make_pdf(["margins written by an older dse"], size=(400, 200)))
        r.add([tmp_path / "old.pdf"], workers=0)
        catalogue.commit_sources = commit
        assert _coverage(index) == 3 and r.index.word_forms(["margin"]) is None
        write(tmp_path / "new.pdf", make_pdf(["margin"], size=(400, 200)))
        r.add([tmp_path / "new.pdf"], workers=0)
        assert _coverage(index) == 3 and r.index.word_forms(["margin"]) is None
    _check_snippets(index)


def test_compaction_keeps_the_coverage(tmp_path: Path) -> None:
    index = _build(tmp_path, TEXTS)
    with dse.Retriever.open(index) as r:
        r.delete(sources=[tmp_path / "docs" / "doc0.pdf"])
        r.compact()
        assert _coverage(index) == len(r.index.live_pages()) == 6
        assert "margins" in r.index.word_forms(["margin"])["margin"]  # words of deleted pages may stay: only looked for
    _check_snippets(index)


def test_the_old_bm25_fixture_still_gets_highlights(tmp_path: Path) -> None:
    fixture = Path(__file__).parent / "index_fixtures" / "bm25-dse1"
    shutil.copytree(fixture, tmp_path / "index")
    with dse.Retriever.open(tmp_path / "index") as r:
        assert r.index.word_forms(["margin"]) is None
    _check_snippets(tmp_path / "index")


def test_page_texts_after_a_search_are_those_of_the_view(tmp_path: Path) -> None:
    """The texts a search read are kept in its view; a deletion publishes a view without them."""
    index = _build(tmp_path, TEXTS)
    with dse.Retriever.open(index) as r:
        hits = r.search("margin", k=5, mode="text")
        ids = [h.page_id for h in hits]
        assert set(ids) <= set(r.index.view().texts)
        assert r.index.page_texts(ids) == {p.page_id: p.text for p in r.index.live_pages() if p.page_id in ids}
        r.delete(sources=[hits[0].source])
        gone = {p for p in ids if p not in {q.page_id for q in r.index.live_pages()}}
        assert gone and not gone & set(r.index.page_texts(ids))


@pytest.mark.parametrize("language", ["en", "de", "tr"])
def test_word_forms_are_the_tokens_of_each_word(language: str) -> None:
    from dse.encoders.bm25 import BM25Encoder

    tokenize = BM25Encoder(language=language).encode_pages
    texts = ["Operating margins, FY2018; İstanbul", "Häuser\nund Öl", "", "  "]
    pairs = word_forms(texts, tokenize)
    words = sorted({w for t in texts for w in __import__("re").findall(r"\w+", t)})
    assert pairs == sorted({(tok, w) for w, toks in zip(words, tokenize(words)) for tok in toks})


def test_a_commit_brings_its_words_to_a_running_service(tmp_path: Path) -> None:
    """Word forms are kept per token and row count: a new page's new spelling of a token is highlighted."""
    index = _build(tmp_path, TEXTS[:1])
    svc = Service(ServeConfig(index=index, preload=False))
    try:
        first = svc.snippets.many([p.page_id for p in svc.index.live_pages()], "margin")
        assert any(s.highlights for s in first)
        write(tmp_path / "new.pdf", make_pdf(["MARGINS and Margining"], size=(400, 200)))
        svc.retriever.add([tmp_path / "new.pdf"], workers=0)
        new = [p for p in svc.index.live_pages() if p.source.endswith("new.pdf")]
        got = svc.snippets.many([p.page_id for p in new], "margin")[0]
        assert [got.text[a:b] for a, b in got.highlights] == ["MARGINS", "Margining"]
        assert (got.text, got.highlights) == _old_snippet(new[0].text, "margin", svc.index.tokenize, 240)
    finally:
        svc.close()
