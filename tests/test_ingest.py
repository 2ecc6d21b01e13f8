"""Tests of `ingest`: PDFs (text layer, chunked streaming, encryption), images, folders, errors."""

from __future__ import annotations

import hashlib
import logging
import shutil
import struct
from pathlib import Path

import pytest
from PIL import Image, features

import ingest
from ingest.pdf import render as ingest_pdf

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL_DOCS = DATA / "real-docs"
PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


# --------------------------------------------------------------------------- PDF writer


def _rc4(key: bytes, data: bytes) -> bytes:
    """RC4, for the PDF standard security handler (revision 2, 40-bit)."""
    box = list(range(256))
    j = 0
    for i in range(256):
        j = (j + box[i] + key[i % len(key)]) % 256
        box[i], box[j] = box[j], box[i]
    out, i, j = bytearray(), 0, 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + box[i]) % 256
        box[i], box[j] = box[j], box[i]
        out.append(byte ^ box[(box[i] + box[j]) % 256])
    return bytes(out)


def make_pdf(
    texts: list[str | None], *, size: tuple[int, int] = (200, 200), user_password: str | None = None
) -> bytes:
    """Write a PDF by hand: one page per entry, Helvetica text or an empty page for None."""
    n = len(texts)
    font = 3 + 2 * n
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: (
            "<< /Type /Pages /Count %d /Kids [%s] >>"
            % (n, " ".join(f"{3 + 2 * i} 0 R" for i in range(n)))
        ).encode(),
        font: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    streams: dict[int, bytes] = {}
    for i, text in enumerate(texts):
        page, content = 3 + 2 * i, 4 + 2 * i
        objects[page] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {size[0]} {size[1]}] "
            f"/Resources << /Font << /F1 {font} 0 R >> >> /Contents {content} 0 R >>"
        ).encode()
        streams[content] = (
            f"BT /F1 12 Tf 10 {size[1] // 2} Td ({text}) Tj ET".encode() if text else b""
        )
    file_id = hashlib.md5(repr(texts).encode()).digest()
    key = None
    encrypt = font + 1
    if user_password is not None:
        permissions = -4
        owner = _rc4(
            hashlib.md5((b"owner" + PAD)[:32]).digest()[:5], (user_password.encode() + PAD)[:32]
        )
        key = hashlib.md5(
            (user_password.encode() + PAD)[:32] + owner + struct.pack("<i", permissions) + file_id
        ).digest()[:5]
        objects[encrypt] = (
            f"<< /Filter /Standard /V 1 /R 2 /O <{owner.hex()}> "
            f"/U <{_rc4(key, PAD).hex()}> /P {permissions} >>"
        ).encode()
    for number, data in streams.items():
        if key is not None:
            data = _rc4(
                hashlib.md5(key + number.to_bytes(3, "little") + b"\0\0").digest()[:10], data
            )
        objects[number] = b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    xref = len(out)
    size_ = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size_
    for number in range(1, size_):
        out += b"%010d 00000 n \n" % offsets[number]
    trailer = f"<< /Size {size_} /Root 1 0 R /ID [<{file_id.hex()}> <{file_id.hex()}>]"
    if key is not None:
        trailer += f" /Encrypt {encrypt} 0 R"
    out += f"trailer\n{trailer} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def save_image(path: Path, colour: str = "red", size: tuple[int, int] = (40, 30), **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, **kwargs)
    return path


# --------------------------------------------------------------------------- PDFs


def test_pdf_pages_text_ids_and_metadata(tmp_path: Path) -> None:
    path = write(tmp_path / "doc.pdf", make_pdf(["alpha page", None, "gamma page"]))
    pages = list(ingest.render(path, dpi=72))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert ingest.file_digest(path) == digest
    assert [p.page for p in pages] == [1, 2, 3]
    assert [p.page_id for p in pages] == [ingest.make_page_id(digest, n) for n in (1, 2, 3)]
    assert len({p.page_id for p in pages}) == 3
    assert "alpha page" in pages[0].text and pages[1].text == "" and "gamma page" in pages[2].text
    for page in pages:
        assert page.source == str(path) and page.source_digest == digest
        assert page.image.mode == "RGB" and page.image.size == (200, 200)
        assert page.metadata["kind"] == "pdf" and page.metadata["num_pages"] == 3
        assert page.metadata["dpi"] == 72 and page.metadata["file_name"] == "doc.pdf"
        assert (page.metadata["width"], page.metadata["height"]) == page.image.size


