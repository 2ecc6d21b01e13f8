"""Office documents through LibreOffice: pages, ids, metadata, and every way a conversion fails."""

from __future__ import annotations

import os
import threading
import time
import zipfile
from pathlib import Path

import pytest

import ingest
from ingest.office import convert as office

needs_soffice = pytest.mark.skipif(office.find_soffice() is None, reason="LibreOffice is not installed")

_DOCX_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
    'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName='
    '"/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.'
    'document.main+xml"/></Types>'
)
_DOCX_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
    'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
    'officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>'
)
_ODP_MANIFEST = (
    '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:'
    'opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path="/" '
    'manifest:media-type="application/vnd.oasis.opendocument.presentation"/><manifest:file-entry '
    'manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>'
)


def make_docx(path: Path, pages: list[str]) -> Path:
    """Write a minimal DOCX by hand: one paragraph per page, separated by page breaks."""
    body = '<w:p><w:r><w:br w:type="page"/></w:r></w:p>'.join(
        f"<w:p><w:r><w:t>{text}</w:t></w:r></w:p>" for text in pages
    )
    document = (
        '<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
        f'wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>'
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", _DOCX_TYPES)
        archive.writestr("_rels/.rels", _DOCX_RELS)
        archive.writestr("word/document.xml", document)
    return path


def make_odp(path: Path, slides: list[str]) -> Path:
    """Write a minimal OpenDocument presentation by hand: one text box per slide."""
    pages = "".join(
        f'<draw:page draw:name="s{i}"><draw:frame svg:x="2cm" svg:y="2cm" svg:width="20cm" '
        f'svg:height="3cm"><draw:text-box><text:p>{text}</text:p></draw:text-box></draw:frame></draw:page>'
        for i, text in enumerate(slides)
    )
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="urn:oasis:names:tc:'
        'opendocument:xmlns:office:1.0" xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:svg="urn:oasis:names:tc:'
        'opendocument:xmlns:svg-compatible:1.0" office:version="1.2"><office:body><office:presentation>'
        f"{pages}</office:presentation></office:body></office:document-content>"
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.presentation",
                         compress_type=zipfile.ZIP_STORED)
        archive.writestr("META-INF/manifest.xml", _ODP_MANIFEST)
        archive.writestr("content.xml", content)
    return path


def fake_soffice(folder: Path, script: str) -> Path:
    """Put an executable `soffice` shell script first on PATH (returns its folder)."""
    folder.mkdir(exist_ok=True)
    program = folder / "soffice"
    program.write_text("#!/bin/sh\n" + script)
    program.chmod(0o755)
    return folder


@pytest.fixture()
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary folders of the conversions go under a folder of this test."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(folder))
    return folder


@needs_soffice
def test_docx_pages_ids_text_and_metadata(tmp_path: Path, private_tmp: Path) -> None:
    docx = make_docx(tmp_path / "Report (final).docx", ["alpha page", "bravo page"])
    pages = list(ingest.render(docx, dpi=40))
    digest = ingest.file_digest(docx)
    assert [p.page for p in pages] == [1, 2]
    assert [p.page_id for p in pages] == [ingest.make_page_id(digest, n) for n in (1, 2)]
    assert all(p.source == str(docx) and p.source_digest == digest for p in pages)
    assert "alpha" in pages[0].text and "bravo" in pages[1].text
    meta = pages[0].metadata
    assert (meta["kind"], meta["format"], meta["file_name"]) == ("office", "docx", docx.name)
    assert meta["num_pages"] == 2 and pages[0].image.mode == "RGB"
    assert not [p for p in private_tmp.iterdir() if p.name.startswith("dse-office-")]  # PDF deleted


@needs_soffice
def test_presentation_one_page_per_slide(tmp_path: Path) -> None:
    odp = make_odp(tmp_path / "deck.odp", ["first slide", "second slide", "third slide"])
    pages = list(ingest.render(odp, dpi=30))
    assert [p.page for p in pages] == [1, 2, 3]
    assert ["first" in pages[0].text, "third" in pages[2].text] == [True, True]
    assert pages[0].metadata["format"] == "odp" and pages[0].image.width > pages[0].image.height


def test_office_extensions_are_discovered(tmp_path: Path) -> None:
    for name in ("a.docx", "b.PPTX", "c.xlsx", "d.odt", "e.doc", "f.ppt", "g.rtf", "h.epub"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in ingest.discover([tmp_path])] == [
        "a.docx", "b.PPTX", "c.xlsx", "d.odt", "e.doc", "f.ppt", "g.rtf"
    ]


def test_not_a_zip_container_fails_at_once(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pptx"
    bad.write_bytes(b"this is not a presentation" * 10)
    with pytest.raises(ingest.ConversionError, match=r"bad\.pptx.*not a valid PPTX"):
        ingest.render(bad)


def test_missing_libreoffice_is_a_per_file_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docx = make_docx(tmp_path / "a.docx", ["text"])
    monkeypatch.setattr(office, "find_soffice", lambda: None)
    with pytest.raises(ingest.MissingConverterError, match=r"a\.docx.*apt-get install.*libreoffice-writer"):
        ingest.render(docx)
    assert isinstance(ingest.MissingConverterError("a", "b"), ingest.IngestError)  # skips only the file


def test_timeout_kills_the_whole_process_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_tmp: Path
) -> None:
    docx = make_docx(tmp_path / "slow.docx", ["text"])
    child = tmp_path / "child.pid"
    bin_dir = fake_soffice(tmp_path / "bin", f"sleep 300 &\necho $! > {child}\nwait\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(ingest.ConversionError, match=r"slow\.docx.*longer than 0\.5 s.*--convert-timeout"):
        ingest.render(docx, limits=ingest.Limits(convert_timeout=0.5))
    pid = int(child.read_text())
    for _ in range(100):  # the killed child is reaped by init; wait until it is gone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{pid}/stat") as handle:
            if handle.read().split()[2] == "Z":
                break
        time.sleep(0.05)
    else:
        pytest.fail("LibreOffice's child process survived the timeout")
    assert not list(private_tmp.iterdir()) or all(
        not p.name.startswith("dse-office-") for p in private_tmp.iterdir()
    )


def test_exit_zero_without_a_pdf_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docx = make_docx(tmp_path / "odd.docx", ["text"])
    bin_dir = fake_soffice(tmp_path / "bin", "echo 'Error: source file could not be loaded'\nexit 0\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(ingest.ConversionError, match=r"odd\.docx.*could not be loaded"):
        ingest.render(docx)


def test_concurrent_conversions_use_separate_profiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "profiles.log"
    # $1 is -env:UserInstallation=...; each waits until all three run at once; writes no PDF
    script = f'echo "$1" >> {log}\nwhile [ "$(wc -l < {log})" -lt 3 ]; do sleep 0.05; done\n'
    bin_dir = fake_soffice(tmp_path / "bin", script)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    docs = [make_docx(tmp_path / f"d{i}.docx", ["x"]) for i in range(3)]
    errors: list[Exception] = []

    def convert(doc: Path) -> None:
        try:
            ingest.render(doc, limits=ingest.Limits(convert_timeout=60))
        except ingest.ConversionError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=convert, args=(doc,)) for doc in docs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    profiles = log.read_text().split()
    assert len(errors) == 3 and len(profiles) == 3
    assert all(p.startswith("-env:UserInstallation=file:///") for p in profiles)
    assert len(set(profiles)) == 3  # three at once: three profiles
