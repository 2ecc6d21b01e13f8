"""Untrusted documents: time, memory and pixel limits, dying workers, passwords, sandboxes.

Everything runs the real programs (poppler, qpdf, LibreOffice, bubblewrap); hostile inputs are
written here by hand. Nothing is timed: the slow page is a form bomb that keeps poppler busy for
hours, against limits of 2 s that a normal page never comes near.
"""

from __future__ import annotations

import http.server
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image
from test_ingest import make_pdf, write

import ingest
from ingest.errors import (
    MemoryLimitError,
    RenderTimeoutError,
    SandboxUnavailableError,
    WorkerCrashedError,
)
from ingest.office.convert import find_soffice
from ingest.parallel import scheduler, workers
from ingest.pdf import poppler
from ingest.sandbox import jail, tools

needs_soffice = pytest.mark.skipif(find_soffice() is None, reason="LibreOffice is not installed")


def pdf_with(pages: list[tuple[bytes, tuple[float, float], tuple[float, float] | None]]) -> bytes:
    """A PDF of pages `(content stream, media box size, crop box size or None)`, compressed."""
    count, font = len(pages), 3 + 2 * len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(count))
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: f"<< /Type /Pages /Count {count} /Kids [{kids}] >>".encode(),
        font: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    for i, (content, media, crop) in enumerate(pages):
        box = f"/MediaBox [0 0 {media[0]} {media[1]}]"
        if crop is not None:
            box += f" /CropBox [0 0 {crop[0]} {crop[1]}]"
        objects[3 + 2 * i] = (
            f"<< /Type /Page /Parent 2 0 R {box} /Resources << /Font << /F1 {font} 0 R >> >> "
            f"/Contents {4 + 2 * i} 0 R >>"
        ).encode()
        data = zlib.compress(content)
        objects[4 + 2 * i] = (
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream"
        )
    return _assemble(objects)


def form_bomb(levels: int = 7, fan: int = 10, blank_first: bool = False) -> bytes:
    """A PDF of 1.5 KB whose page draws a form that draws the one below it `fan` times, `levels`
    deep: `fan ** levels` text operations, which keep poppler busy for hours (after a blank
    page if `blank_first`)."""
    def stream(extra: bytes, data: bytes) -> bytes:
        return b"<< /Length %d %s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"

    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Count 2 /Kids [99 0 R 3 0 R] >>" if blank_first
        else b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>",
        4: stream(b"", b"/X Do"),
        5: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    form = b"/Type /XObject /Subtype /Form /BBox [0 0 200 200] "
    objects[6] = stream(form + b"/Resources << /Font << /F1 5 0 R >> >>", b"BT /F1 1 Tf (x) Tj ET")
    for number in range(7, 7 + levels):
        draws = b"q 1 0 0 1 0.01 0 cm /X Do Q " * fan
        objects[number] = stream(form + b"/Resources << /XObject << /X %d 0 R >> >>" % (number - 1),
                                 draws)
    objects[3] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Resources << /XObject "
                  b"<< /X %d 0 R >> >> /Contents 4 0 R >>" % (6 + levels))
    if blank_first:
        objects[99] = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>"
    return _assemble(objects)


def _assemble(objects: dict[int, bytes]) -> bytes:
    """A PDF file of numbered objects (1: the catalogue), with its cross-reference table."""
    out, offsets = bytearray(b"%PDF-1.4\n"), {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    xref, size = len(out), max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    out += b"".join(b"%010d 00000 n \n" % offsets[n] if n in offsets else b"0000000000 65535 f \n"
                    for n in range(1, size))
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)


def text_page(text: str) -> bytes:
    return f"BT /F1 12 Tf 10 100 Td ({text}) Tj ET".encode()


def outcomes(sources: list[Path], **options) -> dict[str, object]:
    """`render_many`'s outcome per file name: its page numbers, or its error."""
    result: dict[str, object] = {}
    for item in ingest.render_many(sources, dpi=36, **options):
        try:
            result[Path(item.source).name] = [page.page for page in item.pages]
        except ingest.IngestError as error:
            assert error.source == item.source
            result[Path(item.source).name] = error
    return result


@pytest.fixture()
def batch(tmp_path: Path) -> list[Path]:
    """Three good PDFs around a slot for a bad one (index 1)."""
    return [
        write(tmp_path / "a.pdf", make_pdf(["alpha", "beta", "gamma"])),
        tmp_path / "bad.pdf",
        write(tmp_path / "b.pdf", make_pdf([f"b{n}" for n in range(1, 6)])),
        write(tmp_path / "c.pdf", make_pdf(["c"])),
    ]