def test_ids_stable_across_runs_and_paths(tmp_path: Path) -> None:
    data = make_pdf(["one", "two"])
    first = write(tmp_path / "a" / "x.pdf", data)
    second = write(tmp_path / "b" / "renamed.pdf", data)
    ids = [p.page_id for p in ingest.render(first, dpi=36)]
    assert ids == [p.page_id for p in ingest.render(first, dpi=36)]
    assert ids == [p.page_id for p in ingest.render(second, dpi=72)]
    other = write(tmp_path / "c.pdf", make_pdf(["one", "three"]))
    assert not set(ids) & {p.page_id for p in ingest.render(other, dpi=36)}


def test_source_is_normalised_not_absolutised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "sub" / "d.pdf", make_pdf(["x"]))
    monkeypatch.chdir(tmp_path)
    page = next(ingest.render("./sub//../sub/d.pdf", dpi=36))
    assert page.source == "sub/d.pdf"


def test_precomputed_digest_is_used(tmp_path: Path) -> None:
    path = write(tmp_path / "d.pdf", make_pdf(["x"]))
    page = next(ingest.render(path, dpi=36, digest="ab" * 32))
    assert page.source_digest == "ab" * 32 and page.page_id == ingest.make_page_id("ab" * 32, 1)


def test_dpi_changes_image_size(tmp_path: Path) -> None:
    path = write(tmp_path / "d.pdf", make_pdf(["x"], size=(200, 100)))
    assert next(ingest.render(path, dpi=72)).image.size == (200, 100)
    assert next(ingest.render(path, dpi=144)).image.size == (400, 200)
    assert ingest.DEFAULT_DPI == 144
    with pytest.raises(ValueError, match="dpi"):
        ingest.render(path, dpi=0)


def test_text_falls_back_to_single_pages_when_split_misaligns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "d.pdf", make_pdf(["first", None, "third"]))
    real = ingest_pdf._pdftotext

    def misaligned(file, first, last, password):
        text = real(file, first, last, password)
        return text.replace("\f", "", 1) if first != last else text

    monkeypatch.setattr(ingest_pdf, "_pdftotext", misaligned)
    texts = [p.text.strip() for p in ingest.render(path, dpi=36)]
    assert texts == ["first", "", "third"]


def test_oversized_page_is_rendered_at_lower_dpi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_pdf, "MAX_PAGE_PIXELS", 100 * 100)
    path = write(tmp_path / "d.pdf", make_pdf(["small", "big"], size=(50, 50)))
    pages = list(ingest.render(path, dpi=144))
    assert pages[0].image.size == (100, 100) and pages[0].metadata["dpi"] == 144
    assert ingest_pdf.page_dpi((720.0, 720.0), 144) == 10
    assert ingest_pdf.page_dpi(None, 144) == 144


def test_encrypted_pdf(tmp_path: Path) -> None:
    path = write(tmp_path / "locked.pdf", make_pdf(["secret text"], user_password="sesame"))
    with pytest.raises(ingest.EncryptedSourceError, match="locked.pdf.*password"):
        ingest.render(path)
    with pytest.raises(ingest.EncryptedSourceError, match="wrong"):
        ingest.render(path, password="nope")
    page = next(ingest.render(path, dpi=36, password="sesame"))
    assert "secret text" in page.text


def test_encrypted_real_sample() -> None:
    path = (
        REAL_DOCS
        / "pdf"
        / "py-pdf-sample-files"
        / "005-libreoffice-writer-password__libreoffice-writer-password.pdf"
    )
    if not path.exists():
        pytest.skip(f"real encrypted sample absent: {path}")
    with pytest.raises(ingest.EncryptedSourceError, match="005-libreoffice"):
        ingest.render(path)
    assert next(ingest.render(path, dpi=36, password="openpassword")).text.strip()


