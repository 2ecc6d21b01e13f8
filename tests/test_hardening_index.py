"""Issue 11: untrusted indexes (no path out of the index, read-only media, copies), source identity, image files.

Tests run as root, which ignores permission bits: a read-only index is simulated by the code path
(`read_only=True`, or `media_read_only` patched to report read-only media) and, where `unshare`
can make one, checked on a real read-only bind mount.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dse import Retriever, load_encoder
from dse.storage import images as image_files
from dse.storage import layout
from dse.backends.records import NewPage, NewSource
from dse.storage.layout import ReadOnlyIndexError, UnsafeIndexPathError, source_key
from dse.storage.page_index import PageIndex
from ingest.page import make_page_id

ENC = {"name": "fake", "model": "m", "revision": None, "kind": "single", "dim": 4, "prompt_version": "1", "options": {}}
DSE = [sys.executable, "-m", "dse.cli.main"]


def _png(path: Path, colour: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), colour).save(path)
    return path


def _vectors(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)  # (n, dim)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _source(index: PageIndex, name: str, digest: str, n: int = 2) -> NewSource:
    img = Image.new("RGB", (20, 30), "red")
    pages = []
    for p in range(1, n + 1):
        pid = make_page_id(digest, p)
        pages.append(NewPage(pid, p, f"{name} words {p}", index.store_image(pid, img), {"kind": "pdf"}))
    return NewSource(name, digest, "pdf", tuple(pages))


def _index_with_row(tmp_path: Path, image: str | None = None) -> tuple[PageIndex, str]:
    """An index of two sources; the first row's image column set to `image` (a hostile catalogue)."""
    index = PageIndex.create(tmp_path / "idx", ENC)
    a, b = _source(index, "/docs/a.pdf", "a" * 64), _source(index, "/docs/b.pdf", "b" * 64)
    index.add_sources([a, b], [_vectors(2, 0), _vectors(2, 1)])
    pid = a.pages[0].page_id
    if image is not None:
        with sqlite3.connect(index.catalogue.path) as db:
            db.execute("UPDATE pages SET image = ? WHERE page_id = ?", (image, pid))
    return index, pid


# ---------------------------------------------------------------- nothing outside the index
@pytest.mark.parametrize("kind", ["dotdot", "absolute", "id"])
def test_a_row_naming_a_file_outside_is_refused(tmp_path: Path, kind: str) -> None:
    victim = tmp_path / "victim.jpg"
    Image.new("RGB", (5, 5)).save(victim)
    image = {"dotdot": "../victim.jpg", "absolute": str(victim), "id": "images/../../victim.jpg"}[kind]
    index, pid = _index_with_row(tmp_path, image)
    if kind == "id":  # a page id that is itself a path
        with sqlite3.connect(index.catalogue.path) as db:
            db.execute("UPDATE pages SET page_id = '../../victim', image = ? WHERE page_id = ?", (image, pid))
        pid = "../../victim"
    with pytest.raises(UnsafeIndexPathError, match=r"idx: row 0 .*dse reads and deletes no file outside"):
        index.page_image(pid)
    with pytest.raises(UnsafeIndexPathError, match="row 0"):
        index.delete(page_ids=[pid])
    with pytest.raises(UnsafeIndexPathError, match="row 0"):
        index.delete(sources=["/docs/a.pdf"])
    with pytest.raises(UnsafeIndexPathError, match="row 0"):  # --sync: /docs/a.pdf does not exist
        index.delete(sources=index.missing_sources(["/"]), as_indexed=True)
    update = _source(index, "/docs/a.pdf", "c" * 64)  # an edited file replaces the bad source
    with pytest.raises(UnsafeIndexPathError, match="row 0"):
        index.add_sources([update], [_vectors(2, 2)])
    assert victim.exists() and index.counts().pages == 4 and index.counts().rows == 4  # nothing happened
    index.close()


