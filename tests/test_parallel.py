"""Tests of `ingest.render_many`: parallel pages equal serial ones, order, errors, bounds, shutdown."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from PIL import Image
from test_ingest import make_pdf, save_image, write

import ingest
from ingest.parallel import many, workers
from ingest.pdf import render as ingest_pdf


def _flatten(run) -> list[ingest.Page]:
    return [page for item in run for page in item.pages]


def _same(left: list[ingest.Page], right: list[ingest.Page]) -> None:
    assert [(p.page_id, p.source, p.page, p.text, p.source_digest) for p in left] == [
        (p.page_id, p.source, p.page, p.text, p.source_digest) for p in right
    ]
    assert [dict(p.metadata) for p in left] == [dict(p.metadata) for p in right]
    for a, b in zip(left, right):
        assert a.image.mode == b.image.mode == "RGB" and a.image.size == b.image.size
        assert a.image.tobytes() == b.image.tobytes()


@pytest.fixture()
def docs(tmp_path: Path) -> list[Path]:
    """Three PDFs of different page sizes (one of 7 pages: 3 chunks of 3) and an image."""
    long = make_pdf([f"long page {n}" for n in range(1, 8)], size=(120, 90))
    return [
        write(tmp_path / "a.pdf", make_pdf(["alpha", None, "gamma"])),
        write(tmp_path / "long.pdf", long),
        save_image(tmp_path / "pic.png", "blue", (30, 20)),
        write(tmp_path / "b.pdf", make_pdf(["beta"], size=(300, 100))),
    ]


@pytest.fixture()
def workers_spy(monkeypatch: pytest.MonkeyPatch) -> list[many._Scheduler]:
    """Every scheduler a run creates."""
    made: list[many._Scheduler] = []
    real = many._Scheduler.__init__

    def spy(self, *args, **kwargs) -> None:
        real(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(many._Scheduler, "__init__", spy)
    return made


def _serial(paths: list[Path], dpi: int) -> list[ingest.Page]:
    return [page for path in paths for page in ingest.render(path, dpi=dpi)]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_parallel_equals_serial(docs: list[Path], workers: int) -> None:
    run = ingest.render_many(docs, workers=workers, dpi=144, chunk_pages=3, max_in_flight=2)
    pages = _flatten(run)
    assert [p.page for p in pages if p.source.endswith("long.pdf")] == list(range(1, 8))
    _same(pages, _serial(docs, 144))


def test_sources_in_input_order_with_folders(docs: list[Path], tmp_path: Path) -> None:
    order = [docs[3], tmp_path, docs[0]]  # the folder expands to a.pdf, b.pdf, long.pdf, pic.png
    items = list(ingest.render_many(order, workers=2, dpi=36, chunk_pages=2))
    assert [Path(item.source).name for item in items] == [
        "b.pdf", "a.pdf", "b.pdf", "long.pdf", "pic.png", "a.pdf"
    ]
    assert all(isinstance(item, ingest.SourcePages) for item in items)


def test_bad_sources_fail_alone(docs: list[Path], tmp_path: Path) -> None:
    bad = [
        write(tmp_path / "bad" / "broken.pdf", b"%PDF-1.4 not really"),
        tmp_path / "missing.pdf",
        write(tmp_path / "bad" / "notes.xyz", b"hello"),
        write(tmp_path / "bad" / "locked.pdf", make_pdf(["secret"], user_password="pw")),
    ]
    order = [docs[0], *bad[:2], docs[1], *bad[2:], docs[2]]
    seen: list[tuple[str, int | str]] = []
    for item in ingest.render_many(order, workers=2, dpi=36, chunk_pages=2):
        try:
            seen += [(Path(item.source).name, page.page) for page in item.pages]
        except ingest.IngestError as error:
            assert error.source == item.source
            seen.append((Path(item.source).name, type(error).__name__))
    assert seen == [
        *[("a.pdf", n) for n in (1, 2, 3)],
        ("broken.pdf", "IngestError"),
        ("missing.pdf", "IngestError"),
        *[("long.pdf", n) for n in range(1, 8)],
        ("notes.xyz", "UnsupportedSourceError"),
        ("locked.pdf", "EncryptedSourceError"),
        ("pic.png", 1),
    ]


def test_failure_midway_yields_no_page_after_the_error(docs: list[Path], tmp_path: Path) -> None:
    doomed = write(tmp_path / "doomed.pdf", make_pdf([f"p{n}" for n in range(1, 7)]))
    run = ingest.render_many([doomed, docs[0]], workers=2, dpi=36, chunk_pages=1, max_in_flight=1)
    item = next(run)
    pages = [next(item.pages).page]
    doomed.write_bytes(b"garbage, no longer a PDF" * 10)  # chunks submitted from now on fail
    with pytest.raises(ingest.IngestError, match="doomed.pdf"):
        for page in item.pages:
            pages.append(page.page)
    assert pages in ([1], [1, 2])  # chunk 2 may have been rendered before the file changed
    assert list(item.pages) == []
    rest = next(run)
    assert [p.page for p in rest.pages] == [1, 2, 3] and next(run, None) is None


def test_in_flight_chunks_are_bounded(
    tmp_path: Path, workers_spy: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    submitted: list[int] = []
    real_submit = ProcessPoolExecutor.submit

    def submit(self, fn, *args, **kwargs):
        submitted.append(args[3])  # first page of the chunk
        return real_submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(ProcessPoolExecutor, "submit", submit)
    path = write(tmp_path / "long.pdf", make_pdf([f"n{n}" for n in range(1, 13)], size=(60, 40)))
    consumed = 0
    for item in ingest.render_many([path, path], workers=2, dpi=36, chunk_pages=1, max_in_flight=3):
        for page in item.pages:
            consumed += 1
            assert len(submitted) <= consumed + 3  # one chunk per page: at most 3 ahead
            assert workers_spy[0].in_flight <= 3
    assert consumed == 24 and len(submitted) == 24 and workers_spy[0].peak_in_flight == 3


def _gone(pids: list[int]) -> bool:
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        return False
    return True


def test_close_shuts_workers_down(docs: list[Path], workers_spy: list) -> None:
    run = ingest.render_many(docs, workers=2, dpi=36, chunk_pages=1)
    next(next(run).pages)
    pids = list(workers_spy[0].executor._processes)
    assert pids and not _gone(pids)
    run.close()
    assert multiprocessing.active_children() == [] and _gone(pids)
    assert not os.path.exists(workers_spy[0].spool)  # page files deleted


def test_ctrl_c_shuts_workers_down(
    docs: list[Path], workers_spy: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls, pids = [], []
    real = ingest_pdf.pdf_page

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # Ctrl-C while the workers render the next chunks
            pids.extend(workers_spy[0].executor._processes)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_pdf, "pdf_page", interrupted)
    with pytest.raises(KeyboardInterrupt):
        for item in ingest.render_many(docs, workers=2, dpi=36, chunk_pages=1):
            list(item.pages)
    assert pids and multiprocessing.active_children() == [] and _gone(pids)
    assert not os.path.exists(workers_spy[0].spool)


def test_indexer_renders_in_workers(corpus: Path, tmp_path: Path) -> None:
    import dse

    reports, texts = [], []
    for count in (0, 2):
        with dse.Retriever.create(tmp_path / f"idx{count}", dse.load_encoder("bm25")) as retriever:
            reports.append(retriever.add([corpus], workers=count))
            hits = retriever.search_text("revenue", k=50)
            texts.append([(hit.page_id, retriever.page_text(hit.page_id)) for hit in hits])
    assert reports[0] == reports[1] and reports[0].pages > 0 and not reports[0].failures
    assert texts[0] and texts[0] == texts[1]


def test_options_are_checked(docs: list[Path]) -> None:
    for bad in ({"workers": -1}, {"dpi": 0}, {"chunk_pages": 0}, {"max_in_flight": 0}):
        with pytest.raises(ValueError, match="workers"):
            ingest.render_many(docs, **bad)


def test_page_files_match_pdf2image(tmp_path: Path) -> None:
    path = write(tmp_path / "d.pdf", make_pdf(["one", "two"], size=(100, 50)))
    file = ingest.base.SourceFile(path, str(path), "0" * 64)
    spool = tmp_path / "spool"
    spool.mkdir()
    files = ingest_pdf.render_run_files(file, 1, 2, 72, None, str(spool))
    images = ingest_pdf._render_run(file, 1, 2, 72, None)
    assert sorted(os.listdir(spool)) == [Path(f).name for f in files] and len(files) == 2
    assert [Image.open(f).convert("RGB").tobytes() for f in files] == [i.tobytes() for i in images]


def test_script_without_main_guard(tmp_path: Path) -> None:
    import subprocess
    import sys

    write(tmp_path / "d.pdf", make_pdf(["one", "two", "three"]))
    script = tmp_path / "script.py"  # workers must not re-run this top-level code
    script.write_text(
        "import ingest\n"
        "print('started')\n"
        f"items = ingest.render_many([{str(tmp_path / 'd.pdf')!r}], workers=2, dpi=36, chunk_pages=1)\n"
        "print(sum(1 for item in items for page in item.pages))\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["started", "3"]


def test_spools_of_dead_processes_are_removed(tmp_path: Path, monkeypatch) -> None:
    import subprocess
    import sys

    monkeypatch.setattr(workers, "shared_memory_dir", lambda: str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = tmp_path / f"dse-render-{dead.stdout.strip()}-abc123"
    stale.mkdir()
    (stale / "page.ppm").write_bytes(b"P6")
    pdf_path = write(tmp_path / "d.pdf", make_pdf(["x"]))
    assert [p.page for item in ingest.render_many([pdf_path], workers=1, dpi=36) for p in item.pages] == [1]
    assert not stale.exists() and not list(tmp_path.glob("dse-render-*"))


def test_limits_apply_in_parallel(docs: list[Path]) -> None:
    outcome = []
    for item in ingest.render_many(docs, workers=2, dpi=36, limits=ingest.Limits(max_pages=3)):
        try:
            outcome.append(len(list(item.pages)))
        except ingest.IngestError as error:
            outcome.append(type(error).__name__)
    assert outcome == [3, "LimitExceededError", 1, 1]