def _good(found: dict[str, object]) -> None:
    assert (found["a.pdf"], found["b.pdf"], found["c.pdf"]) == ([1, 2, 3], [1, 2, 3, 4, 5], [1])


# --------------------------------------------------------------------------- limits


def test_limits_defaults_and_config() -> None:
    limits = ingest.Limits()
    assert (limits.page_timeout, limits.file_timeout, limits.max_memory_mb, limits.sandbox) == (
        30.0, 900.0, 4096, "auto"
    )
    assert ingest.limits.CONFIG_KEYS == ("max_pages", "max_file_mb", "max_image_pixels",
                                         "convert_timeout")  # the `dse index` flags
    parsed = ingest.Limits.from_config(
        {"page_timeout": "5", "file_timeout": 60, "max_memory_mb": 512, "sandbox": "strict"}
    )
    assert (parsed.page_timeout, parsed.file_timeout, parsed.max_memory_bytes, parsed.sandbox) == (
        5.0, 60.0, 512 * 1024 * 1024, "strict"
    )
    with pytest.raises(ValueError, match="sandbox"):
        ingest.Limits(sandbox="none")
    with pytest.raises(ValueError, match="page_timeout"):
        ingest.Limits(page_timeout=0)


@pytest.mark.parametrize("workers_count", [0, 2])
def test_slow_page_fails_its_file_by_name(batch: list[Path], workers_count: int) -> None:
    write(batch[1], form_bomb(blank_first=True))
    found = outcomes(batch, workers=workers_count, chunk_pages=1,
                     limits=ingest.Limits(page_timeout=2))
    _good(found)
    error = found["bad.pdf"]
    assert isinstance(error, RenderTimeoutError) and isinstance(error, ingest.LimitExceededError)
    assert "page 2" in error.reason and "page_timeout" in error.reason


def test_file_time_limit_covers_all_its_pages(batch: list[Path]) -> None:
    write(batch[1], form_bomb())
    found = outcomes(batch, workers=2, chunk_pages=1,
                     limits=ingest.Limits(page_timeout=60, file_timeout=2))
    _good(found)
    assert isinstance(found["bad.pdf"], RenderTimeoutError)
    assert "in all" in found["bad.pdf"].reason and "file_timeout" in found["bad.pdf"].reason


def test_text_layer_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(poppler, "MAX_TEXT_BYTES_PER_PAGE", 10)
    path = write(tmp_path / "wordy.pdf", make_pdf(["a rather long line of text", "short"]))
    with caplog.at_level(logging.WARNING):
        pages = list(ingest.render(path, dpi=36, ocr="never"))  # the cut layer is short: auto would OCR it
    assert [p.page for p in pages] == [1, 2] and len(pages[0].text.encode()) <= 10
    assert pages[1].text.strip() == "short" and "is cut" in caplog.text


def test_streaming_renders_in_chunks_through_the_limited_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "long.pdf", make_pdf([f"page number {n}" for n in range(1, 13)],
                                                 size=(150, 40)))
    real, calls = poppler.pdftoppm, []

    def spy(pdf_path, first, last, *args):  # noqa: ANN001, ANN202 - observes, then runs it
        calls.append((first, last))
        return real(pdf_path, first, last, *args)

    monkeypatch.setattr(poppler, "pdftoppm", spy)
    pages = ingest.render(path, dpi=36, chunk_pages=4, ocr="never")  # short layers: auto would render for OCR
    assert calls == []  # nothing rendered before iteration
    assert next(pages).page == 1 and calls == [(1, 4)]
    rest = list(pages)
    assert calls == [(1, 4), (5, 8), (9, 12)] and [p.page for p in rest] == list(range(2, 13))
    assert all(page.text.strip() == f"page number {page.page}" for page in rest)


# --------------------------------------------------------------------------- memory, pixels


