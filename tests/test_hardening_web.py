"""Web hardening: Chromium's sandbox, local files a page may load, tile capture that survives load.

Real browsers throughout (this suite runs as root on CI, so the sandboxed browser runs as an
unprivileged user for real); the retry / time-limit logic of the tile capture is also checked on
a scripted fake page. Loopback only; the CPU-hog test is bounded in time.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import ingest
from ingest.web import sandbox as web_sandbox
from ingest.web import tiles as web_tiles
from ingest.web.local import local_refusal
from ingest.web.render import WebOptions, WebRenderer, render_web

pytest.importorskip("playwright")
try:
    from ingest.web.browser import chromium_path

    CHROMIUM = chromium_path()
except ingest.MissingToolError as exc:  # pragma: no cover - CI installs chromium
    pytest.skip(str(exc), allow_module_level=True)

FAST = WebOptions(width=800, tile_height=1000, overlap=0.2, settle_timeout=5, idle_ms=300)
ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def renderer() -> Iterator[WebRenderer]:
    """One default (sandboxed) browser for the module."""
    with WebRenderer() as shared:
        yield shared


def _png(color: str, size: int = 50) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _browser_processes() -> list[tuple[int, int, str]]:
    """`(pid, uid, user namespace)` of every Chromium process descended from this one."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(status.split("PPid:")[1].split()[0])

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    found = []
    for pid in parents:
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[1])
            namespace = os.readlink(f"/proc/{pid}/ns/user")
        except OSError:
            continue
        if "chrom" in Path(exe).name and descends(pid):
            found.append((pid, uid, namespace))
    return found


# -- the sandbox ------------------------------------------------------------------------------


def test_chromium_keeps_its_sandbox_by_default(renderer: WebRenderer, tmp_path: Path) -> None:
    plan = renderer.launch_plan()
    assert plan.sandbox and (plan.user == "nobody") == ROOT
    report = renderer.sandbox_report()
    assert "You are adequately sandboxed" in report and "Seccomp-BPF sandbox\tYes" in report
    # a page in a private folder (pytest's tmp_path is 0700 root): dse reads it, not the browser
    page = tmp_path / "private.html"
    page.write_text("<html><body><p>private-page-text</p><img src='dot.png'></body></html>")
    (tmp_path / "dot.png").write_bytes(_png("#00ff00"))
    (result,) = render_web([page], FAST, renderer=renderer)
    assert result.error is None and "private-page-text" in result.pages[0].text
    processes = _browser_processes()
    assert processes, "no Chromium process found under this one"
    if ROOT:
        assert {uid for _, uid, _ in processes} == {65534}  # nobody, never root
    assert len({namespace for _, _, namespace in processes}) > 1  # renderers in their own namespace


