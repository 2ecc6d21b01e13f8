"""OCR of pages without a usable text layer, with the real tesseract (skipped where it is absent)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

import ingest
from ingest import ocr as ocr_module
from ingest.ocr import MIN_TEXT_CHARS, OcrOptions, ocr_file, usable_text, wants_ocr
from ingest.sandbox import tools
from tests.test_ingest import make_pdf

pytestmark = pytest.mark.skipif(shutil.which("tesseract") is None or shutil.which("pdftoppm") is None,
                                reason="tesseract-ocr and poppler-utils are needed (scripts/install.sh)")

WORDS = ("Quarterly zebrafish inventory", "hippopotamus budget grew")
FONT = "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf"


def _scan(path: Path, lines: tuple[str, ...] = WORDS, resolution: float = 150.0) -> Path:
    """A page of text drawn by PIL and saved as a PDF or image: no text layer, only pixels."""
    font = ImageFont.truetype(FONT, 40) if os.path.exists(FONT) else ImageFont.load_default(size=40)
    image = Image.new("RGB", (1275, 1650), "white")
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((120, 150 + 80 * row), line, fill="black", font=font)
    image.save(path, resolution=resolution)
    return path


def _words(text: str) -> set[str]:
    return {word.strip(".,").lower() for word in text.split()}


def test_threshold_and_modes():
    assert not usable_text("12") and not usable_text("Page 3 of 10")
    assert usable_text("x" * MIN_TEXT_CHARS)
    assert wants_ocr("", OcrOptions()) and not wants_ocr("", OcrOptions("never")) and not wants_ocr("", None)
    assert wants_ocr("a long text layer with plenty of letters", OcrOptions("always"))
    assert not wants_ocr("a long text layer with plenty of letters", OcrOptions())
    with pytest.raises(ValueError, match="ocr must be one of auto, always, never"):
        OcrOptions("sometimes")
    with pytest.raises(ValueError, match="ocr_language"):
        OcrOptions(language="eng; rm -rf")
    with pytest.raises(ValueError, match="ocr_dpi"):
        OcrOptions(dpi=20)
    assert OcrOptions.from_config({"ocr": False, "ocr_dpi": 200}) == OcrOptions("never", dpi=200)


@pytest.mark.parametrize("workers", [0, 1])
def test_scanned_pdf_is_read_and_found_by_bm25(tmp_path, workers):
    from dse.encoders.registry import load_encoder
    from dse.retrieve.retriever import Retriever

    (tmp_path / "docs").mkdir()
    _scan(tmp_path / "docs" / "scan.pdf")
    (tmp_path / "docs" / "text.pdf").write_bytes(make_pdf(["Minutes of the annual meeting of shareholders"]))
    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as retriever:
        report = retriever.add(tmp_path / "docs", workers=workers)
        assert report.ok and report.pages == 2 and report.ocr_pages == 1 and report.ocr_seconds > 0
        assert not report.warnings
        hits = retriever.search("zebrafish hippopotamus", k=2)
        assert hits and Path(hits[0].source).name == "scan.pdf" and hits[0].score > 0
        record = retriever.index.page(hits[0].page_id)
        assert record.metadata["text_source"] == "ocr" and record.metadata["ocr_dpi"] == 300
        assert {"zebrafish", "hippopotamus"} <= _words(record.text)
        only_ocr = retriever.search("zebrafish annual meeting", k=5, where={"text_source": "ocr"})
        assert [Path(hit.source).name for hit in only_ocr] == ["scan.pdf"]
        other = retriever.search("annual meeting shareholders", k=1)[0]
        assert Path(other.source).name == "text.pdf"
        assert "text_source" not in retriever.index.page(other.page_id).metadata


def test_visual_index_text_side_gets_the_ocr_text(tmp_path):
    from dse.encoders.registry import load_encoder
    from dse.retrieve.retriever import Retriever

    pdf = _scan(tmp_path / "scan.pdf")
    (tmp_path / "text.pdf").write_bytes(make_pdf(["Minutes of the annual meeting of shareholders"]))
    with Retriever.create(tmp_path / "idx", load_encoder("tiny-dse")) as retriever:
        report = retriever.add([pdf, tmp_path / "text.pdf"], workers=0)
        assert report.ocr_pages == 1
        for mode in ("text", "hybrid"):  # hybrid and text search read the OCR text
            assert Path(retriever.search("zebrafish hippopotamus", k=1, mode=mode)[0].source).name == "scan.pdf"


def test_text_layer_is_kept_in_auto_and_replaced_in_always(tmp_path):
    pdf = tmp_path / "text.pdf"
    pdf.write_bytes(make_pdf(["Minutes of the annual meeting of shareholders"], size=(612, 792)))
    auto = list(ingest.render(pdf))
    assert auto[0].ocr_seconds == 0 and "text_source" not in auto[0].metadata  # tesseract never ran
    assert auto[0].text.startswith("Minutes of the annual meeting")
    always = list(ingest.render(pdf, ocr="always"))
    assert always[0].ocr_seconds > 0 and always[0].metadata["text_source"] == "ocr"
    assert {"annual", "meeting", "shareholders"} <= _words(always[0].text)
    never = list(ingest.render(_scan(tmp_path / "scan.pdf"), ocr="never"))
    assert never[0].text == "" and never[0].ocr_seconds == 0


def test_image_files_are_read_and_the_render_at_hand_is_reused(tmp_path):
    page = next(ingest.render(_scan(tmp_path / "scan.png")))
    assert page.metadata["text_source"] == "ocr" and {"zebrafish", "inventory"} <= _words(page.text)
    high = next(ingest.render(_scan(tmp_path / "scan.pdf"), dpi=200))  # read from the 200 dpi render itself
    assert high.metadata["ocr_dpi"] == 200 and "zebrafish" in _words(high.text)


def test_render_many_matches_render(tmp_path):
    pdf = _scan(tmp_path / "scan.pdf")
    serial = list(ingest.render(pdf))
    parallel = [p for src in ingest.render_many([pdf], workers=1) for p in src.pages]
    assert [p.text for p in parallel] == [p.text for p in serial]
    assert [dict(p.metadata) for p in parallel] == [dict(p.metadata) for p in serial]


def test_ocr_timeout_keeps_the_page_and_is_reported(tmp_path):
    from dse.encoders.registry import load_encoder
    from dse.retrieve.retriever import Retriever

    pdf = _scan(tmp_path / "scan.pdf")
    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as retriever:
        report = retriever.add(pdf, workers=0, ocr=OcrOptions(timeout=0.01))
        assert report.ok and report.pages == 1 and report.ocr_pages == 0
        assert len(report.warnings) == 1 and report.warnings[0].source.endswith("scan.pdf")
        assert "page 1: OCR took longer than 0.01 s" in report.warnings[0].error
        assert "ocr_timeout" in report.warnings[0].error
        record = retriever.index.live_pages()[0]
        assert record.text == "" and "OCR took longer" in record.metadata["ocr_error"]


def test_garbage_image_and_unknown_language_fail_by_name(tmp_path):
    garbage = tmp_path / "garbage.ppm"
    garbage.write_bytes(b"P6\n100 100\n255\n" + os.urandom(50))  # a truncated image
    result = ocr_file(str(garbage), OcrOptions(), 1 << 30)
    assert result.text == "" and result.error is not None and "tesseract" in result.error
    unknown = list(ingest.render(_scan(tmp_path / "scan.pdf"), ocr=OcrOptions(language="xyz")))
    assert unknown[0].text == "" and "no data for language 'xyz'" in unknown[0].metadata["ocr_error"]


@pytest.fixture
def no_tesseract(tmp_path, monkeypatch):
    """A real PATH holding poppler and prlimit but no tesseract."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("pdfinfo", "pdftoppm", "pdftotext", "prlimit", "qpdf"):
        if found := shutil.which(name):
            (bin_dir / name).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    ocr_module.tesseract_path.cache_clear()
    monkeypatch.setattr(tools, "_WARNED", set())
    yield
    ocr_module.tesseract_path.cache_clear()