@pytest.mark.parametrize("workers_count", [0, 2])
def test_memory_cap_fails_the_file_not_the_run(batch: list[Path], workers_count: int) -> None:
    write(batch[1], make_pdf(["huge"], size=(3000, 3000)))  # 36 Mpx at 144 dpi: 108 MB of pixels
    found: dict[str, object] = {}
    for item in ingest.render_many(batch, workers=workers_count, dpi=144,
                                   limits=ingest.Limits(max_memory_mb=100)):
        try:
            found[Path(item.source).name] = [page.page for page in item.pages]
        except ingest.IngestError as error:
            found[Path(item.source).name] = error
    _good(found)
    assert isinstance(found["bad.pdf"], MemoryLimitError) and "100 MB" in found["bad.pdf"].reason


def test_pixels_are_counted_on_the_rendered_box(tmp_path: Path) -> None:
    # pdfinfo's page size is the 100 pt crop box; pdftoppm renders the 20,000 pt media box
    path = write(tmp_path / "tricky.pdf", pdf_with([(text_page("x"), (20000, 20000), (100, 100))]))
    page = next(ingest.render(path, dpi=144, limits=ingest.Limits(max_image_pixels=1_000_000)))
    assert page.image.width * page.image.height <= 1_000_000 and page.metadata["dpi"] < 144
    assert page.metadata["page_width_pt"] == 100.0


def test_page_too_large_at_any_dpi_is_refused_before_rendering(tmp_path: Path) -> None:
    good = write(tmp_path / "good.pdf", make_pdf(["x"]))
    path = write(tmp_path / "vast.pdf", pdf_with([(text_page("x"), (20000, 20000), None)]))
    limits = ingest.Limits(max_image_pixels=10_000)
    with pytest.raises(ingest.LimitExceededError, match=r"vast\.pdf: page 1 .* even at 1 dpi"):
        ingest.render(path, limits=limits)  # raised before any page is rendered
    assert isinstance(outcomes([path, good], workers=1, limits=limits)["vast.pdf"],
                      ingest.LimitExceededError)


def test_every_frame_counts_against_the_pixel_limit(tmp_path: Path) -> None:
    tiff = tmp_path / "scan.tiff"
    Image.new("RGB", (10, 10), "white").save(
        tiff, save_all=True, append_images=[Image.new("RGB", (2000, 2000), "black")]
    )
    pages = ingest.render(tiff, limits=ingest.Limits(max_image_pixels=1_000_000))
    assert next(pages).page == 1
    with pytest.raises(ingest.LimitExceededError, match=r"scan\.tiff: frame 2 of the image"):
        next(pages)


def test_gif_frame_larger_than_its_canvas_is_refused(tmp_path: Path) -> None:
    def blocks(image: Image.Image) -> tuple[bytes, bytes]:
        buffer = io.BytesIO()
        image.save(buffer, "GIF")
        data = buffer.getvalue()
        table = 3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0
        return data[: 13 + table], data[13 + table: -1]

    header, _ = blocks(Image.new("P", (10, 10), 1))  # a 10 x 10 canvas ...
    _, frame = blocks(Image.new("P", (2000, 2000), 2))  # ... holding a 2000 x 2000 frame
    path = write(tmp_path / "trick.gif", header + frame + b";")
    with pytest.raises(ingest.LimitExceededError, match=r"trick\.gif.*2000 x 2000"):
        ingest.render(path, limits=ingest.Limits(max_image_pixels=1_000_000))


# --------------------------------------------------------------------------- dying workers


def die_on_doomed(file, options, info, first, last, spool, spent=0.0):  # noqa: ANN001, ANN201
    """The worker task, except that rendering a file named doomed kills the worker for real."""
    if "doomed" in file.source:
        os.kill(os.getpid(), signal.SIGKILL)
    return workers.render_chunk(file, options, info, first, last, spool, spent)


def test_worker_that_dies_fails_only_its_file(
    batch: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler, "render_chunk", die_on_doomed)
    doomed = write(batch[1].with_name("doomed.pdf"), make_pdf(["d1", "d2", "d3"]))
    sources = [batch[0], doomed, batch[2], doomed.with_name("doomed-too.pdf"), batch[3]]
    write(sources[3], make_pdf(["again"]))
    found = outcomes(sources, workers=2, chunk_pages=1, max_in_flight=4)
    _good(found)
    for name in ("doomed.pdf", "doomed-too.pdf"):
        assert isinstance(found[name], WorkerCrashedError), found[name]
        assert "SIGKILL" in found[name].reason and name in str(found[name])