def test_symbolic_links_out_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    index, pid = _index_with_row(tmp_path)
    link = index.directory / "images" / f"{pid}.jpg"
    victim = outside / "secret.jpg"
    Image.new("RGB", (5, 5)).save(victim)
    link.unlink()
    link.symlink_to(victim)
    with pytest.raises(UnsafeIndexPathError, match="symbolic link"):
        index.page_image(pid)
    fifo = index.directory / "images" / f"{make_page_id('b' * 64, 1)}.jpg"
    fifo.unlink()
    os.mkfifo(fifo)  # would block a plain open()
    with pytest.raises(UnsafeIndexPathError, match="not a regular file"):
        index.page_image(make_page_id("b" * 64, 1))
    fifo.unlink()
    assert index.delete(page_ids=[pid]).pages == 1  # removes the link, not what it points to
    assert victim.exists() and not link.is_symlink()

    # the whole images folder replaced by a link out of the index
    other = index.add_sources([_source(index, "/docs/c.pdf", "c" * 64)], [_vectors(2, 3)])
    assert other
    images = index.directory / "images"
    for f in images.iterdir():
        shutil.copy(f, outside / f.name)
    shutil.rmtree(images)
    images.symlink_to(outside)
    there = sorted(outside.iterdir())
    cid = make_page_id("c" * 64, 1)
    with pytest.raises(UnsafeIndexPathError, match="images/ is a symbolic link"):
        index.page_image(cid)
    with pytest.raises(UnsafeIndexPathError, match="images/ is a symbolic link"):
        index.delete(sources=["/docs/c.pdf"])
    with pytest.raises(UnsafeIndexPathError):
        index.store_image(make_page_id("d" * 64, 1), Image.new("RGB", (4, 4)))
    assert (outside / f"{cid}.jpg").exists() and sorted(outside.iterdir()) == there
    index.close()


def test_store_image_refuses_an_id_that_is_a_path(tmp_path: Path) -> None:
    index = PageIndex.create(tmp_path / "idx", ENC)
    for bad in ("../x", "/etc/x", ".hidden", "a/b"):
        with pytest.raises(ValueError, match="cannot name a file"):
            index.store_image(bad, Image.new("RGB", (4, 4)))
    page = NewPage(make_page_id("e" * 64, 1), 1, "", "../x.jpg", {})
    with pytest.raises(ValueError, match="names the image"):
        index.add_sources([NewSource("/x.pdf", "e" * 64, "pdf", (page,))], [_vectors(1, 0)])
    assert not (tmp_path / "x.jpg").exists()
    index.close()


# ---------------------------------------------------------------- read-only media, copies
def _bm25_index(tmp_path: Path, corpus: Path) -> Path:
    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as r:
        r.add(corpus, workers=0)
    return tmp_path / "idx"


def _state(r: Retriever) -> tuple[int, int, list[tuple[str, int]]]:
    hits = r.search("revenue by segment", k=3)
    return len(r), r.info()["sources"], [(h.page_id, h.page) for h in hits]


