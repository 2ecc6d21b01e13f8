"""The web page of `dse serve`, driven in real Chromium: search, deep links, viewer, maps, upload.

Each server is a real `python -m dse.cli.main serve` process on 127.0.0.1; the browser may reach
nothing else (every other request is aborted and fails the test). The screenshot in
docs/images/serve.png is made by `test_search_by_typing_history_and_screenshot`: into a temporary
folder on every run, and into docs/ with `DSE_UPDATE_SCREENSHOTS=1 python -m pytest tests/test_web_ui.py`
(so running the tests leaves the checkout clean).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import dse
from dse.rewrite import load_rewriter, summarize
import ingest

pytest.importorskip("playwright")
try:
    from ingest.web.browser import CHROMIUM_ARGS, chromium_path

    CHROMIUM = chromium_path()
except ingest.MissingToolError as exc:  # pragma: no cover - CI installs chromium
    pytest.skip(str(exc), allow_module_level=True)

from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "corpus"
SCREENSHOT = ROOT / "docs" / "images" / "serve.png"
TOKEN = "s3cret-test-token"
START_TIMEOUT = 120.0  # seconds for a server to answer /healthz
UI_TIMEOUT = 30_000  # ms for a page action or expectation
MODEL_TIMEOUT = 180_000  # ms for the first visual query (the server loads torch and the tiny model)
XSS = '<img src=x onerror="window.__xss=1"> <b>bold?</b>'


# ---------------------------------------------------------------- documents and servers


def _pdf(pages: list[list[str]]) -> bytes:
    """A small PDF with a Helvetica text layer, one list of lines per page (no dependencies)."""

    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Kids [{' '.join(f'{4 + 2 * i} 0 R' for i in range(len(pages)))}] "
               f"/Count {len(pages)} >>".encode(),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    for i, lines in enumerate(pages):
        stream = ("BT /F1 16 Tf 20 TL 72 720 Td " + " ".join(f"({esc(line)}) '" for line in lines) + " ET").encode()
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                       f"/Contents {5 + 2 * i} 0 R >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy
    with opener.open(url, timeout=timeout) as resp:
        return int(resp.status)


class Server:
    """A `dse serve` process on 127.0.0.1 over `index`, stopped by `stop()`."""

    def __init__(self, index: Path, log: Path, token: str | None = None, args: tuple[str, ...] = ()) -> None:
        self.port, self.index = _free_port(), index
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "dse.cli.main", "serve", "--index", str(index),
                "--host", "127.0.0.1", "--port", str(self.port), *args]
        if token is not None:
            token_file = index.parent / f"{index.name}-token.txt"
            token_file.write_text(token + "\n")
            argv += ["--token-file", str(token_file)]
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._log_file, stderr=subprocess.STDOUT, cwd=str(ROOT),
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                self.stop()
                pytest.fail(f"dse serve exited with {self.proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                if _get(self.url + "/healthz", timeout=2) == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"dse serve did not answer /healthz in {START_TIMEOUT:.0f} s:\n"
                            f"{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self._log_file.close()


def _copy(names: list[str], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(EXAMPLES / name, folder / name)) for name in names]


BM25_DOCS = ["acme-q3-2025-report.pdf", "bird-field-guide.pdf", "sourdough-baking.pdf"]  # 7 pages


def _bm25_index(base: Path) -> Path:
    directory = base / "bm25-index"
    with dse.Retriever.create(directory, dse.load_encoder("bm25")) as retriever:
        retriever.add(_copy(BM25_DOCS, base / "docs"))
    return directory


@pytest.fixture(scope="module")
def bm25_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A BM25 index of 3 PDFs (7 pages), writable with TOKEN."""
    base = tmp_path_factory.mktemp("ui-bm25")
    server = Server(_bm25_index(base), base / "serve.log", token=TOKEN)
    yield server
    server.stop()


@pytest.fixture()
def rewrite_server(tmp_path: Path) -> Iterator[Server]:
    """The same BM25 index on a server that offers the prf rewriter (`dse serve --rewrite prf`)."""
    # 7 pages: RM3's default df filter (10% of the pages) would leave no expansion term
    server = Server(_bm25_index(tmp_path), tmp_path / "serve.log",
                    args=("--rewrite", "prf", "--rewrite-option", "max_df_ratio=0.5"))
    yield server
    server.stop()


