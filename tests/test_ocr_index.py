"""OCR made visible: the setting an index's text was made with (manifest, `dse info`, `GET /v1/index`)
and what a job's OCR did (`GET /v1/jobs/{id}`), over real indexes, a real server and real tesseract.

The tests that OCR pages skip where tesseract is absent; "not installed" runs a server on a real
PATH holding every program but tesseract.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import dse
from dse.cli.main import main
from dse.storage.page_index import PageIndex
from dse.testing.server import serve_index
from ingest.ocr import MIN_TEXT_CHARS, OcrOptions
from tests.test_ingest import make_pdf
from tests.test_ocr import _scan

TOKEN = "ocr-test-token-0123456789"
TEXTS = ["Minutes of the annual meeting of shareholders", "Harbour ferry timetable for the winter season",
         "Sourdough starter feeding schedule and notes", "Solar panel inverter installation guide"]
needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None or shutil.which("pdftoppm") is None,
                                     reason="tesseract-ocr and poppler-utils are needed (scripts/install.sh)")


def _ingest(directory: Path) -> Any:
    """The manifest file's `store.ingest` record (None: nothing recorded)."""
    return json.loads((directory / "manifest.json").read_text(encoding="utf-8"))["store"].get("ingest")


def _docs(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"doc{i}.pdf" for i in range(len(TEXTS))]
    for path, text in zip(paths, TEXTS):
        path.write_bytes(make_pdf([text], size=(612, 792)))
    return paths


def path_without_tesseract(folder: Path) -> str:
    """A PATH of one folder linking every program on this PATH but tesseract (a machine without it)."""
    folder.mkdir(parents=True, exist_ok=True)
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target, link = os.path.join(directory, name), folder / name
            if name.startswith("tesseract") or link.exists() or not os.access(target, os.X_OK):
                continue
            link.symlink_to(target)
    return str(folder)


