"""The web page shows OCR, in real Chromium over real `dse serve` processes and real tesseract.

A result card's snippet and the page viewer's text say "text from OCR" when the page's text was
read by OCR (`text_source: "ocr"`), and only then; an upload's job says how many pages OCR read,
and shows its warnings (tesseract missing, OCR failures) beside its progress bar.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import dse
from tests.test_ingest import make_pdf
from tests.test_ocr import _scan
from tests.test_ocr_index import path_without_tesseract
from tests.test_web_ui import TOKEN, Server, _cards, browser, page, playwright  # noqa: F401 - fixtures

from playwright.sync_api import Page, expect  # noqa: E402 - test_web_ui skips first where it is absent

pytestmark = pytest.mark.skipif(shutil.which("tesseract") is None or shutil.which("pdftoppm") is None,
                                reason="tesseract-ocr and poppler-utils are needed (scripts/install.sh)")
JOB_TIMEOUT = 180_000  # ms: OCR of an upload, on a loaded machine


def _index(base: Path) -> Path:
    """A BM25 index of one PDF with a text layer that mentions zebrafish."""
    (base / "docs").mkdir(parents=True)
    text = base / "docs" / "minutes.pdf"
    text.write_bytes(make_pdf(["Zebrafish tank minutes of the annual meeting"], size=(612, 792)))
    with dse.Retriever.create(base / "idx", dse.load_encoder("bm25")) as retriever:
        retriever.add([text], workers=0)
    return base / "idx"


def _upload(page: Page, url: str, image: Path) -> None:
    page.goto(url + "/")
    page.click("#upload-toggle")
    expect(page.locator("#token-form")).to_be_visible()
    page.fill("#token", TOKEN)
    page.keyboard.press("Enter")
    expect(page.locator("#dropzone")).to_be_visible()
    page.set_input_files("#file-input", files=[{"name": image.name, "mimeType": "image/png",
                                                 "buffer": image.read_bytes()}])


def test_ocr_text_is_labelled_on_cards_and_in_the_viewer(tmp_path: Path, page: Page) -> None:
    server = Server(_index(tmp_path), tmp_path / "serve.log", token=TOKEN)
    try:
        (tmp_path / "upload").mkdir()
        _upload(page, server.url, _scan(tmp_path / "upload" / "scan.png"))  # "Quarterly zebrafish inventory"
        job = page.locator(".job", has_text="scan.png")
        expect(job).to_have_attribute("data-state", "done", timeout=JOB_TIMEOUT)
        expect(job.locator(".job-text")).to_contain_text("text from OCR on 1 page")
        expect(job.locator(".warnings")).to_have_count(0)

        page.goto(server.url + "/?q=zebrafish")
        expect(_cards(page)).to_have_count(2)
        scanned = _cards(page).filter(has_text="scan.png")
        typed = _cards(page).filter(has_text="minutes.pdf")
        expect(scanned.locator(".text-source")).to_have_text("text from OCR")
        expect(scanned.locator(".snippet")).to_contain_text("zebrafish")
        expect(typed.locator(".text-source")).to_have_count(0)

        scanned.locator("button.card-button").click()
        expect(page.locator("#viewer")).to_be_visible()
        expect(page.locator("#viewer-text-source")).to_be_visible()
        expect(page.locator("#viewer-text-source")).to_have_text("text from OCR")
        page.keyboard.press("Escape")
        expect(page.locator("#viewer")).to_be_hidden()
        typed.locator("button.card-button").click()
        expect(page.locator("#viewer-snippet")).to_contain_text("annual meeting")
        expect(page.locator("#viewer-text-source")).to_be_hidden()
    finally:
        server.stop()


def test_job_warnings_are_shown_beside_the_progress_bar(tmp_path: Path, page: Page,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    index = _index(tmp_path)
    with monkeypatch.context() as env:  # the server's PATH: every program but tesseract
        env.setenv("PATH", path_without_tesseract(tmp_path / "bin"))
        server = Server(index, tmp_path / "serve.log", token=TOKEN)
    try:
        (tmp_path / "upload").mkdir()
        _upload(page, server.url, _scan(tmp_path / "upload" / "kestrel.png", ("Kestrel over the meadow",)))
        job = page.locator(".job", has_text="kestrel.png")
        expect(job).to_have_attribute("data-state", "done", timeout=JOB_TIMEOUT)
        expect(job.locator("progress + .job-text + .warnings")).to_have_count(1)  # right under the bar
        expect(job.locator(".warnings")).to_contain_text("tesseract is not installed")
        expect(job.locator(".warnings")).to_contain_text("got no text")
        expect(job.locator(".job-text")).not_to_contain_text("OCR")
    finally:
        server.stop()