@pytest.fixture()
def upload_server(tmp_path: Path) -> Iterator[Server]:
    """The same BM25 index on its own server, for a test that adds to it."""
    server = Server(_bm25_index(tmp_path), tmp_path / "serve.log", token=TOKEN)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def multi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A tiny-colqwen2 (multi-vector, random weights) index of a PDF and a PNG; read-only."""
    base = tmp_path_factory.mktemp("ui-multi")
    directory = base / "multi-index"
    with dse.Retriever.create(directory, dse.load_encoder("tiny-colqwen2", max_visual_tokens=64)) as retriever:
        retriever.add(_copy(["sourdough-baking.pdf", "harbour-line-timetable.png"], base / "docs"))
    server = Server(directory, base / "serve.log")
    yield server
    server.stop()


# ---------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--no-proxy-server"],
                                         timeout=60_000)
    yield browser
    browser.close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab (its own sessionStorage) that may only talk to 127.0.0.1; page errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, service_workers="block")
    context.set_default_timeout(UI_TIMEOUT)
    outside: list[str] = []
    errors: list[str] = []

    def guard(route) -> None:  # type: ignore[no-untyped-def]
        if re.match(r"^http://127\.0\.0\.1:\d+/", route.request.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    tab = context.new_page()
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not outside, f"the page requested something off the server: {outside}"
    assert not errors, f"JavaScript errors: {errors}"


def _cards(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("#results [data-page-id]")


def _wait_thumbnails(page: Page) -> None:
    page.wait_for_function(
        """() => {
            const imgs = Array.from(document.querySelectorAll('#results [data-page-id] img'));
            return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
        }"""
    )


# ---------------------------------------------------------------- tests


def test_search_by_typing_history_and_screenshot(bm25_server: Server, page: Page, tmp_path: Path) -> None:
    page.goto(bm25_server.url + "/")
    expect(page.locator("#index-info")).to_contain_text("7 pages")
    assert page.locator("#mode option").evaluate_all("os => os.map(o => o.value)") == ["text"]
    assert page.evaluate("document.activeElement.id") == "q"  # ready to type
    assert page.locator('meta[name="viewport"]').count() == 1

    page.keyboard.type("peregrine falcon")
    page.keyboard.press("Enter")
    first = _cards(page).first
    expect(first).to_contain_text("bird-field-guide.pdf")
    expect(first).to_contain_text("page 1")
    assert "q=peregrine+falcon" in page.url
    assert [m.lower() for m in first.locator(".snippet mark").all_text_contents()] == ["peregrine", "falcon"]
    _wait_thumbnails(page)
    assert "max_side=384" in (first.locator("img").get_attribute("src") or "")

    page.fill("#q", "sourdough starter")
    page.click("#search-button")
    expect(_cards(page).first).to_contain_text("sourdough-baking.pdf")
    assert "q=sourdough+starter" in page.url

    page.go_back()  # popstate re-runs the earlier search
    expect(page.locator("#q")).to_have_value("peregrine falcon")
    expect(_cards(page).first).to_contain_text("bird-field-guide.pdf")
    page.go_forward()
    expect(page.locator("#q")).to_have_value("sourdough starter")
    expect(_cards(page).first).to_contain_text("sourdough-baking.pdf")

    page.fill("#q", "starter falcon revenue margin")
    page.keyboard.press("Enter")
    expect(_cards(page)).to_have_count(5)
    _wait_thumbnails(page)
    page.evaluate("document.activeElement.blur()")
    page.mouse.move(640, 790)  # hover nothing
    shot = SCREENSHOT if os.environ.get("DSE_UPDATE_SCREENSHOTS") == "1" else tmp_path / SCREENSHOT.name
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000


def test_deep_link_viewer_and_keyboard(bm25_server: Server, page: Page) -> None:
    page.goto(bm25_server.url + "/?q=peregrine+falcon&mode=text")
    expect(page.locator("#q")).to_have_value("peregrine falcon")
    expect(page.locator("#rewrite")).to_be_hidden()  # this server offers no rewriter
    first = _cards(page).first
    expect(first).to_contain_text("bird-field-guide.pdf")
    page_id = first.get_attribute("data-page-id")

    first.locator("button").focus()  # a real button: Enter opens it
    page.keyboard.press("Enter")
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(page.locator("#viewer-title")).to_contain_text("bird-field-guide.pdf")
    page.wait_for_function("() => { const i = document.getElementById('viewer-image');"
                           " return i.complete && i.naturalWidth > 0; }")
    assert page.locator("#viewer-image").get_attribute("src") == f"/v1/pages/{page_id}/image"
    expect(page.locator("#explain-controls")).to_be_hidden()  # BM25: no similarity maps
    href = page.locator("#viewer-source").get_attribute("href") or ""
    assert href.endswith("#page=1")
    source = page.request.get(bm25_server.url + href.split("#")[0])
    assert source.status == 200 and source.body().startswith(b"%PDF")

    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    assert page.evaluate("document.activeElement.closest('[data-page-id]')?.dataset.pageId") == page_id


def test_rewrite_selector(rewrite_server: Server, page: Page) -> None:
    query = "oven temperature"
    with dse.Retriever.open(rewrite_server.index) as r:
        want = [h.page_id for h in r.search(query, 12, rewrite=load_rewriter("prf", max_df_ratio=0.5))]
        plain = [h.page_id for h in r.search(query, 12)]
        rewrite = load_rewriter("prf", max_df_ratio=0.5).rewrite(query, r.index)
    expanded, readable = rewrite.text, summarize(rewrite)
    assert readable.text != expanded and readable.text.startswith("oven temperature + ")
    page.goto(rewrite_server.url + "/")
    select = page.locator("#rewrite")
    expect(select).to_be_visible()
    assert select.locator("option").evaluate_all("os => os.map(o => o.value)") == ["", "prf"]
    expect(select).to_have_value("")
    page.fill("#q", query)
    page.press("#q", "Enter")
    expect(page.locator("#status")).not_to_contain_text("searched as")
    expect(_cards(page)).to_have_count(len(plain))
    assert _cards(page).evaluate_all("cs => cs.map(c => c.dataset.pageId)") == plain
    select.select_option("prf")  # a change runs the search again, rewritten
    # the distinct terms, the query's own first, then the heaviest expansion terms with their weights
    expect(page.locator("#status")).to_contain_text(f"searched as “{readable.text}” (prf)")
    expect(page.locator("#status")).not_to_contain_text(expanded)  # not RM3's terms repeated by weight
    tip = page.locator("#rewritten").get_attribute("title") or ""
    assert tip.splitlines() == [f"{t.term} {'(query) ' if t.original else ''}{t.to_json()['weight']:g}"
                                for t in readable.terms]
    page.wait_for_url(re.compile(r".*rewrite=prf.*"))
    assert _cards(page).evaluate_all("cs => cs.map(c => c.dataset.pageId)") == want
    page.goto(rewrite_server.url + "/?q=oven+temperature&rewrite=prf")  # a deep link keeps the rewrite
    expect(select).to_have_value("prf")
    expect(page.locator("#status")).to_contain_text("searched as")


def test_errors_are_shown(bm25_server: Server, page: Page) -> None:
    page.goto(bm25_server.url + "/?q=falcon&where=nosuchfield%3D1")
    message = page.locator("#message")
    expect(message).to_be_visible()
    expect(message).to_contain_text("nosuchfield")
    expect(_cards(page)).to_have_count(0)

    page.fill("#where", "kind")  # not KEY OP VALUE: refused before it is sent
    page.click("#search-button")
    expect(message).to_contain_text("Bad filter")

    page.fill("#where", "kind=pdf, page>=2")
    page.fill("#q", "revenue")
    page.keyboard.press("Enter")
    expect(message).to_be_hidden()
    expect(_cards(page).first).to_contain_text("acme-q3-2025-report.pdf")
    assert set(_cards(page).locator(".page-no").all_text_contents()) <= {"page 2", "page 3"}


def test_similarity_overlay(multi_server: Server, page: Page) -> None:
    page.goto(multi_server.url + "/?q=bake+the+bread&mode=visual")
    expect(page.locator("#mode option")).to_have_count(3, timeout=MODEL_TIMEOUT)  # filled from GET /v1/index
    assert page.locator("#mode option").evaluate_all("os => os.map(o => o.value)") == ["visual", "text", "hybrid"]
    expect(page.locator("#mode")).to_have_value("visual")
    expect(page.locator("#upload-toggle")).to_be_hidden()  # no token configured: read-only
    expect(_cards(page)).to_have_count(3, timeout=MODEL_TIMEOUT)
    _wait_thumbnails(page)

    explain_requests: list[str] = []
    page.on("request", lambda r: explain_requests.append(r.url) if "/explain" in r.url else None)
    _cards(page).first.locator("button").click()
    expect(page.locator("#explain-controls")).to_be_visible()
    overlay = page.locator('#viewer-overlay[data-token="all"]')
    expect(overlay).to_be_visible(timeout=MODEL_TIMEOUT)
    sizes = page.evaluate("""() => {
        const i = document.getElementById('viewer-image'), o = document.getElementById('viewer-overlay');
        const c = document.createElement('canvas'); c.width = o.naturalWidth; c.height = o.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(o, 0, 0);
        const a = g.getImageData(0, 0, c.width, c.height).data;
        let see = 0; for (let p = 3; p < a.length; p += 4) if (a[p] < 255) see++;
        const r = i.getBoundingClientRect(), q = o.getBoundingClientRect();
        return {image: [i.naturalWidth, i.naturalHeight], overlay: [o.naturalWidth, o.naturalHeight],
                seeThrough: see / (a.length / 4), laid: [r.x, r.y, r.width, r.height, q.x, q.y, q.width, q.height]};
    }""")
    assert sizes["overlay"] == sizes["image"] and sizes["image"][0] > 0  # the page's size
    assert sizes["seeThrough"] > 0.1  # a transparent heat map, not a picture of the page
    laid = [round(v) for v in sizes["laid"]]
    assert laid[:4] == laid[4:]  # laid exactly over the page
    assert any("token=all" in u and "query=bake%20the%20bread" in u for u in explain_requests)

    tokens = page.locator("#explain-token option")
    assert tokens.count() > 2 and tokens.first.get_attribute("value") == "all"
    page.select_option("#explain-token", "1")
    expect(page.locator('#viewer-overlay[data-token="1"]')).to_be_visible(timeout=MODEL_TIMEOUT)
    assert any("token=1" in u for u in explain_requests)
    page.uncheck("#explain-on")
    expect(page.locator("#viewer-overlay")).to_be_hidden()
    page.keyboard.press("Escape")
    expect(page.locator("#viewer")).to_be_hidden()


def test_upload_with_token(upload_server: Server, page: Page) -> None:
    pdf = _pdf([["Zanzibar spice market notes", XSS, "Cloves and nutmeg in the harbour."],
                ["Zanzibar ferry schedule", "Boats leave at dawn."]])
    page.goto(upload_server.url + "/?q=zanzibar")
    expect(page.locator("#status")).to_contain_text("No pages match")
    page.click("#upload-toggle")
    expect(page.locator("#token-form")).to_be_visible()
    expect(page.locator("#dropzone")).to_be_hidden()

    page.fill("#token", "wrong-token")  # refused: the message says so and the token is asked again
    page.keyboard.press("Enter")
    page.set_input_files("#file-input", files=[{"name": "a.pdf", "mimeType": "application/pdf", "buffer": pdf}])
    expect(page.locator("#message")).to_contain_text("401")
    expect(page.locator("#token-form")).to_be_visible()

    page.fill("#token", TOKEN)
    page.keyboard.press("Enter")
    expect(page.locator("#dropzone")).to_be_visible()
    page.reload()  # kept for the session
    expect(_cards(page)).to_have_count(0)
    page.click("#upload-toggle")
    expect(page.locator("#dropzone")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('dse.token')") == TOKEN

    polls: list[str] = []
    page.on("response", lambda r: polls.append(r.url) if "/v1/jobs/" in r.url else None)
    page.evaluate("""([b64, name]) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], name, {type: 'application/pdf'}));
        const zone = document.getElementById('dropzone');
        for (const type of ['dragenter', 'dragover', 'drop'])
            zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""", [base64.b64encode(pdf).decode(), "zanzibar-notes.pdf"])
    job = page.locator(".job", has_text="zanzibar-notes.pdf")
    expect(job.locator("progress")).to_be_visible()
    expect(job).to_have_attribute("data-state", "done", timeout=120_000)
    expect(job).to_contain_text(re.compile(r"\b(\d+) / \1 pages"))
    assert polls, "the page never polled the job"

    # the search re-ran by itself: the new pages are there, their text shown as text
    expect(_cards(page)).to_have_count(2)
    expect(_cards(page).first).to_contain_text("zanzibar-notes.pdf")
    snippets = " ".join(_cards(page).locator(".snippet").all_text_contents())
    assert XSS in snippets
    assert page.locator("#results .snippet img, #results .snippet b").count() == 0
    assert page.evaluate("window.__xss") is None
    expect(page.locator("#index-info")).to_contain_text("9 pages")
    _wait_thumbnails(page)

    # a broken file fails its job, by name
    page.set_input_files("#file-input", files=[{"name": "broken.pdf", "mimeType": "application/pdf",
                                                 "buffer": b"this is not a pdf"}])
    broken = page.locator(".job", has_text="broken.pdf")
    expect(broken).to_have_attribute("data-state", "failed", timeout=120_000)
    expect(broken.locator(".failures")).to_contain_text("broken.pdf")
    expect(page.locator("#index-info")).to_contain_text("9 pages")