def test_missing_tesseract_warns_once_in_auto_and_is_reported_in_always(tmp_path, no_tesseract, caplog):
    from dse.encoders.registry import load_encoder
    from dse.retrieve.retriever import Retriever

    first, second = _scan(tmp_path / "a.pdf"), _scan(tmp_path / "b.pdf", ("another page",))
    with caplog.at_level(logging.WARNING):
        pages = list(ingest.render(first)) + list(ingest.render(second))
    assert [p.text for p in pages] == ["", ""] and all("ocr_error" not in p.metadata for p in pages)
    warned = [r.getMessage() for r in caplog.records if "tesseract" in r.getMessage()]
    assert len(warned) == 1 and "apt-get install tesseract-ocr" in warned[0]
    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as retriever:
        report = retriever.add([first, second], workers=0, ocr="always")
    assert report.ok and report.pages == 2 and len(report.warnings) == 2
    assert all("tesseract is not installed" in w.error for w in report.warnings)


def test_cli_index_ocr_flag_and_config(tmp_path, capsys):
    from dse.cli.main import main
    from dse.config import ConfigError, load_config

    docs = tmp_path / "docs"
    docs.mkdir()
    _scan(docs / "scan.pdf")
    assert main(["index", str(docs), "--index", str(tmp_path / "never"), "--ocr", "never", "--no-progress",
                 "--workers", "0"]) == 0
    assert "OCR:" not in capsys.readouterr().err
    assert main(["index", str(docs), "--index", str(tmp_path / "auto"), "--no-progress", "--workers", "0"]) == 0
    assert "OCR: text read from 1 page(s)" in capsys.readouterr().err
    config = tmp_path / "c.yaml"
    config.write_text("encoder: bm25\ningest: {ocr: always, ocr_language: eng, ocr_dpi: 250}\n")
    assert load_config(config).ingest["ocr"] == "always"
    config.write_text("encoder: bm25\ningest: {ocr_langs: eng}\n")
    with pytest.raises(ConfigError, match="ocr_langs"):
        load_config(config)


def test_ocr_text_is_bounded(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(ocr_module, "MAX_OCR_TEXT_BYTES", 12)
    image = _scan(tmp_path / "scan.png")
    with caplog.at_level(logging.WARNING):
        result = ocr_file(str(image), OcrOptions(), 1 << 30)
    assert result.error is None and 0 < len(result.text.encode()) <= 12 and "it is cut" in caplog.text
