"""Limits (pages, file size, image pixels) and awkward inputs: zero pages, a page that breaks
midway, symlink loops, FIFOs, unreadable files, and `--password` on the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image
from test_ingest import make_pdf, write

import dse
import ingest
from dse.cli.main import main
from ingest.pdf import render as ingest_pdf


def _bm25(tmp_path: Path) -> dse.Retriever:
    return dse.Retriever.create(tmp_path / "index", dse.load_encoder("bm25"))


def test_defaults_match_the_spec_and_pillow() -> None:
    limits = ingest.Limits()
    assert limits.max_pages == 5000 and limits.max_file_bytes == 500 * 1024 * 1024
    assert limits.max_image_pixels == Image.MAX_IMAGE_PIXELS  # Pillow's own default


def test_limits_from_config_and_validation() -> None:
    limits = ingest.Limits.from_config({"max_pages": 10, "max_file_mb": 0.5, "convert_timeout": None})
    assert (limits.max_pages, limits.max_file_bytes) == (10, 512 * 1024)
    assert limits.convert_timeout == ingest.Limits().convert_timeout
    for bad in ({"max_pages": 0}, {"max_pages": 2.5}, {"max_file_mb": "big"}, {"max_image_pixels": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ingest.Limits.from_config(bad)
    with pytest.raises(ValueError, match="max_pages"):
        ingest.Limits(max_pages=-1)


@pytest.mark.parametrize("workers", [None, 1], ids=["render", "render_many"])
def test_page_and_size_limits(tmp_path: Path, workers: int | None) -> None:
    doc = write(tmp_path / "three.pdf", make_pdf(["a", "b", "c"]))

    def first_error(limits: ingest.Limits) -> ingest.IngestError:
        try:
            if workers is None:
                list(ingest.render(doc, limits=limits))
            else:
                for item in ingest.render_many([doc], workers=workers, limits=limits):
                    list(item.pages)
        except ingest.LimitExceededError as exc:
            return exc
        raise AssertionError("no limit error")

    error = first_error(ingest.Limits(max_pages=2))
    assert error.source == str(doc) and "3 pages, over the limit of 2" in error.reason
    assert "over the limit" in first_error(ingest.Limits(max_file_bytes=100)).reason
    assert len(list(ingest.render(doc, limits=ingest.Limits(max_pages=3)))) == 3


def test_image_pixel_and_frame_limits(tmp_path: Path) -> None:
    png = tmp_path / "big.png"
    Image.new("RGB", (200, 100), "white").save(png)
    with pytest.raises(ingest.LimitExceededError, match=r"big\.png.*200 x 100 = 20,000 pixels"):
        ingest.render(png, limits=ingest.Limits(max_image_pixels=19_999))
    tiff = tmp_path / "scan.tiff"
    frames = [Image.new("RGB", (10, 10), c) for c in ("red", "green", "blue")]
    frames[0].save(tiff, save_all=True, append_images=frames[1:])
    with pytest.raises(ingest.LimitExceededError, match="3 pages"):
        ingest.render(tiff, limits=ingest.Limits(max_pages=2))


def test_cli_limits_and_config(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["index", str(corpus), "--index", str(tmp_path / "a"), "--max-pages", "2", "--no-progress",
                 "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 0 and "over the limit of 2" in err and "--max-pages" in err
    config = tmp_path / "c.yaml"
    config.write_text("encoder: bm25\ningest:\n  max_file_mb: 0.000001\n")
    code = main(["index", str(corpus), "--index", str(tmp_path / "b"), "--config", str(config), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "indexed 0 source(s)" in err and err.count("over the limit") == 5
    code = main(["index", str(corpus), "--index", str(tmp_path / "c"), "--max-pages", "0"])
    assert code == 2 and "max_pages" in capsys.readouterr().err


def test_cli_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = write(tmp_path / "docs" / "locked.pdf", make_pdf(["secret ledger"], user_password="pw"))
    index = str(tmp_path / "index")
    code = main(["index", str(locked), "--index", index, "--no-progress"])
    assert code == 1 and "locked.pdf: PDF is encrypted" in capsys.readouterr().err
    code = main(["index", str(locked), "--index", index, "--password", "pw", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0 and "indexed 1 source(s), 1 page(s)" in err, err
    code = main(["search", "--index", index, "ledger", "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)[0]["source"] == str(locked)


def test_zero_page_pdf(tmp_path: Path) -> None:
    with pytest.raises(ingest.IngestError, match=r"empty\.pdf.*no pages"):
        ingest.render(write(tmp_path / "empty.pdf", make_pdf([])))


def test_page_failing_midway_commits_nothing_of_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = write(tmp_path / "docs" / "a-broken.pdf", make_pdf(["one", "two", "three"]))
    write(tmp_path / "docs" / "b-good.pdf", make_pdf(["fine"]))
    real_page = ingest_pdf.pdf_page

    def failing_page(file, info, number, *args):  # noqa: ANN001, ANN202 - same as pdf_page
        if file.source == str(broken) and number == 2:
            raise ingest.IngestError(file.source, "cannot render page 2: simulated poppler failure")
        return real_page(file, info, number, *args)

    monkeypatch.setattr(ingest_pdf, "pdf_page", failing_page)
    with _bm25(tmp_path) as retriever:
        report = retriever.add(tmp_path / "docs", workers=0)
        assert [Path(p).name for p in report.added] == ["b-good.pdf"]
        assert len(report.failures) == 1 and "page 2" in report.failures[0].error
        assert len(retriever) == 1 and retriever.search("one two three", k=5) == []
    monkeypatch.setattr(ingest_pdf, "pdf_page", real_page)
    with dse.Retriever.open(tmp_path / "index") as retriever:  # re-running adds it whole
        report = retriever.add(tmp_path / "docs", workers=0)
        assert report.pages == 3 and len(retriever) == 4


def test_symlink_loops_and_fifos_neither_hang_nor_crash(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs / "good.pdf", make_pdf(["fine"]))
    (docs / "loop").symlink_to(docs, target_is_directory=True)  # a folder that contains itself
    (docs / "self.pdf").symlink_to(docs / "self.pdf")  # a file symlink pointing at itself
    os.mkfifo(docs / "pipe.pdf")  # reading it would block forever
    assert sorted(p.name for p in ingest.discover([docs])) == ["good.pdf", "pipe.pdf", "self.pdf"]
    with pytest.raises(ingest.IngestError, match=r"self\.pdf.*symbolic link"):
        ingest.render(docs / "self.pdf")
    with _bm25(tmp_path) as retriever:
        report = retriever.add(docs, workers=0)
    assert [Path(p).name for p in report.added] == ["good.pdf"]
    errors = sorted(f.error for f in report.failures)
    assert len(errors) == 2 and "pipe.pdf" in errors[0] and "not a regular file" in errors[0]
    assert "self.pdf" in errors[1]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    doc = write(tmp_path / "docs" / "secret.pdf", make_pdf(["x"]))
    doc.chmod(0)
    try:
        with _bm25(tmp_path) as retriever:
            report = retriever.add(tmp_path / "docs", workers=0)
        assert not report.added and "secret.pdf" in report.failures[0].error
    finally:
        doc.chmod(0o644)


def test_cli_time_memory_sandbox_flags(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Every limit has a flag and a config key; flags win; bad values exit 2 naming the option."""
    import dse.retrieve.indexing as indexing

    seen: dict[str, object] = {}
    real = indexing.index_sources

    def spy(*args, **kwargs):  # records what `dse index` asked for, then indexes for real
        seen.update(limits=kwargs["limits"], web=kwargs["web"])
        return real(*args, **kwargs)

    monkeypatch.setattr(indexing, "index_sources", spy)
    config = tmp_path / "c.yaml"
    config.write_text("encoder: bm25\ningest:\n  file_timeout: 100\n  sandbox: strict\n"
                      "  web:\n    tile_height: 1200\n    page_timeout: 50\n")
    code = main(["index", str(corpus), "--index", str(tmp_path / "a"), "--config", str(config), "--no-progress",
                 "--page-timeout", "7", "--max-memory-mb", "2048", "--sandbox", "auto", "--web-timeout", "40",
                 "--no-browser-sandbox", "--workers", "0"])
    assert code == 0, capsys.readouterr().err
    limits, web = seen["limits"], seen["web"]
    assert (limits.page_timeout, limits.file_timeout, limits.max_memory_mb, limits.sandbox) == (7, 100, 2048, "auto")
    assert (web.page_timeout, web.tile_height, web.sandbox) == (40, 1200, False)
    capsys.readouterr()
    for bad, named in ((["--file-timeout", "0"], "file_timeout"), (["--web-timeout", "-1"], "page_timeout")):
        code = main(["index", str(corpus), "--index", str(tmp_path / "b"), "--no-progress", *bad])
        assert code == 2 and named in capsys.readouterr().err
    config.write_text("encoder: bm25\ningest:\n  web:\n    tile_hieght: 1200\n")
    code = main(["index", str(corpus), "--index", str(tmp_path / "b"), "--config", str(config), "--no-progress"])
    assert code == 2 and "tile_hieght" in capsys.readouterr().err