@pytest.mark.parametrize(
    ("name", "data", "match"),
    [
        ("corrupt.pdf", b"%PDF-1.4\nthis is not really a pdf\n", "not a readable PDF"),
        ("text.pdf", b"hello, I am plain text\n" * 10, "not a readable PDF"),
        ("empty.pdf", b"", "empty file"),
        ("empty.png", b"", "empty file"),
        ("fake.png", b"not an image at all", "not a readable image"),
        ("truncated.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "image"),
        ("notes.txt", b"some notes", "unsupported"),
        ("README", b"some notes", "without an extension"),
    ],
)
def test_unreadable_files_raise_naming_the_file(
    tmp_path: Path, name: str, data: bytes, match: str
) -> None:
    path = write(tmp_path / name, data)
    with pytest.raises(ingest.IngestError, match=match) as info:
        ingest.render(path)  # raised eagerly, before any page is produced
    assert name in str(info.value) and info.value.source == str(path)


def test_unsupported_and_missing(tmp_path: Path) -> None:
    with pytest.raises(ingest.UnsupportedSourceError, match=r"'\.epub'"):
        ingest.render(write(tmp_path / "a.epub", b"PK"))
    with pytest.raises(ingest.IngestError, match="nowhere.pdf.*no such file"):
        ingest.render(tmp_path / "nowhere.pdf")
    with pytest.raises(ingest.IngestError, match="nowhere"):
        ingest.discover([tmp_path / "nowhere"])
    with pytest.raises(ingest.IngestError, match="gone.pdf"):
        ingest.file_digest(tmp_path / "gone.pdf")


def test_missing_poppler_is_not_a_per_file_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "d.pdf", make_pdf(["x"]))
    ingest_pdf._require_tool.cache_clear()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    try:
        with pytest.raises(ingest.MissingToolError, match="poppler-utils"):
            list(ingest.render(tmp_path, on_error=lambda error: None))
    finally:
        ingest_pdf._require_tool.cache_clear()


# --------------------------------------------------------------------------- images

IMAGE_FORMATS = [
    ("png", {}),
    ("jpg", {}),
    ("jpeg", {}),
    ("tiff", {}),
    ("tif", {}),
    ("bmp", {}),
    ("gif", {}),
]
if features.check("webp"):
    IMAGE_FORMATS.append(("webp", {"lossless": True}))


@pytest.mark.parametrize(("extension", "options"), IMAGE_FORMATS)
def test_image_formats(tmp_path: Path, extension: str, options: dict) -> None:
    path = save_image(tmp_path / f"pic.{extension.upper()}", "blue", (40, 30), **options)
    (page,) = list(ingest.render(path, dpi=300))
    assert (
        page.page == 1
        and page.text == ""
        and page.image.mode == "RGB"
        and page.image.size == (40, 30)
    )
    assert page.metadata["kind"] == "image" and page.metadata["num_pages"] == 1
    assert page.page_id == ingest.make_page_id(ingest.file_digest(path), 1)
    red, green, blue = page.image.getpixel((20, 15))
    assert blue > 200 and red < 60 and green < 60


