"""Group commits: ready sources are committed together (one transaction, one engine shard).

Many small sources end up in few shards with exactly the rows, page ids and search results of
one commit per source; a source whose commit fails is retried alone and reported alone; an
update inside a group still tombstones the old pages; a killed run re-runs to the same state.
"""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_ingest import make_pdf, write
from test_interrupt import _counts, _dse, _interrupted_run

from dse import Retriever, load_encoder
from dse.backends.records import NewPage, NewSource
from dse.storage.catalogue import Catalogue
from dse.storage.layout import TEXT_DIR, VECTORS_DIR
from dse.engines.files import committed_shards
from dse.storage.page_index import PageIndex

N_DOCS = 18
WORDS = ["apple", "harbour", "inverter", "sourdough", "falcon", "ledger", "quartz", "meadow", "copper"]
QUERIES = ["apple harbour", "quartz meadow inverter", "copper ledger"]


def _pages(i: int) -> list[str]:
    """Texts of document i's pages (1 to 3 pages)."""
    return [f"doc{i} page{p} {WORDS[(i + p) % len(WORDS)]} {WORDS[(3 * i + p) % len(WORDS)]}"
            for p in range(1 + i % 3)]


@pytest.fixture()
def many(tmp_path: Path) -> Path:
    """N_DOCS small PDFs with text layers (36 pages in all)."""
    folder = tmp_path / "many"
    for i in range(N_DOCS):
        write(folder / f"doc{i:02d}.pdf", make_pdf(_pages(i)))
    return folder


def _shards(index: Path, sub: str = VECTORS_DIR) -> int:
    """Committed shards of the engine in `index/sub` (their marker files)."""
    with PageIndex.open(index) as opened:
        engine = opened.engine if sub == VECTORS_DIR else opened.text_engine
        return len(committed_shards(index / sub, type(engine).marker))


def _groups(page_counts: list[int], commit_pages: int) -> int:
    """Commits a run makes: ready sources are committed once they hold `commit_pages` pages, and at the end."""
    groups, held = 0, 0
    for pages in page_counts:
        held += pages
        if held >= commit_pages:
            groups, held = groups + 1, 0
    return groups + (held > 0)