def test_running_without_the_sandbox_is_explicit_and_warns(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(web_sandbox.SANDBOX_ENV, "0")
    assert web_sandbox.sandbox_wanted(None) is False and web_sandbox.sandbox_wanted(True) is True
    monkeypatch.delenv(web_sandbox.SANDBOX_ENV)
    assert web_sandbox.sandbox_wanted(None) is True and web_sandbox.sandbox_wanted(None, False) is False
    with pytest.raises(ValueError, match="sandbox=False"):
        WebRenderer(extra_args=("--no-sandbox",))
    with WebRenderer(sandbox=False) as unsandboxed, caplog.at_level(logging.WARNING, "ingest.web.sandbox"):
        assert unsandboxed.launch_plan().sandbox is False
        assert "NOT adequately sandboxed" in unsandboxed.sandbox_report()
    assert "without its sandbox" in caplog.text


def test_a_sandbox_that_cannot_start_says_what_to_do() -> None:
    folder = Path(tempfile.mkdtemp(prefix="dse-fake-chromium-"))
    try:
        folder.chmod(0o755)  # the unprivileged user must be able to run it
        fake = folder / "chromium"
        fake.write_text(
            "#!/bin/sh\necho 'FATAL:zygote_host_impl_linux.cc No usable sandbox! "
            "Update your kernel or see the docs' >&2\nexit 1\n"
        )
        fake.chmod(0o755)
        with WebRenderer(executable=str(fake)) as broken:
            with pytest.raises(ingest.MissingToolError) as error:
                render_web(["https://example.org/"], FAST, renderer=broken)
    finally:
        shutil.rmtree(folder)
    message = str(error.value)
    assert "sandbox" in message.split(":", 1)[1] and "user namespaces" in message  # Chromium's words, then ours
    assert "DSE_CHROMIUM_SANDBOX=0" in message and "--no-browser-sandbox" in message


def test_the_unprivileged_user_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    if not ROOT:
        pytest.skip("the browser user only matters when dse runs as root")
    monkeypatch.setenv(web_sandbox.USER_ENV, "no-such-user-dse")
    with pytest.raises(ingest.MissingToolError, match="no-such-user-dse"):
        web_sandbox.plan_launch(CHROMIUM, True)
    monkeypatch.setenv(web_sandbox.USER_ENV, "root")
    with pytest.raises(ingest.MissingToolError, match="unprivileged"):
        web_sandbox.plan_launch(CHROMIUM, True)
    plain = web_sandbox.plan_launch(CHROMIUM, False)
    with web_sandbox.executable_for(plain) as executable:
        assert executable == CHROMIUM and plain.script is None
    monkeypatch.delenv(web_sandbox.USER_ENV)
    wrapped = web_sandbox.plan_launch(CHROMIUM, True)
    with web_sandbox.executable_for(wrapped) as executable:
        assert Path(executable).stat().st_mode & 0o777 == 0o700 and "setpriv" in Path(executable).read_text()
    assert not Path(executable).parent.exists()  # deleted once Chromium has started


# -- local files --------------------------------------------------------------------------------

PROBE = """<html><body><p>probe-page</p>
<img id="sibling" src="green.png"><img id="outside" src="OUTSIDE">
<iframe src="file:///etc/passwd"></iframe><iframe src="OUTSIDE_HTML"></iframe>
<pre id="out"></pre>
<script>
const report = (line) => { document.getElementById("out").textContent += line + "\\n"; };
const tryFetch = (name, url) => fetch(url).then(r => r.text()).then(t => report(name + ":read " + t.slice(0, 12)),
                                                                    () => report(name + ":blocked"));
window.addEventListener("load", () => {
  for (const id of ["sibling", "outside"]) report(id + "-img:" + document.getElementById(id).naturalWidth);
  tryFetch("passwd-fetch", "file:///etc/passwd");
  tryFetch("sibling-fetch", "notes.txt");
});
</script></body></html>"""


def _probe_site(tmp_path: Path) -> Path:
    (tmp_path / "outside.png").write_bytes(_png("#ff0000"))
    (tmp_path / "outside.html").write_text("<body style='background:#ff0000'>outside-frame</body>")
    site = tmp_path / "site"
    site.mkdir()
    (site / "green.png").write_bytes(_png("#00ff00"))
    (site / "notes.txt").write_text("sibling-secret-notes")
    page = site / "probe.html"
    html = PROBE.replace("OUTSIDE_HTML", (tmp_path / "outside.html").as_uri())
    page.write_text(html.replace("OUTSIDE", (tmp_path / "outside.png").as_uri()))
    return page


@pytest.mark.parametrize("policy", ["folder", "none"])
def test_local_page_cannot_read_other_local_files(renderer: WebRenderer, tmp_path: Path, policy: str) -> None:
    page = _probe_site(tmp_path)
    options = WebOptions(width=800, tile_height=1000, settle_timeout=5, idle_ms=300, local_files=policy)
    (result,) = render_web([page], options, renderer=renderer)
    assert result.error is None
    (tile,) = result.pages
    text = tile.text
    assert "probe-page" in text and "root:x:0" not in text and "sibling-secret" not in text
    assert "outside-img:0" in text
    assert f"sibling-img:{50 if policy == 'folder' else 0}" in text
    assert "passwd-fetch:blocked" in text and "sibling-fetch:blocked" in text
    refused = " ".join(tile.metadata["requests_refused"])
    assert "file:///etc/passwd" in refused and "outside.png" in refused and "outside.html" in refused
    assert ("green.png" in refused) == (policy == "none")
    colors = {tile.image.getpixel((x, y))[:3] for x in range(0, 800, 4) for y in range(0, 400, 4)}
    assert (255, 0, 0) not in colors  # neither the outside image nor the outside frame was drawn
    assert ((0, 255, 0) in colors) == (policy == "folder")


def test_local_policy_rules(tmp_path: Path) -> None:
    page = (tmp_path / "site" / "page.html").resolve()
    inside = page.parent / "page_files" / "a.png"
    assert local_refusal(page, page, "none", "document") is None
    assert local_refusal(inside, page, "folder", "image") is None
    assert "folder" in str(local_refusal(tmp_path / "x.png", page, "folder", "image"))
    assert "local_files='none'" in str(local_refusal(inside, page, "none", "image"))
    for kind in ("fetch", "xhr", "eventsource", "websocket"):
        assert "scripts may not read" in str(local_refusal(inside, page, "folder", kind))
    with pytest.raises(ValueError, match="local_files"):
        WebOptions(local_files="everything")


# -- tiles ---------------------------------------------------------------------------------------


def _rows(count: int, script: str = "") -> str:
    rows = "".join(
        f"<div style='height:100px;background:{'#ff0000' if i % 10 == 5 else '#ffffff'}'>row-{i}</div>"
        for i in range(count)
    )
    return f"<html><body style='margin:0'>{rows}{script}</body></html>"


def _red_rows(image: Image.Image, offset: int) -> list[int]:
    """Page rows (100 px each) that are red in a tile, read at their middle."""
    return [
        (offset + y) // 100
        for y in range(50 - offset % 100, image.height, 100)
        if image.getpixel((10, y))[:3] == (255, 0, 0)
    ]


def test_scroll_locked_page_falls_back_to_the_full_page_clip(renderer: WebRenderer, tmp_path: Path) -> None:
    page = tmp_path / "locked.html"
    page.write_text(_rows(30, "<script>addEventListener('scroll', () => scrollTo(0, 0));</script>"))
    (result,) = render_web([page], FAST, renderer=renderer)
    assert result.error is None
    pages = result.pages
    assert [p.metadata["offset_y"] for p in pages] == [0, 800, 1600, 2400]
    assert pages[0].metadata["tile_fallbacks"] == 3 and pages[0].metadata["stopped"] is None
    for p in pages:  # every tile shows its own part of the page
        offset = p.metadata["offset_y"]
        expected = [row for row in range(offset // 100, (offset + p.image.height) // 100) if row % 10 == 5]
        assert _red_rows(p.image, offset) == expected


def test_fixed_header_is_drawn_in_the_first_tile_only(renderer: WebRenderer, tmp_path: Path) -> None:
    page = tmp_path / "fixed.html"
    header = "<div style='position:fixed;top:0;left:0;width:100%;height:40px;background:#0000ff'>head</div>"
    page.write_text(_rows(25, header))
    (result,) = render_web([page], FAST, renderer=renderer)
    tops = [p.image.getpixel((400, 20))[:3] for p in result.pages]
    assert tops[0] == (0, 0, 255) and all(color != (0, 0, 255) for color in tops[1:])
    assert result.pages[0].metadata["tile_fallbacks"] == 0


class _FakeCDP:
    """Page.captureScreenshot that hangs on the calls listed in `hang` (1-based)."""

    def __init__(self, hang: set[int], delay: float = 0.0) -> None:
        self.calls, self.hang, self.delay = 0, hang, delay

    async def send(self, method: str, params: dict[str, Any]) -> dict[str, str]:
        self.calls += 1
        await asyncio.sleep(3600 if self.calls in self.hang else self.delay)
        clip = params["clip"]
        return {"data": base64.b64encode(_png_size(clip["width"], clip["height"])).decode()}

    async def detach(self) -> None:
        pass


def _png_size(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, format="PNG")
    return buffer.getvalue()


class _FakePage:
    """Enough of a Playwright page for `capture_tiles`: scrolling works, screenshots come from `cdp`."""

    def __init__(self, cdp: _FakeCDP, height: int) -> None:
        self.cdp, self.height, self.full_page_shots = cdp, height, 0
        self.context = self

    async def new_cdp_session(self, page: Any) -> _FakeCDP:
        return self.cdp

    async def evaluate(self, script: str, arg: Any = None) -> Any:
        if "scrollTo" in script:
            return [min(arg, self.height - 1000), 1000, self.height]
        return 0

    async def screenshot(self, clip: dict[str, int], **_: Any) -> bytes:
        self.full_page_shots += 1
        return _png_size(clip["width"], clip["height"])


def _run_tiles(page: _FakePage, spans: list[tuple[int, int]], options: WebOptions, seconds: float) -> Any:
    async def go() -> Any:
        return await web_tiles.capture_tiles(page, spans, options, asyncio.get_running_loop().time() + seconds)

    return asyncio.run(go())


def test_slow_tile_is_retried_then_captured_another_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_tiles, "MIN_ATTEMPT", 0.05)
    options = WebOptions(width=100, tile_height=1000, overlap=0.0, tile_timeout=0.2)
    spans = [(0, 1000), (1000, 1000), (2000, 1000)]
    page = _FakePage(_FakeCDP(hang={2, 4, 5}), height=3000)  # tile 2 retried, tile 3 falls back
    tiles = _run_tiles(page, spans, options, 30.0)
    assert [offset for offset, _ in tiles.shots] == [0, 1000, 2000]
    assert (tiles.retries, tiles.fallbacks, tiles.stopped, page.full_page_shots) == (2, 1, None, 1)
    assert tiles.bottom == 3000


def test_tiles_stop_at_the_deadline_and_keep_what_they_took(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_tiles, "MIN_ATTEMPT", 0.05)
    options = WebOptions(width=100, tile_height=1000, overlap=0.0, tile_timeout=5)
    spans = [(index * 1000, 1000) for index in range(50)]
    page = _FakePage(_FakeCDP(hang=set(), delay=0.1), height=50_000)
    tiles = _run_tiles(page, spans, options, 1.0)
    assert 0 < len(tiles.shots) < 50 and tiles.stopped == "time limit"
    assert tiles.bottom == 1000 * len(tiles.shots)


def test_page_that_shrinks_while_captured_ends_cleanly() -> None:
    options = WebOptions(width=100, tile_height=1000, overlap=0.0)
    page = _FakePage(_FakeCDP(hang=set()), height=1500)  # measured 3000 px, now 1500
    tiles = _run_tiles(page, [(0, 1000), (1000, 1000), (2000, 1000)], options, 30.0)
    assert [offset for offset, _ in tiles.shots] == [0, 1000] and tiles.stopped is None
    assert tiles.bottom == 1500


# -- under load ----------------------------------------------------------------------------------

HOG_SECONDS = 150
"""Each CPU hog ends on its own after this, whatever happens to the test."""


@pytest.fixture()
def cpu_hogs() -> Iterator[None]:
    """Two busy-loop processes (this machine has 2 cores) for the duration of the test."""
    code = f"import time\nend = time.time() + {HOG_SECONDS}\nwhile time.time() < end: pass\n"
    hogs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def test_long_pages_capture_under_full_cpu_load(
    renderer: WebRenderer, tmp_path: Path, cpu_hogs: None, shared_data_or_none: Path | None
) -> None:
    long_page = tmp_path / "long.html"
    long_page.write_text(_rows(120))  # 12,000 px: 9 tiles of 1600 (stride 1440)
    sources: list[Path] = [long_page]
    if shared_data_or_none is not None:
        sources.append(shared_data_or_none / "real-docs" / "web" / "readability" / "buzzfeed-1.html")
    results = render_web(sources, WebOptions(settle_timeout=5), renderer=renderer)
    for result in results:
        assert result.error is None, result.error
        first = result.pages[0].metadata
        assert first["stopped"] is None and not first["truncated"]
        assert result.pages[-1].metadata["offset_y"] + result.pages[-1].image.height == first["full_height"]
    assert len(results[0].pages) == 9
    for p in results[0].pages:
        assert _red_rows(p.image, p.metadata["offset_y"]) == [
            row for row in range(p.metadata["offset_y"] // 100, (p.metadata["offset_y"] + p.image.height) // 100)
            if row % 10 == 5
        ]
    if len(results) > 1:
        buzzfeed = results[1]
        assert len(buzzfeed.pages) >= 5 and "Student Dies After Diet Pills" in " ".join(p.text for p in buzzfeed.pages)


@pytest.fixture()
def shared_data_or_none() -> Path | None:
    """../shared/data if present (the load test then also renders buzzfeed-1.html)."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    return shared if shared.is_dir() else None


def test_every_real_web_page_indexes(
    shared_data_or_none: Path | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if shared_data_or_none is None:
        pytest.skip("../shared/data is absent")
    from dse.cli.main import main

    folder = shared_data_or_none / "real-docs" / "web"
    files = sorted(folder.rglob("*.html"))
    assert main(["index", str(folder), "--index", str(tmp_path / "idx"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"indexed {len(files)} source(s)" in err, err
    assert "; 0 failed;" in err and "  failed:" not in err, err