def test_gif_first_frame_and_tiff_frames(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (20, 20), colour) for colour in ("red", "lime", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    (page,) = list(ingest.render(tmp_path / "anim.gif"))
    assert page.image.getpixel((5, 5))[0] > 200 and page.image.getpixel((5, 5))[2] < 60
    frames[0].save(tmp_path / "scan.tiff", save_all=True, append_images=frames[1:])
    pages = list(ingest.render(tmp_path / "scan.tiff"))
    assert [p.page for p in pages] == [1, 2, 3] and pages[2].image.getpixel((5, 5))[2] > 200
    assert all(p.metadata["num_pages"] == 3 for p in pages)


def test_transparency_becomes_white(tmp_path: Path) -> None:
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    page = next(ingest.render(tmp_path / "clear.png"))
    assert page.image.getpixel((5, 5)) == (255, 255, 255)


def test_sixteen_bit_image_is_scaled(tmp_path: Path) -> None:
    image = Image.new("I;16", (4, 1))
    image.putdata([0, 1000, 30000, 65535])
    image.save(tmp_path / "deep.png")
    page = next(ingest.render(tmp_path / "deep.png"))
    assert page.image.getpixel((0, 0)) == (0, 0, 0) and page.image.getpixel((3, 0)) == (
        255,
        255,
        255,
    )


def test_decompression_bomb_guard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_image(tmp_path / "huge.png", "white", (200, 200))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40,000 px > 2 * 1000: a bomb
    with pytest.raises(ingest.IngestError, match="huge.png.*too large"):
        ingest.render(path)


# --------------------------------------------------------------------------- folders


def _tree(root: Path) -> None:
    write(root / "b.pdf", make_pdf(["bee one", "bee two"]))
    save_image(root / "a.png")
    write(root / "sub" / "broken.pdf", b"%PDF-1.4 garbage")
    save_image(root / "sub" / "deeper" / "z.JPG")
    write(root / "sub" / "empty.png", b"")
    save_image(root / ".hidden" / "secret.png")
    save_image(root / ".dot.png")
    write(root / "notes.txt", b"not a page")


def test_discover_is_recursive_sorted_and_skips_hidden(tmp_path: Path) -> None:
    _tree(tmp_path / "docs")
    found = ingest.discover([tmp_path / "docs"])
    relative = [p.relative_to(tmp_path / "docs").as_posix() for p in found]
    assert relative == ["a.png", "b.pdf", "sub/broken.pdf", "sub/deeper/z.JPG", "sub/empty.png"]
    again = ingest.discover(
        [tmp_path / "docs" / "a.png", tmp_path / "docs", tmp_path / "docs" / "notes.txt"]
    )
    assert again[0].name == "a.png" and again.count(again[0]) == 1 and again[-1].name == "notes.txt"
    assert ".pdf" in ingest.SUPPORTED_EXTENSIONS and ".png" in ingest.SUPPORTED_EXTENSIONS


def test_folder_continues_past_bad_files(tmp_path: Path) -> None:
    _tree(tmp_path / "docs")
    errors: list[ingest.IngestError] = []
    pages = list(ingest.render(tmp_path / "docs", dpi=36, on_error=errors.append))
    assert [(Path(p.source).name, p.page) for p in pages] == [
        ("a.png", 1),
        ("b.pdf", 1),
        ("b.pdf", 2),
        ("z.JPG", 1),
    ]
    assert sorted(Path(e.source).name for e in errors) == ["broken.pdf", "empty.png"]
    assert all(isinstance(e, ingest.IngestError) for e in errors)
    with pytest.raises(ValueError, match="digest"):
        ingest.render(tmp_path / "docs", digest="00")


def test_folder_default_handler_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _tree(tmp_path / "docs")
    with caplog.at_level(logging.WARNING, logger="ingest"):
        pages = list(ingest.render(tmp_path / "docs", dpi=36))
    assert len(pages) == 4
    assert "broken.pdf" in caplog.text and "empty.png" in caplog.text


# --------------------------------------------------------------------------- real documents


REAL_SAMPLES = [
    "pdf/py-pdf-sample-files/004-pdflatex-4-pages__pdflatex-4-pages.pdf",
    "pdf/py-pdf-sample-files/015-arabic__habibi-rotated.pdf",
    "pdf/py-pdf-sample-files/023-cmyk-image__cmyk-image.pdf",
    "mixed/unstructured/DA-619p.pdf",
    "mixed/unstructured/layout-parser-paper-fast.pdf",
    "mixed/unstructured/english-and-korean.png",
    "mixed/unstructured/DA-1p.jpg",
]


@pytest.mark.parametrize("relative", REAL_SAMPLES)
def test_real_documents_first_pages(relative: str) -> None:
    path = REAL_DOCS / relative
    if not path.exists():
        pytest.skip(f"shared real document absent: {path}")
    pages = ingest.render(path, dpi=72, chunk_pages=2)
    first = next(pages)
    assert first.page == 1 and first.image.mode == "RGB" and min(first.image.size) > 100
    assert first.metadata["num_pages"] >= 1 and first.page_id.endswith("-p00001")
    if first.metadata["kind"] == "pdf" and first.metadata["num_pages"] > 1:
        assert next(pages).page == 2


def test_real_broken_pdfs_fail_cleanly() -> None:
    folder = REAL_DOCS / "mixed" / "unstructured"
    if not folder.exists():
        pytest.skip(f"shared real documents absent: {folder}")
    for name in (
        "failure-after-repair.pdf",
        "invalid-pdf-structure-pdfminer-one-page.pdf",
        "copy-protected.pdf",
    ):
        path = folder / name
        if not path.exists():
            continue
        try:
            next(ingest.render(path, dpi=36, chunk_pages=1))
        except ingest.IngestError as error:
            assert name in str(error)