def _rows(index: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(index / "catalogue.sqlite") as db:
        return db.execute(
            "SELECT p.row, p.page_id, s.path, p.page, p.deleted FROM pages p JOIN sources s USING (source_id) "
            "ORDER BY p.row"
        ).fetchall()


def _hits(r: Retriever, mode: str) -> list[list[tuple[str, float]]]:
    return [[(h.page_id, round(h.score, 4)) for h in r.search(q, k=12, mode=mode)] for q in QUERIES]


@pytest.mark.parametrize("name", ["bm25", "tiny-dse", "tiny-colqwen2"])
def test_groups_make_few_shards_and_the_same_index(tmp_path: Path, many: Path, name: str) -> None:
    results = {}
    for commit_pages in (1, 8):
        index = tmp_path / f"idx{commit_pages}"
        with Retriever.create(index, load_encoder(name, **({} if name == "bm25" else {"batch_size": 4}))) as r:
            report = r.add(many, dpi=30, workers=0, commit_pages=commit_pages)
            assert not report.failures and len(report.added) == N_DOCS
            modes = ["text"] if name == "bm25" else ["visual", "text"]
            results[commit_pages] = (report.added, report.pages, _rows(index), [_hits(r, m) for m in modes])
            counts = r.index.counts()
            assert (r.index.manifest.pages, r.index.manifest.sources) == (counts.pages, counts.sources)
        page_counts = [len(_pages(i)) for i in range(N_DOCS)]
        assert _shards(index) == _groups(page_counts, commit_pages)
        if name != "bm25":
            assert _shards(index, TEXT_DIR) == _groups(page_counts, commit_pages)
    assert _groups([len(_pages(i)) for i in range(N_DOCS)], 8) == 4  # vs 18 shards, one per source
    assert results[8] == results[1]
    assert results[1][1] == sum(len(_pages(i)) for i in range(N_DOCS))


def test_a_failing_source_in_a_group_fails_alone(tmp_path: Path, many: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Catalogue.commit_sources
    bad = str(many / "doc07.pdf")

    def refuse_doc07(self: Catalogue, sources: list[NewSource], forms=None) -> list[list[int]]:
        if any(src.path == bad for src in sources):
            raise RuntimeError("the disk refused this one")
        return real(self, sources, forms)

    monkeypatch.setattr(Catalogue, "commit_sources", refuse_doc07)
    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as r:
        report = r.add(many, workers=0, commit_pages=1000)  # one group holding every source
        assert [f.source for f in report.failures] == [bad]
        assert "doc07.pdf" in report.failures[0].error and "the disk refused this one" in report.failures[0].error
        assert len(report.added) == N_DOCS - 1 and bad not in report.added
        assert report.pages == sum(len(_pages(i)) for i in range(N_DOCS) if i != 7)
        assert len(r) == report.pages and len(r.index.engine) == len(r.index.catalogue)
        assert r.search("doc3 page0", k=1, mode="text")[0].source.endswith("doc03.pdf")
    monkeypatch.setattr(Catalogue, "commit_sources", real)
    with Retriever.open(tmp_path / "idx") as r:
        again = r.add(many, workers=0)
        assert again.added == (bad,) and len(again.skipped) == N_DOCS - 1 and not again.failures
        assert len(r) == sum(len(_pages(i)) for i in range(N_DOCS))


def test_an_update_inside_a_group_tombstones_the_old_pages(tmp_path: Path, many: Path) -> None:
    index = tmp_path / "idx"
    edited = many / "doc05.pdf"  # 3 pages
    with Retriever.create(index, load_encoder("bm25"), image_size=64) as r:
        r.add(many, workers=0)
        found = r.search("doc5", k=3, mode="text")  # "doc5" ranks doc05's pages first ("doc" is in every page)
        old = [h.page_id for h in found]
        old_images = [index / r.index.page(pid).image for pid in old]
        assert {Path(h.source).name for h in found} == {"doc05.pdf"} and all(p.exists() for p in old_images)
        shards = _shards(index)
    write(edited, make_pdf(["doc5 rewritten zeppelin"]))
    write(many / "new.pdf", make_pdf(["a new zeppelin page", "second page"]))
    with Retriever.open(index) as r:
        report = r.add(many, workers=0, commit_pages=1000)
        assert report.updated == (str(edited),) and sorted(report.added) == [str(edited), str(many / "new.pdf")]
        counts = r.index.counts()
        assert counts.deleted_pages == 3 and counts.deleted_sources == 1 and counts.sources == N_DOCS + 1
        for pid in old:
            with pytest.raises(KeyError):
                r.index.page(pid)
        assert not any(p.exists() for p in old_images)
        hits = r.search("zeppelin", k=10, mode="text")
        assert sorted(Path(h.source).name for h in hits) == ["doc05.pdf", "new.pdf"]
        assert all(h.page_id not in old for h in r.search("doc5", k=30, mode="text"))
    assert _shards(index) == shards + 1  # the update and the new file: one commit


def test_killed_group_run_reruns_to_the_same_state(tmp_path: Path, corpus: Path) -> None:
    clean = tmp_path / "clean"
    with Retriever.create(clean, load_encoder("bm25")) as r:
        r.add(corpus, workers=0)
        clean_hits = sorted((h.page_id, round(h.score, 5)) for h in r.search("revenue quarter report", k=20))
        clean_sources = [s["pages"] for s in r.index.catalogue.sources()]
    assert _shards(clean) == 1  # 11 pages < the default group: one commit

    index = tmp_path / "index"
    assert _interrupted_run(corpus, index, tmp_path, signal.SIGKILL, commit_pages=4) == -signal.SIGKILL
    first_group = next(n for n in range(1, len(clean_sources)) if sum(clean_sources[:n]) >= 4)
    assert _counts(index)[0] == first_group >= 2  # the first group only; the second was in flight

    done = _dse("index", str(corpus), "--index", str(index), "--no-progress", "--workers", "0",
                "--commit-pages", "4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"skipped {first_group} already indexed" in done.stderr
    assert _counts(index) == _counts(clean)
    assert sorted(r[1] for r in _rows(index)) == sorted(r[1] for r in _rows(clean))
    with Retriever.open(index) as r:
        hits = sorted((h.page_id, round(h.score, 5)) for h in r.search("revenue quarter report", k=20))
        assert len(r.index.engine) == len(r.index.catalogue) == len(r)
    assert hits == clean_hits


def test_catalogue_group_is_one_transaction(tmp_path: Path) -> None:
    cat = Catalogue(tmp_path)

    def source(name: str, n: int, first: int = 1) -> NewSource:
        return NewSource(f"{name}.pdf", f"d-{name}", "pdf", [NewPage(f"{name}-p{p}", p, "t", None, {})
                                                           for p in range(first, first + n)])

    assert cat.commit_sources([source("a", 2), source("b", 3)]) == [[0, 1], [2, 3, 4]]
    with pytest.raises(sqlite3.IntegrityError):  # c's second page id is already live: the group rolls back
        cat.commit_sources([source("c", 1), NewSource("c2.pdf", "d-c2", "pdf", source("a", 1).pages)])
    assert len(cat) == 5 and cat.num_sources() == 2
    updated = NewSource("a.pdf", "d-a2", "pdf", source("a", 1, first=7).pages)
    assert cat.commit_sources([updated, source("d", 1)]) == [[5], [6]]
    assert cat.counts().deleted_pages == 2 and cat.source_digest("a.pdf") == "d-a2"
    assert cat.commit_source("e.pdf", "d-e", "pdf", source("e", 1).pages) == [7]
    cat.close()


def test_add_sources_writes_one_shard_and_checks_its_input(tmp_path: Path) -> None:
    from test_crash import encoder

    index = PageIndex.create(tmp_path / "idx", encoder("single"), image_size=0)
    vecs = np.eye(8, dtype=np.float32)[:5]  # (pages, dim)
    a = NewSource("a.pdf", "da", "pdf", [NewPage(f"a{p}", p, "x", None, {}) for p in (1, 2)])
    b = NewSource("b.pdf", "db", "pdf", [NewPage(f"b{p}", p, "y", None, {}) for p in (1, 2, 3)])
    assert index.add_sources([a, b], [vecs[:2], vecs[2:]]) == [[0, 1], [2, 3, 4]]
    assert len(committed_shards(tmp_path / "idx" / VECTORS_DIR, ".npy")) == 1
    assert [h[0].record.page_id for h in index.search(vecs, k=1)] == ["a1", "a2", "b1", "b2", "b3"]
    with pytest.raises(ValueError, match="b.pdf: 3 pages but 2 vectors"):
        index.add_sources([b], [vecs[:2]])
    index.close()


def test_commit_pages_must_be_positive(tmp_path: Path, many: Path) -> None:
    from dse.cli.main import main

    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as r, pytest.raises(ValueError, match="commit_pages"):
        r.add(many, commit_pages=0)
    assert main(["index", str(many), "--index", str(tmp_path / "cli"), "--commit-pages", "0"]) == 2
    assert not (tmp_path / "cli").exists()