def test_indexing_goes_on_after_a_worker_dies(
    batch: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dse

    monkeypatch.setattr(scheduler, "render_chunk", die_on_doomed)
    doomed = write(batch[1].with_name("doomed.pdf"), make_pdf(["d1", "d2"]))
    files = [batch[0], doomed, batch[2], batch[3]]
    with dse.Retriever.create(tmp_path / "idx", dse.load_encoder("bm25")) as retriever:
        report = retriever.add(files, workers=2)
        assert report.pages == 9 and len(report.added) == 3
        assert [Path(f.source).name for f in report.failures] == ["doomed.pdf"]
        assert "render worker died" in str(report.failures[0].error)
        assert retriever.search_text("gamma", k=1)


# --------------------------------------------------------------------------- passwords


def test_password_never_on_a_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "locked.pdf", make_pdf(["secret one", "secret two"],
                                                   user_password="hunter2"))
    argv: list[str] = []
    real = subprocess.Popen.__init__

    def record(self, args, *rest, **kwargs):  # noqa: ANN001, ANN202 - observes, then runs it
        argv.extend(map(str, args))
        real(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", record)
    before = set(os.listdir(poppler.ram_dir()))
    pages = ingest.render(path, dpi=36, password="hunter2", chunk_pages=1)
    first = next(pages)
    copies = [poppler.ram_dir() + "/" + n for n in set(os.listdir(poppler.ram_dir())) - before
              if os.path.exists(f"{poppler.ram_dir()}/{n}/document.pdf")]
    assert len(copies) == 1 and os.stat(copies[0]).st_mode & 0o077 == 0
    assert os.stat(copies[0] + "/document.pdf").st_mode & 0o077 == 0
    texts = [first.text, *(page.text for page in pages)]
    assert ["secret one" in texts[0], "secret two" in texts[1]] == [True, True]
    assert argv and not [arg for arg in argv if "hunter2" in arg]
    assert not os.path.exists(copies[0])  # the decrypted copy is gone
    found = outcomes([path], workers=2, password="hunter2")
    assert found["locked.pdf"] == [1, 2] and not [arg for arg in argv if "hunter2" in arg]
    with pytest.raises(ingest.EncryptedSourceError, match="wrong"):
        ingest.render(path, password="nope")


# --------------------------------------------------------------------------- tools, sandboxes


def test_run_tool_bounds_time_output_and_memory() -> None:
    with pytest.raises(tools.ToolTimeout):
        tools.run_tool(["sleep", "30"], timeout=0.2, caps=tools.Caps())
    done = tools.run_tool(["yes"], timeout=30, caps=tools.Caps(), max_stdout=1000)
    assert done.truncated and len(done.stdout) == 1000
    probe = "import resource; print(resource.getrlimit(resource.RLIMIT_AS)[0])"
    caps = tools.Caps(memory_bytes=512 * 1024 * 1024, cpu_seconds=5)
    done = tools.run_tool([sys.executable, "-c", probe], timeout=60, caps=caps)
    assert int(done.stdout) == 512 * 1024 * 1024


def test_caps_without_prlimit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "_prlimit", lambda: None)
    probe = "import resource; print(resource.getrlimit(resource.RLIMIT_CPU)[0])"
    done = tools.run_tool([sys.executable, "-c", probe], timeout=60,
                            caps=tools.Caps(cpu_seconds=7))
    assert int(done.stdout) == 8  # whole seconds, one more than asked


def test_network_namespace_has_no_network() -> None:
    found = jail.network_prefix_available()
    if found is None:
        pytest.skip("no network namespace can be made on this machine")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        connect = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)"
        outside = tools.run_tool([sys.executable, "-c", connect], timeout=60, caps=tools.Caps())
        inside = tools.run_tool([*found[1], sys.executable, "-c", connect], timeout=60,
                                  caps=tools.Caps())
    assert outside.returncode == 0 and inside.returncode != 0
    assert b"unreachable" in inside.stderr.lower() or b"refused" in inside.stderr.lower()


def test_strict_jail_hides_the_users_files(tmp_path: Path) -> None:
    if not jail.strict_available():
        pytest.skip("bubblewrap cannot run here")
    secret = write(tmp_path / "secret.txt", b"private")
    shown = write(tmp_path / "shown.txt", b"visible")
    command = [*jail.strict_prefix([(str(shown), "/input/shown.txt")], []), "sh", "-c",
               f"cat /input/shown.txt; cat {secret} /etc/shadow 2>/dev/null; echo; echo $HOME"]
    done = tools.run_tool(command, timeout=60, caps=tools.Caps())
    assert done.stdout.split() == [b"visible", b"/tmp"]


