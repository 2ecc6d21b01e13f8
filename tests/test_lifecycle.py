"""Index lifecycle: delete, update, sync, user metadata, refresh, old catalogues, and the CLI."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from dse import Retriever, load_encoder
from dse.cli.main import main
from dse.backends.records import NewPage
from dse.storage.catalogue import Catalogue
from dse.storage.page_index import PageIndex

ENC = {"name": "fake", "kind": "multi", "input": "image", "model": "m", "revision": None,
       "prompt_version": "1", "dim": 4, "options": {}}


def _unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    v = rng.standard_normal(shape).astype(np.float32)  # shape (..., dim)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _add(index: PageIndex, name: str, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    img = Image.new("RGB", (30, 40), "blue")
    pages = [NewPage(f"{name}-p{p}", p, f"{name} words", index.store_image(f"{name}-p{p}", img), {"kind": "pdf"})
             for p in range(1, n + 1)]
    vecs = list(_unit(rng, n, 2, 4))  # n pages of (2, dim) tokens
    index.add_source(f"{name}.pdf", f"digest-{name}", "pdf", pages, vecs)
    return vecs


def _ids(index: PageIndex, queries: list[np.ndarray], k: int = 50) -> list[str]:
    return sorted(h.record.page_id for h in index.search(queries, k)[0])


def test_delete_tombstones_pages_and_readd_keeps_ids(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    index = PageIndex.create(tmp_path / "idx", ENC)
    a, b = _add(index, "a", 3, rng), _add(index, "b", 2, rng)
    report = index.delete(page_ids=["a-p2", "nope"])
    assert (report.pages, report.sources, report.missing) == (1, 0, ("nope",))
    assert _ids(index, a[1:2]) == ["a-p1", "a-p3", "b-p1", "b-p2"]
    assert not (tmp_path / "idx/images/a-p2.jpg").exists() and (tmp_path / "idx/images/a-p1.jpg").exists()
    with pytest.raises(KeyError, match="a-p2"):
        index.page("a-p2")
    assert index.delete(sources=["b.pdf"]) == type(report)(2, 1, ())
    counts = index.counts()
    assert (counts.rows, counts.pages, counts.sources, counts.deleted_pages, counts.deleted_sources) == (5, 2, 1, 3, 1)
    assert (index.manifest.pages, index.manifest.sources) == (2, 1) and len(index) == 2
    index.close()

    index = PageIndex.open(tmp_path / "idx")  # tombstones persist; re-adding gives the same page ids
    assert _ids(index, b[:1]) == ["a-p1", "a-p3"]
    assert index.search(b[:1], 50, where={"page": 2})[0] == []
    _add(index, "b", 2, rng)
    assert _ids(index, b[:1]) == ["a-p1", "a-p3", "b-p1", "b-p2"] and len(index.engine) == 7
    assert index.delete(page_ids=["a-p1", "a-p3"]).sources == 1  # its last pages: the source goes too
    assert index.counts().sources == 1 and index.catalogue.source_digest("a.pdf") is None
    index.close()


def test_update_duplicate_and_sync(tmp_path: Path, corpus: Path) -> None:
    png = corpus / "harbour-line-timetable.png"
    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as r:
        first = r.add(corpus, metadata={"collection": "demo"})
        [(old_id, _)] = r.index.catalogue.images_of(str(png))
        img = Image.open(png).convert("RGB")
        ImageDraw.Draw(img).rectangle((0, 0, 20, 20), fill="red")
        img.save(png)  # new bytes at the same path: an update
        shutil.copy(corpus / "sourdough-baking.pdf", corpus / "copy-of-sourdough.pdf")  # same bytes, 2nd path
        again = r.add(corpus)
        assert again.added == again.updated == (str(png),) and again.pages == 1
        assert str(corpus / "copy-of-sourdough.pdf") in again.skipped
        with pytest.raises(KeyError):
            r.index.page(old_id)
        info = r.info()
        assert (info["pages"], info["sources"], info["deleted_pages"]) == (first.pages, 5, 1)
        [(new_id, _)] = r.index.catalogue.images_of(str(png))
        assert new_id != old_id and "collection" not in r.index.page(new_id).metadata  # added without it
        # a path that now holds bytes indexed elsewhere: its old pages go, nothing is indexed twice
        shutil.copy(corpus / "bird-field-guide.pdf", corpus / "acme-q3-2025-report.pdf")
        report = r.add(corpus)
        assert report.added == () and r.info()["sources"] == 4
        (corpus / "bird-field-guide.pdf").unlink()
        assert r.index.missing_sources([tmp_path / "elsewhere", corpus / "bird-field-guide.pdf"]) == []
        synced = r.sync([corpus])
        assert (synced.sources, synced.pages) == (1, 2) and r.info()["sources"] == 3
        assert all("bird" not in h.source for h in r.search("peregrine falcon", 10))


def test_refresh_sees_other_writers(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    writer = PageIndex.create(tmp_path / "idx", ENC, image_size=0)
    a = _add(writer, "a", 2, rng)
    reader = PageIndex.open(tmp_path / "idx")
    b = _add(writer, "b", 3, rng)
    writer.delete(sources=["a.pdf"])
    # the reader answers from the committed state it loaded (a's pages) until it refreshes: never
    # from a mix of two states (a deleted but b not yet loaded)
    assert _ids(reader, b[:1]) == ["a-p1", "a-p2"]
    assert reader.refresh() == 3 and _ids(reader, a[:1]) == ["b-p1", "b-p2", "b-p3"]
    _add(reader, "c", 1, rng)  # a second handle can write too (one at a time), then the first catches up
    _add(writer, "d", 1, rng)
    assert len(writer.engine) == len(writer.text_engine) == 7 and len(writer) == 5
    reader.close()
    writer.close()


def test_version_1_catalogue_is_migrated(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "catalogue.sqlite")
    db.executescript(
        "CREATE TABLE sources (source_id INTEGER PRIMARY KEY, path TEXT NOT NULL, digest TEXT NOT NULL UNIQUE,"
        " kind TEXT NOT NULL, pages INTEGER NOT NULL, added TEXT NOT NULL DEFAULT 'then');"
        "CREATE TABLE pages (row INTEGER PRIMARY KEY, page_id TEXT NOT NULL UNIQUE, source_id INTEGER NOT NULL"
        " REFERENCES sources(source_id), page INTEGER NOT NULL, text TEXT NOT NULL, image TEXT, metadata TEXT NOT NULL);"
        "CREATE INDEX pages_by_source ON pages(source_id, page);"
        "INSERT INTO sources VALUES (1, 'a.pdf', 'd1', 'pdf', 2, 'then');"
        "INSERT INTO pages VALUES (0, 'a-p1', 1, 1, 'x', NULL, '{}'), (1, 'a-p2', 1, 2, 'y', NULL, '{}');"
    )
    db.close()
    cat = Catalogue(tmp_path)
    assert len(cat) == 2 and cat.page("a-p2").text == "y" and cat.sources()[0]["added"] == "then"
    cat.delete(paths=["a.pdf"])
    assert cat.commit_source("a.pdf", "d1", "pdf", [NewPage("a-p1", 1, "x", None, {})]) == [2]
    cat.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_delete_sync_meta_where_info(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    idx = str(tmp_path / "idx")
    code, _, err = run(capsys, "index", str(corpus), "--index", idx, "--no-progress", "--meta", "shelf=3")
    assert code == 0 and "indexed 5 source(s), 11 page(s)" in err
    code, out, _ = run(capsys, "search", "--index", idx, "revenue", "--json", "-k", "20",
                       "--where", "shelf=3", "--where", "page>=2", "--where", "source~*acme*")
    assert code == 0 and sorted(h["page"] for h in json.loads(out)) == [2, 3]
    code, _, err = run(capsys, "search", "--index", idx, "report", "--where", "pgae>=2")
    assert code == 2 and "no page in this index has the field 'pgae'" in err
    acme = str(corpus / "acme-q3-2025-report.pdf")
    code, _, err = run(capsys, "delete", "--index", idx, "--source", acme, "missing.pdf")
    assert code == 1 and "deleted 3 page(s), 1 source(s); 8 page(s) left" in err and "not found: missing.pdf" in err
    code, out, _ = run(capsys, "search", "--index", idx, "peregrine", "--json", "-k", "1")
    page_id = json.loads(out)[0]["page_id"]
    code, _, err = run(capsys, "delete", "--index", idx, "--page-id", page_id)
    assert code == 0 and "deleted 1 page(s), 0 source(s); 7 page(s) left" in err
    (corpus / "sourdough-baking.pdf").unlink()
    code, _, err = run(capsys, "index", str(corpus), "--index", idx, "--no-progress", "--sync")
    assert code == 0 and "sync: deleted 1 missing source(s), 2 page(s)" in err
    assert "indexed 1 source(s), 3 page(s)" in err  # the deleted acme source is indexed again
    code, out, _ = run(capsys, "info", "--index", idx, "--sources")
    assert code == 0 and "pages      8" in out and "deleted    6 page(s), 2 source(s)" in out
    assert "acme-q3-2025-report.pdf  3 page(s)" in out
