"""Every real-world file in ../shared/data renders its first page or fails with a clear error.

No crash (an exception other than IngestError), no hang, no silent skip: each file is given to
`ingest.render` by name, so an unsupported one must say so. To stay fast, only the first page
is rendered, at a low dpi, and the office documents are represented by the hard cases (a
malformed deck, a password-protected workbook, a DOCX misnamed .doc); `bench/real_files.py`
runs the full indexing of every file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import ingest
from ingest.office.convert import find_soffice
from ingest.office.render import OFFICE_EXTENSIONS

HARD_OFFICE_FILES = (
    "real-docs/mixed/unstructured/fake-power-point-malformed.pptx",
    "real-docs/mixed/unstructured/password_protected.xlsx",
    "real-docs/mixed/unstructured/eng_spa_mult.doc",
)
WEB_FILES = (".html", ".htm")  # rendered by the browser: covered by test_web.py and the bench


def _all_files(root: Path) -> list[Path]:
    """Every file under `root`, hidden ones included, sorted."""
    return sorted(Path(folder) / name for folder, _, names in os.walk(root) for name in names)


def _first_page(path: Path) -> ingest.Page | ingest.IngestError:
    """The file's first page, or the IngestError that names it."""
    try:
        pages = ingest.render(path, dpi=20, chunk_pages=1)
        try:
            return next(pages)
        finally:
            pages.close()
    except ingest.IngestError as error:
        return error


def _check(path: Path, outcome: ingest.Page | ingest.IngestError) -> None:
    if isinstance(outcome, ingest.IngestError):
        assert outcome.source == os.path.normpath(path) and outcome.reason, outcome
    else:
        assert outcome.page == 1 and outcome.source == os.path.normpath(path)
        assert outcome.image.width > 0 and outcome.image.height > 0


@pytest.mark.parametrize("folder", ["real-docs", "mmlongbench-dev"])
def test_every_file_first_page_or_clear_error(shared_data: Path, folder: str) -> None:
    files = [
        path for path in _all_files(shared_data / folder)
        if path.suffix.lower() not in OFFICE_EXTENSIONS + WEB_FILES
    ]
    assert files
    outcomes = {path: _first_page(path) for path in files}
    for path, outcome in outcomes.items():
        _check(path, outcome)
    rendered = [p for p, o in outcomes.items() if isinstance(o, ingest.Page)]
    if folder == "mmlongbench-dev":
        assert {p for p in files if p.suffix == ".pdf"} <= set(rendered)  # a clean benchmark set
    else:
        assert len(rendered) > 0.8 * len(outcomes)
        unsupported = [o for o in outcomes.values() if isinstance(o, ingest.UnsupportedSourceError)]
        assert all(o.source.endswith(".epub") for o in unsupported)


@pytest.mark.skipif(find_soffice() is None, reason="LibreOffice is not installed")
def test_hard_office_files(shared_data: Path) -> None:
    outcomes = {name: _first_page(shared_data / name) for name in HARD_OFFICE_FILES}
    for name, outcome in outcomes.items():
        _check(shared_data / name, outcome)
    malformed, protected, misnamed = (outcomes[name] for name in HARD_OFFICE_FILES)
    assert isinstance(protected, ingest.ConversionError) and "password" in protected.reason
    assert isinstance(misnamed, ingest.Page) and misnamed.metadata["format"] == "doc"
    # LibreOffice repairs this deck; either outcome is fine as long as it is clean
    assert isinstance(malformed, (ingest.Page, ingest.ConversionError))