_ODT_MANIFEST = (
    '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:'
    'opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path'
    '="/" manifest:media-type="application/vnd.oasis.opendocument.text"/><manifest:file-entry '
    'manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>'
)


def linked_odt(path: Path, links: list[str]) -> Path:
    """An ODT text whose pictures are links (not embedded): LibreOffice loads them to render."""
    frames = "".join(
        f'<draw:frame draw:name="p{i}" text:anchor-type="as-char" svg:width="4cm" svg:height="4cm">'
        f'<draw:image xlink:href="{link}" xlink:type="simple" xlink:show="embed" '
        'xlink:actuate="onLoad"/></draw:frame>'
        for i, link in enumerate(links)
    )
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="urn:oasis:'
        'names:tc:opendocument:xmlns:office:1.0" xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:'
        'drawing:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:svg="urn:'
        'oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" xmlns:xlink="http://www.w3.org/1999/'
        'xlink" office:version="1.2"><office:body><office:text><text:p>linked pictures'
        f"{frames}</text:p></office:text></office:body></office:document-content>"
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.text",
                         compress_type=zipfile.ZIP_STORED)
        archive.writestr("META-INF/manifest.xml", _ODT_MANIFEST)
        archive.writestr("content.xml", content)
    return path


def _count(image: Image.Image, colour: tuple[int, int, int]) -> int:
    return sum(1 for pixel in image.convert("RGB").getdata()
               if all(abs(a - b) < 60 for a, b in zip(pixel, colour)))


@needs_soffice
def test_libreoffice_reaches_no_network_and_strict_hides_files(tmp_path: Path) -> None:
    requests: list[str] = []
    picture = io.BytesIO()
    Image.new("RGB", (40, 40), (255, 0, 0)).save(picture, "PNG")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(picture.getvalue())))
            self.end_headers()
            self.wfile.write(picture.getvalue())

        def log_message(self, *args: object) -> None:
            pass

    local = tmp_path / "private" / "blue.png"
    local.parent.mkdir()
    Image.new("RGB", (40, 40), (0, 0, 255)).save(local)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seen = {}
    try:
        for mode in ("off", "auto", "strict"):
            if mode != "off" and jail.network_prefix_available() is None:
                continue
            if mode == "strict" and not jail.strict_available():
                continue
            url = f"http://127.0.0.1:{server.server_address[1]}/{mode}.png"
            doc = linked_odt(tmp_path / f"{mode}.odt", [url, local.as_uri()])
            page = next(ingest.render(doc, dpi=40, limits=ingest.Limits(sandbox=mode)))
            seen[mode] = (_count(page.image, (255, 0, 0)) > 100, _count(page.image, (0, 0, 255)) > 100)
    finally:
        server.shutdown()
    assert seen["off"] == (True, True) and requests == ["/off.png"]  # LibreOffice does fetch
    assert seen.get("auto", (False, True)) == (False, True)  # no network, files as they are
    assert seen.get("strict", (False, False)) == (False, False)  # no network, no private files


@needs_soffice
def test_sandbox_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             caplog: pytest.LogCaptureFixture) -> None:
    from test_office import make_docx

    monkeypatch.setattr(jail, "network_prefix_available", lambda: None)
    monkeypatch.setattr(jail, "strict_available", lambda: False)
    monkeypatch.setattr(tools, "_WARNED", set())
    docx = make_docx(tmp_path / "memo.docx", ["hello sandbox"])
    for mode in ("require", "strict"):
        with pytest.raises(SandboxUnavailableError, match=r"memo\.docx.*bubblewrap"):
            ingest.render(docx, limits=ingest.Limits(sandbox=mode))
    with caplog.at_level(logging.WARNING):
        page = next(ingest.render(docx, dpi=30))  # auto: converted, with a warning
    assert "hello sandbox" in page.text and "network access" in caplog.text


@needs_soffice
def test_libreoffice_memory_cap(tmp_path: Path) -> None:
    from test_office import make_docx

    docx = make_docx(tmp_path / "memo.docx", ["hello"])
    with pytest.raises(ingest.IngestError, match=r"memo\.docx") as info:
        ingest.render(docx, limits=ingest.Limits(max_memory_mb=128))
    assert isinstance(info.value, (MemoryLimitError, ingest.ConversionError))