def test_every_write_ends_with_a_checkpoint_so_a_copy_holds_every_commit(tmp_path: Path, corpus: Path) -> None:
    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as r:
        r.add(corpus / "acme-q3-2025-report.pdf", workers=0)
        r.add(corpus, workers=0)  # the writer stays open: its WAL would hold these commits
        r.delete(sources=[corpus / "sourdough-baking.pdf"])
        wal = tmp_path / "idx" / "catalogue.sqlite-wal"
        assert not wal.exists() or wal.stat().st_size == 0
        expected = _state(r)
        # copy only the index files themselves (no -wal / -shm), while the writer is still open
        shutil.copytree(tmp_path / "idx", tmp_path / "copy", ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    assert expected[0] == 9
    with Retriever.open(tmp_path / "copy") as copy:
        assert _state(copy) == expected


def test_read_only_open_writes_nothing_and_refuses_writes(tmp_path: Path, corpus: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    directory = _bm25_index(tmp_path, corpus)
    with Retriever.open(directory) as r:
        expected = _state(r)
    before = sorted((p.relative_to(directory), p.stat().st_mtime_ns) for p in directory.rglob("*"))
    # as on read-only media (root ignores chmod, so the detection is what is simulated): immutable=1
    monkeypatch.setattr(layout, "media_read_only", lambda d: True)
    monkeypatch.setattr("dse.storage.page_index.media_read_only", lambda d: True)
    with Retriever.open(directory) as r:
        assert r.index.read_only and "immutable=1" in str(r.index.catalogue._uri)
        assert _state(r) == expected
        assert r.page_image(expected[2][0][0]).size[0] > 100
        with pytest.raises(ReadOnlyIndexError, match="read-only"):
            r.add(corpus / "extra.pdf")
        with pytest.raises(ReadOnlyIndexError, match="copy the index to writable storage"):
            r.delete(page_ids=[expected[2][0][0]])
        assert r.refresh() == 0
    assert sorted((p.relative_to(directory), p.stat().st_mtime_ns) for p in directory.rglob("*")) == before


def test_read_only_bind_mount(tmp_path: Path, corpus: Path) -> None:
    """A real read-only mount (root in a private mount namespace): `dse search` and `dse info` work."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare to make a read-only bind mount")
    directory = _bm25_index(tmp_path, corpus)
    mount = tmp_path / "ro"
    mount.mkdir()
    search = " ".join(DSE + ["search", "--index", str(mount), "--mode", "text", "--json", "-k", "2", "'revenue by segment'"])
    delete = " ".join(DSE + ["delete", "--index", str(mount), "--source", str(corpus / "sourdough-baking.pdf")])
    script = (f"mount --bind {directory} {mount} && mount -o remount,bind,ro {mount} && touch {mount}/x 2>/dev/null; "
              f"echo touch=$?; {search}; {delete}; echo delete=$?")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120, check=False,
                          cwd=Path(__file__).resolve().parents[1])
    if "touch=0" in proc.stdout or "mount" in proc.stderr and "touch=" not in proc.stdout:
        pytest.skip(f"could not make a read-only mount: {proc.stderr[-300:]}")
    assert "touch=1" in proc.stdout, proc.stdout + proc.stderr
    hits = json.loads(proc.stdout.split("touch=1", 1)[1].split("delete=")[0])
    assert hits and hits[0]["source"].endswith("acme-q3-2025-report.pdf")
    assert "delete=2" in proc.stdout and "opened read-only" in proc.stderr
    assert "DEBUG" not in proc.stdout + proc.stderr


# ---------------------------------------------------------------- one identity per source
def test_any_spelling_of_a_file_is_one_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    papers = tmp_path / "home" / "papers"
    a = _png(papers / "a.png", (255, 0, 0))
    _png(papers / "sub" / "b.png", (0, 255, 0))
    (tmp_path / "link").symlink_to(papers, target_is_directory=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(papers)
    with Retriever.create("~/idx", load_encoder("bm25")) as r:
        first = r.add(["~/papers"], workers=0)  # the README's call
        assert sorted(first.added) == [str(a), str(papers / "sub" / "b.png")]
        for spelling in (".", str(papers), "../papers/./sub/..", tmp_path / "link", "~/papers/"):
            again = r.add([spelling], workers=0)
            assert (again.added, len(again.skipped), again.updated) == ((), 2, ()), spelling
        monkeypatch.chdir(tmp_path)
        _png(a, (255, 0, 1))  # edited, then indexed through the link from another directory
        edited = r.add(["link/a.png"], workers=0)
        assert edited.updated == (str(a),) and r.info()["sources"] == 2 and len(r) == 2
        assert r.delete(sources=["~/papers/sub/b.png"]).pages == 1
        assert r.delete(sources=["link/a.png"]).pages == 1 and len(r) == 0
    assert (tmp_path / "home" / "idx" / "manifest.json").is_file()


def test_a_moved_file_is_recorded_at_its_new_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = _png(tmp_path / "in" / "a.png", (10, 20, 30))
    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as r:
        page_id = r.add([old], workers=0)
        pid = r.index.catalogue.sources()[0]["digest"]
        new = tmp_path / "archive" / "a-2024.png"
        new.parent.mkdir()
        old.rename(new)
        monkeypatch.setattr("dse.retrieve.run.IndexRun.push", lambda *a: pytest.fail("a moved file is rendered again"))
        report = r.add([tmp_path / "archive"], workers=0)
        assert report.skipped == (str(new),) and report.added == ()
        assert [s["path"] for s in r.index.catalogue.sources()] == [str(new)]
        assert r.index.catalogue.sources()[0]["digest"] == pid and len(r) == 1 and r.info()["deleted_pages"] == 0
        assert page_id.pages == 1
        # a copy (both files exist) is still indexed once, under the first path
        shutil.copy(new, tmp_path / "copy.png")
        assert r.add([tmp_path / "copy.png"], workers=0).skipped == (str(tmp_path / "copy.png"),)
        assert [s["path"] for s in r.index.catalogue.sources()] == [str(new)]


def test_relative_paths_of_older_indexes_are_matched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    a = _png(tmp_path / "docs" / "a.png", (1, 2, 3))
    b = _png(tmp_path / "docs" / "b.png", (4, 5, 6))
    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as r:
        r.add([a, b], workers=0)
    with sqlite3.connect(tmp_path / "idx" / "catalogue.sqlite") as db:  # as an older dse recorded them
        db.execute("UPDATE sources SET path = substr(path, ?)", (len(str(tmp_path)) + 2,))
    with Retriever.open(tmp_path / "idx") as r:
        assert sorted(s["path"] for s in r.index.catalogue.sources()) == ["docs/a.png", "docs/b.png"]
        report = r.add([tmp_path / "docs" / "a.png"], workers=0)  # same bytes: re-recorded under its key
        assert report.skipped == (str(a),)
        assert {s["path"] for s in r.index.catalogue.sources()} == {"docs/b.png", str(a)}
        b.unlink()
        assert r.sync([tmp_path / "docs"]).sources == 1  # the relative one, against the current directory
        assert [s["path"] for s in r.index.catalogue.sources()] == [str(a)] and len(r) == 1
    assert source_key("https://example.org/a/../b") == "https://example.org/a/../b"


# ---------------------------------------------------------------- page image files
def test_images_are_fsynced_before_the_commit_that_names_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = PageIndex.create(tmp_path / "idx", ENC)
    events: list[str] = []
    real_fsync, real_commit = os.fsync, index.catalogue.commit_sources
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    monkeypatch.setattr(index.catalogue, "commit_sources", lambda s, forms=None: (events.append("commit"), real_commit(s, forms))[1])
    src = _source(index, "/docs/a.pdf", "a" * 64)
    index.add_sources([src], [_vectors(2, 0)])
    commit = events.index("commit")
    for p in src.pages:
        assert any(e.endswith(f"{p.page_id}.jpg") for e in events[:commit])
    assert any(e.endswith("/images") for e in events[:commit])
    assert not list((tmp_path / "idx" / "images").glob(".img-*"))
    index.close()


def test_images_of_failed_and_interrupted_sources_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = [_png(tmp_path / "in" / f"{i}.png", (i, i, i)) for i in range(3)]
    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as r:
        real = r.index.add_sources

        def refuse_second(sources: list[NewSource], vectors: list[np.ndarray]) -> list[list[int]]:
            if any(s.path == str(files[1]) for s in sources):
                raise OSError("disk full")
            return real(sources, vectors)

        monkeypatch.setattr(r.index, "add_sources", refuse_second)
        report = r.add(tmp_path / "in", workers=0, commit_pages=1)
        assert [Path(f.source).name for f in report.failures] == ["1.png"] and len(report.added) == 2
        live = r.index.catalogue.live_images()
        assert {f"images/{p.name}" for p in (tmp_path / "idx/images").glob("*.jpg")} == live and len(live) == 2

        monkeypatch.setattr(r.index, "add_sources", real)
        monkeypatch.setattr(r.encoder, "encode_pages", lambda items: (_ for _ in ()).throw(KeyboardInterrupt))
        _png(tmp_path / "in" / "new.png", (9, 9, 9))
        with pytest.raises(KeyboardInterrupt):
            r.add(tmp_path / "in", workers=0)
        assert {f"images/{p.name}" for p in (tmp_path / "idx/images").glob("*.jpg")} == live


def test_the_next_run_removes_what_a_crash_left(tmp_path: Path) -> None:
    _png(tmp_path / "in" / "a.png", (1, 1, 1))
    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as r:
        r.add(tmp_path / "in", workers=0)
    images = tmp_path / "idx" / "images"
    kept = sorted(images.glob("*.jpg"))
    orphan, temporary, foreign = images / f"{make_page_id('f' * 64, 1)}.jpg", images / ".img-x.jpg", images / "notes.txt"
    fresh = images / f"{make_page_id('e' * 64, 1)}.jpg"  # another writer's, written after this run started
    for f, age in ((orphan, -60), (temporary, -60), (foreign, -60), (fresh, 60)):
        f.write_bytes(b"x")
        os.utime(f, (time.time() + age, time.time() + age))
    with Retriever.open(tmp_path / "idx") as r:  # no crash marker: nothing is scanned
        r.add(tmp_path / "in", workers=0)
        assert orphan.exists()
        (images / ".run-99999-0").touch()  # a run that died (kill -9)
        r.add(tmp_path / "in", workers=0)
    assert not orphan.exists() and not temporary.exists() and foreign.exists()
    assert sorted(images.glob("[!.]*.jpg")) == sorted([*kept, fresh]) and not list(images.glob(".run-*"))
    assert image_files.clean_orphans(tmp_path / "idx", set(), time.time() + 120) == len(kept) + 1


# ---------------------------------------------------------------- honest output
def test_bm25s_debug_lines_stay_quiet(tmp_path: Path) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger().addHandler(handler)  # an application's handler (root level: WARNING)
    try:
        load_encoder("bm25")
        import bm25s

        bm25s.BM25().index([["a", "b"], ["b", "c"]], show_progress=False)
    finally:
        logging.getLogger().removeHandler(handler)
    assert not [r for r in records if r.name.startswith("bm25s")]


def test_text_rankings_are_as_long_as_visual_ones_in_evaluation() -> None:
    from dse.evaluate.runner import _pad
    from dse.retrieve.results import Hit

    pages = [Hit(f"p{i}", "doc.pdf", i, 0.0, 0) for i in range(1, 9)]
    matched = [Hit("p4", "doc.pdf", 4, 2.5, 1), Hit("p2", "doc.pdf", 2, 1.0, 2)]
    padded = _pad(matched, pages, 8, "q1")
    assert [h.page_id for h in padded[:2]] == ["p4", "p2"] and {h.page_id for h in padded} == {h.page_id for h in pages}
    assert [h.score for h in padded] == [2.5, 1.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0]
    assert [h.rank for h in padded] == list(range(1, 9))
    assert padded == _pad(matched, pages, 8, "q1")  # the same for every run
    orders = {tuple(h.page_id for h in _pad(matched, pages, 8, f"q{i}")) for i in range(20)}
    assert len(orders) > 1 and len(_pad(matched, pages, 3, "q1")) == 3  # not page order for every query


def test_stored_images_follow_the_umask_like_other_index_files(tmp_path: Path) -> None:
    index = PageIndex.create(tmp_path / "idx", ENC)
    name = index.store_image(make_page_id("a" * 64, 1), Image.new("RGB", (4, 4)))
    mode = (tmp_path / "idx" / str(name)).stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # readable by whoever may read the index (a copy on shared media)
    index.close()
