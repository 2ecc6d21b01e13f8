"""Web pages as sources: tiles, text, lazy loading, settling, address policy, errors, CLI.

Pages are served from localhost (http.server in a thread); one browser serves the whole module.
"""

from __future__ import annotations

import http.server
import io
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

import ingest
from ingest.web import safety as web_safety
from ingest.web.pages import tile_spans
from ingest.web.render import WebOptions, WebResult, close_shared_renderer, render_web, shared_renderer

pytest.importorskip("playwright")
try:
    from ingest.web.browser import chromium_path

    chromium_path()
except ingest.MissingToolError as exc:  # pragma: no cover - CI installs chromium
    pytest.skip(str(exc), allow_module_level=True)

FIXTURES = Path(__file__).parent / "web_fixtures"
FAST = WebOptions(width=800, tile_height=1000, overlap=0.2, settle_timeout=5, idle_ms=300)


def _png(color: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (50, 50), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _rows(count: int) -> str:
    rows = "".join(
        f"<div style='height:100px;line-height:100px;{'background:#ff0000;' if i == 25 else ''}'>row-{i}</div>"
        for i in range(count)
    )
    return f"<html><head><title>Long page</title></head><body style='margin:0'>{rows}</body></html>"


LAZY = """<html><body style="margin:0"><div style="height:3000px">top of the lazy page</div>
<div id="sentinel">sentinel</div><img loading="lazy" src="/green.png" width="50" height="50">
<script>
new IntersectionObserver((entries, observer) => {
  if (!entries[0].isIntersecting) return;
  observer.disconnect();
  fetch('/lazy-data').then(r => r.text()).then(t => {
    const p = document.createElement('p'); p.textContent = t; document.body.appendChild(p);
  });
}).observe(document.getElementById('sentinel'));
</script></body></html>"""

POLL = """<html><body><p>polling forever</p>
<script>setInterval(() => fetch('/ping?' + Date.now()), 100);</script></body></html>"""

DIALOGS = """<html><body><script>alert('hello'); confirm('sure?');</script>
<p>after-dialog</p></body></html>"""

AUTO_DOWNLOAD = """<html><body><p>page-with-download</p><a id="a" href="/file.bin" download>get</a>
<script>document.getElementById('a').click();</script></body></html>"""


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.log.append(self.path.split("?")[0])  # type: ignore[attr-defined]
        if self.path == "/hang":
            time.sleep(3)
        elif self.path.startswith("/ping"):
            time.sleep(0.5)  # with polling every 0.1 s, a request is always in flight
        status, headers, body = self.server.routes.get(  # type: ignore[attr-defined]
            self.path.split("?")[0], (404, {}, b"")
        )
        self.send_response(status)
        headers = {"Content-Type": "text/html; charset=utf-8", **headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(
    host: str, routes: dict[str, tuple[int, dict[str, str], bytes]]
) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer((host, 0), _Handler)
    server.routes = routes  # type: ignore[attr-defined]
    server.log = []  # type: ignore[attr-defined]
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def site() -> Iterator[Callable[[str], str]]:
    """A local web site; yields `url(path)`. Its request log is `url.log`."""
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {
        "/long": (200, {}, _rows(40).encode()),
        "/lazy": (200, {}, LAZY.encode()),
        "/lazy-data": (200, {"Content-Type": "text/plain"}, b"LAZY-LOADED-CONTENT"),
        "/green.png": (200, {"Content-Type": "image/png"}, _png("#00ff00")),
        "/secret.png": (200, {"Content-Type": "image/png"}, _png("#000000")),
        "/poll": (200, {}, POLL.encode()),
        "/ping": (200, {"Content-Type": "text/plain"}, b"pong"),  # answered after 0.5 s
        "/dialogs": (200, {}, DIALOGS.encode()),
        "/auto-download": (200, {}, AUTO_DOWNLOAD.encode()),
        "/file.bin": (
            200,
            {
                "Content-Type": "application/octet-stream",
                "Content-Disposition": "attachment; filename=file.bin",
            },
            b"\0" * 64,
        ),
        "/busy": (200, {}, b"<p>busy</p><script>setTimeout(() => { while (true) {} }, 0);</script>"),
        "/search-me": (
            200,
            {},
            b"<html><title>Zeppelin</title><body><p>zeppelin hangar schedule</p></body></html>",
        ),
    }
    server = _serve("127.0.0.1", routes)
    base = f"http://127.0.0.1:{server.server_port}"

    def url(path: str) -> str:
        return base + path

    url.log = server.log  # type: ignore[attr-defined]
    url.routes = routes  # type: ignore[attr-defined]
    yield url
    server.shutdown()


@pytest.fixture(scope="module", autouse=True)
def browser() -> Iterator[None]:
    """One browser for the module (the process-wide one, which the indexer uses too)."""
    shared_renderer()
    yield
    close_shared_renderer()


def _one(source: str | Path, options: WebOptions = FAST, allow_private: bool = True) -> WebResult:
    return render_web([source], options, allow_private=allow_private)[0]


def test_long_page_tiles_offsets_and_text(site: Callable[[str], str]) -> None:
    result = _one(site("/long"))
    assert result.error is None
    pages = result.pages
    full = pages[0].metadata["full_height"]
    assert full == 4000
    # stride 800 (20 % of 1000 overlaps): 0, 800, 1600, 2400, 3200 (the last one 800 tall)
    assert [p.metadata["offset_y"] for p in pages] == [0, 800, 1600, 2400, 3200]
    assert [(p.metadata["offset_y"], p.image.height) for p in pages] == tile_spans(full, FAST)
    assert [p.page for p in pages] == [1, 2, 3, 4, 5]
    assert all(p.image.width == 800 and p.source == site("/long") for p in pages)
    assert all(p.metadata["title"] == "Long page" and p.metadata["num_pages"] == 5 for p in pages)
    for p in pages:
        top = p.metadata["offset_y"]
        expected = [f"row-{i}" for i in range(top // 100, (top + p.image.height) // 100)]
        assert p.text.split("\n") == expected
    # row 25 is red: at y 2500-2600, i.e. 900-1000 into tile 3 and 100-200 into tile 4
    assert pages[2].image.getpixel((400, 950))[:3] == (255, 0, 0)
    assert pages[3].image.getpixel((400, 150))[:3] == (255, 0, 0)
    assert pages[3].image.getpixel((400, 250))[:3] == (255, 255, 255)
    assert len({p.page_id for p in pages}) == 5  # stable across renders: see the CLI re-index test


def test_lazy_content_appears_after_scrolling(site: Callable[[str], str]) -> None:
    result = _one(site("/lazy"))
    assert result.error is None
    assert any("LAZY-LOADED-CONTENT" in p.text for p in result.pages)
    assert "/green.png" in site.log  # type: ignore[attr-defined]
    assert all(p.metadata["settled"] for p in result.pages)


def test_never_settling_page_is_flagged_not_dropped(
    site: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    options = WebOptions(width=800, tile_height=1000, settle_timeout=1.5, idle_ms=300)
    with caplog.at_level(logging.WARNING, logger="ingest.web.capture"):
        result = _one(site("/poll"), options)
    assert result.error is None and result.pages
    assert result.pages[0].metadata["settled"] is False
    assert "polling forever" in result.pages[0].text
    assert "did not settle" in caplog.text


def test_private_address_refused_without_the_switch(site: Callable[[str], str]) -> None:
    before = len(site.log)  # type: ignore[attr-defined]
    result = _one(site("/long"), allow_private=False)
    assert result.pages == () and result.error is not None
    assert result.error.source == site("/long")
    assert "refused" in str(result.error) and "allow_private" in str(result.error)
    assert len(site.log) == before  # type: ignore[attr-defined]  # never requested


def test_address_policy() -> None:
    for address in (
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "0.0.0.0",
        "::ffff:127.0.0.1",
        "100.64.0.1",
    ):
        assert web_safety.is_private_address(address), address
    assert not web_safety.is_private_address("93.184.216.34")
    assert web_safety.is_url("https://example.org/a") and not web_safety.is_url("ftp://example.org/a")
    assert not web_safety.is_url("page.html") and not web_safety.is_url(Path("http://x"))
    with pytest.raises(web_safety.BlockedAddressError, match="non-public"):
        web_safety.allowed_addresses("localhost", 80, allow_private=False)
    assert web_safety.allowed_addresses("127.0.0.1", 80, allow_private=True) == ["127.0.0.1"]


def test_subresource_at_private_address_is_blocked(site: Callable[[str], str], tmp_path: Path) -> None:
    page = tmp_path / "local.html"
    page.write_text(f"<html><body><p>local-page</p><img src='{site('/secret.png')}'></body></html>")
    result = _one(page, allow_private=False)
    assert result.error is None and "local-page" in result.pages[0].text
    assert "/secret.png" not in site.log  # type: ignore[attr-defined]
    assert any("127.0.0.1" in refused for refused in result.pages[0].metadata["requests_refused"])
    assert _one(page, allow_private=True).error is None
    assert "/secret.png" in site.log  # type: ignore[attr-defined]


def test_redirect_to_private_address_is_blocked(
    site: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        inner = _serve("127.0.0.2", {"/": (200, {}, b"<p>inner</p>"), "/x.png": (200, {}, _png("red"))})
    except OSError:
        pytest.skip("cannot bind 127.0.0.2")
    inner_base = f"http://127.0.0.2:{inner.server_port}"
    routes = site.routes  # type: ignore[attr-defined]
    routes["/to-private"] = (302, {"Location": inner_base + "/"}, b"")
    routes["/img-to-private"] = (302, {"Location": inner_base + "/x.png"}, b"")
    routes["/redirecting-img"] = (200, {}, b"<p>outer</p><img src='/img-to-private'>")
    # pretend only 127.0.0.2 is private, so the outer site counts as public
    monkeypatch.setattr(web_safety, "is_private_address", lambda address: address.startswith("127.0.0.2"))
    try:
        result = _one(site("/redirecting-img"), allow_private=False)
        assert result.error is None and "outer" in result.pages[0].text
        assert "/img-to-private" in site.log and inner.log == []  # type: ignore[attr-defined]
        failed = _one(site("/to-private"), allow_private=False)
        assert failed.error is not None and "refused" in str(failed.error)
        assert failed.error.source == site("/to-private") and inner.log == []
    finally:
        inner.shutdown()


def test_downloads_are_refused(site: Callable[[str], str]) -> None:
    result = _one(site("/file.bin"))
    assert result.error is not None and "download" in str(result.error)
    page = _one(site("/auto-download"))
    assert page.error is None and "page-with-download" in page.pages[0].text
    assert page.pages[0].metadata["downloads_refused"] == 1


def test_dialogs_are_dismissed(site: Callable[[str], str]) -> None:
    result = _one(site("/dialogs"))
    assert result.error is None
    assert result.pages[0].metadata["dialogs_dismissed"] == 2
    assert "after-dialog" in result.pages[0].text


def test_http_errors_and_unreachable_hosts_name_the_url(site: Callable[[str], str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    sources = [site("/missing"), closed, "http://no-such-host.invalid/", site("/search-me")]
    results = render_web(sources, FAST, allow_private=True)
    assert [r.source for r in results] == sources  # input order, the batch goes on
    missing, unreachable, unknown, fine = results
    assert "HTTP error 404" in str(missing.error) and str(missing.error).startswith(site("/missing"))
    assert "cannot connect" in str(unreachable.error) and str(unreachable.error).startswith(closed)
    assert "cannot resolve host" in str(unknown.error)
    assert fine.error is None and "zeppelin hangar" in fine.pages[0].text


def test_time_limits(site: Callable[[str], str]) -> None:
    hang = _one(site("/hang"), WebOptions(nav_timeout=1))
    assert hang.error is not None and "no response" in str(hang.error)
    busy = _one(site("/busy"), WebOptions(page_timeout=2))
    assert busy.error is not None and "did not render within 2 s" in str(busy.error)


def test_local_html_file(tmp_path: Path) -> None:
    path = FIXTURES / "article.html"
    result = _one(path, FAST, allow_private=False)
    assert result.error is None
    (page,) = result.pages
    assert page.source == str(path) and page.source_digest == ingest.file_digest(path)
    assert page.metadata["title"] == "Local fixture article" and page.metadata["file_name"] == "article.html"
    assert "Marmalade orchard notes" in page.text and "second week of October" in page.text
    assert (0, 0, 255) in {
        page.image.getpixel((x, y))[:3] for x in range(0, 200, 10) for y in range(0, 400, 10)
    }
    via_render = list(ingest.render(path))  # the ingest.render table entry, default options
    assert [p.page_id for p in via_render] == [page.page_id]
    assert path in ingest.discover([FIXTURES])


def test_local_file_reaches_its_own_folder_only(tmp_path: Path) -> None:
    (tmp_path / "outside.html").write_text("<p>outside-secret</p>")
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "inside.html").write_text("<p>inside-frame</p>")
    page = folder / "page.html"
    page.write_text("<p>main</p><iframe src='inside.html'></iframe><iframe src='../outside.html'></iframe>")
    (result,) = _one(page, FAST, allow_private=False).pages
    refused = result.metadata["requests_refused"]
    assert len(refused) == 1 and "outside.html" in refused[0] and "outside the page's folder" in refused[0]


def test_discover_and_render_pass_urls_through(site: Callable[[str], str]) -> None:
    assert ingest.discover([site("/long"), site("/long")]) == [site("/long")]
    pages = list(ingest.render(site("/search-me"), allow_private=True))
    assert pages[0].source == site("/search-me") and "zeppelin hangar" in pages[0].text
    with pytest.raises(ingest.IngestError, match="refused"):
        ingest.render(site("/search-me"))


def test_cli_index_and_search_url(
    site: Callable[[str], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dse.cli.main import main

    idx = str(tmp_path / "idx")
    sources = [site("/search-me"), site("/dialogs"), str(FIXTURES)]  # the folder holds article.html
    assert main(["index", *sources, "--index", idx, "--no-progress", "--allow-private-urls"]) == 0
    assert re.search(r"indexed 3 source\(s\).*, 3 page\(s\)", capsys.readouterr().err)
    assert main(["search", "--index", idx, "zeppelin hangar"]) == 0
    assert site("/search-me") in capsys.readouterr().out.splitlines()[0]
    assert main(["search", "--index", idx, "marmalade quince"]) == 0
    assert "article.html" in capsys.readouterr().out.splitlines()[0]
    assert main(["index", *sources, "--index", idx, "--no-progress", "--allow-private-urls"]) == 0
    assert "skipped 3 already indexed" in capsys.readouterr().err


def test_real_html_renders_offline(shared_data: Path) -> None:
    folder = shared_data / "real-docs" / "web" / "readability"
    files = sorted(folder.glob("*.html"), key=lambda path: (path.stat().st_size, path.name))[:3]
    if not files:
        pytest.skip(f"no html files in {folder}")
    options = WebOptions(settle_timeout=2, page_timeout=40)
    for result in render_web(files, options):
        assert result.error is None, result.error
        assert result.pages and all(p.image.width == 1280 for p in result.pages)
        assert any(p.text for p in result.pages)


def test_each_host_is_resolved_once_per_page_batch(
    site: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A saved page with dozens of parser-blocking scripts on one dead host (like buzzfeed-1.html)."""
    calls: list[str] = []
    real = web_safety.resolve_host

    def counting(host: str, port: int) -> list[str]:
        calls.append(host)
        return real(host, port)

    monkeypatch.setattr(web_safety, "resolve_host", counting)
    scripts = "".join(f"<script src='http://dead-cdn.invalid/s{i}.js'></script>" for i in range(40))
    site.routes["/blocking-scripts"] = (200, {}, f"<html><head>{scripts}</head><body><p>body-after-scripts</p></body></html>".encode())  # type: ignore[attr-defined]
    result = _one(site("/blocking-scripts"))
    assert result.error is None and "body-after-scripts" in result.pages[0].text
    assert calls.count("dead-cdn.invalid") == 1
    assert any("dead-cdn.invalid" in refused for refused in result.pages[0].metadata["requests_refused"])