def test_the_manifest_records_the_ocr_setting_and_marks_a_change(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    docs = _docs(tmp_path / "docs")
    directory = tmp_path / "idx"
    never = {"mode": "never", "language": "eng", "dpi": 300, "min_text_chars": MIN_TEXT_CHARS}
    with dse.Retriever.create(directory, dse.load_encoder("bm25")) as retriever:
        assert _ingest(directory) is None  # nothing added, nothing recorded
        retriever.add([docs[0]], workers=0, ocr="never")
        assert _ingest(directory) == {"ocr": never, "ocr_mixed": False}
        retriever.add([docs[0]], workers=0, ocr="always")  # skipped (same bytes): no page added, nothing recorded
        assert _ingest(directory) == {"ocr": never, "ocr_mixed": False}
        stale = PageIndex.open(directory)  # another writer, opened before the next record

        retriever.add([docs[1]], workers=0, ocr=OcrOptions("auto", dpi=250))
        auto = {"mode": "auto", "language": "eng", "dpi": 250, "min_text_chars": MIN_TEXT_CHARS,
                "tesseract": shutil.which("tesseract") is not None}
        mixed = {"ocr": auto, "ocr_mixed": True, "ocr_earlier": [never]}
        assert _ingest(directory) == mixed
        retriever.add([docs[2]], workers=0, ocr=OcrOptions("auto", dpi=250))  # the same setting again
        assert _ingest(directory) == mixed
        assert stale.delete(sources=[str(docs[2])]).pages == 1  # its counts are written, the record is kept
        assert _ingest(directory) == mixed
        stale.close()
        summary = retriever.info()["ocr"]
        assert summary == {"setting": auto, "mixed": True, "earlier": [never], "unrecorded": False, "pages": 0}

    assert main(["info", "--index", str(directory), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ocr"] == summary
    assert main(["info", "--index", str(directory)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("ocr "))
    assert "auto (eng, 250 dpi, text layers under 20 letters and digits" in line
    assert "0 live page(s) with text from OCR" in line and "mixed: earlier adds used never" in line

    data = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))  # as an older dse left it
    data["store"].pop("ingest")
    (directory / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    assert main(["info", "--index", str(directory)]) == 0
    assert "setting not recorded" in capsys.readouterr().out
    with dse.Retriever.open(directory) as retriever:
        retriever.add([docs[3]], workers=0, ocr="never")
    assert _ingest(directory) == {"ocr": never, "ocr_mixed": False, "ocr_unrecorded": True}


@needs_tesseract
def test_info_counts_the_live_pages_ocr_read(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    docs = tmp_path / "docs"
    _docs(docs)
    scans = [_scan(docs / "scan.pdf"), _scan(docs / "notes.png", ("Peregrine falcon nesting notes",))]
    directory = tmp_path / "idx"
    with dse.Retriever.create(directory, dse.load_encoder("bm25")) as retriever:
        report = retriever.add(docs, workers=0)
        assert report.ocr_pages == 2 and not report.warnings
        ocr = retriever.info()["ocr"]
        assert ocr["pages"] == 2 and ocr["setting"]["mode"] == "auto" and ocr["setting"]["tesseract"] is True
        assert retriever.index.metadata_count("text_source", "ocr") == 2
        retriever.delete(sources=[scans[0]])
        assert retriever.info()["ocr"]["pages"] == 1  # live pages only
    assert main(["info", "--index", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "1 live page(s) with text from OCR" in out and "mixed" not in out


def _openapi(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/openapi.json", timeout=30) as resp:
        return json.loads(resp.read())


@needs_tesseract
def test_jobs_and_index_report_ocr_over_http(tmp_path: Path) -> None:
    docs = _docs(tmp_path / "docs")
    (tmp_path / "upload").mkdir()
    scan = _scan(tmp_path / "upload" / "scan.png")
    with dse.Retriever.create(tmp_path / "idx", dse.load_encoder("bm25")) as retriever:
        retriever.add(docs[:2], workers=0)
    with serve_index(tmp_path / "idx", token=TOKEN) as url:
        client = dse.Client(url, token=TOKEN)
        job = client.add([scan])
        assert job["state"] == "done" and job["ocr_pages"] == 1 and job["warnings"] == []
        assert client.job(job["id"]) == job
        info = client.info()
        assert info["ocr"]["pages"] == 1 and info["ocr"]["setting"]["mode"] == "auto"
        assert info["manifest"]["ocr"] == info["ocr"]
        hit = client.search("zebrafish hippopotamus", k=1)[0]
        assert Path(hit.source).name == "scan.png" and hit.metadata["text_source"] == "ocr"
        schema = _openapi(url)["components"]["schemas"]["JobOut"]["properties"]
        assert schema["ocr_pages"]["type"] == "integer" and schema["warnings"]["type"] == "array"


@needs_tesseract
def test_a_job_without_tesseract_warns_that_pages_got_no_text(tmp_path: Path) -> None:
    (tmp_path / "upload").mkdir()
    scan = _scan(tmp_path / "upload" / "scan.png", ("Kestrel hovering over the meadow",))
    with dse.Retriever.create(tmp_path / "idx", dse.load_encoder("bm25")) as retriever:
        retriever.add(_docs(tmp_path / "docs")[:1], workers=0)
    env = {"PATH": path_without_tesseract(tmp_path / "bin")}
    with serve_index(tmp_path / "idx", token=TOKEN, env=env) as url:
        client = dse.Client(url, token=TOKEN)
        job = client.add([scan])
        assert job["state"] == "done" and [Path(a).name for a in job["added"]] == ["scan.png"] and job["ocr_pages"] == 0
        [warning] = job["warnings"]
        assert warning["source"] == "tesseract" and "tesseract is not installed" in warning["error"]
        assert "1 page(s) without a usable text layer got no text" in warning["error"]
        ocr = client.info()["ocr"]
        assert ocr["pages"] == 0 and ocr["setting"]["tesseract"] is False and ocr["mixed"] is True
