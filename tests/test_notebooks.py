"""The notebooks run top to bottom, offline, on the tiny models (executed with nbclient in a temp dir)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT

NOTEBOOKS = ROOT / "notebooks"
CELL_TIMEOUT = 900  # seconds per cell: a first run builds the tiny checkpoints


def _run(name: str, workdir: Path) -> list[str]:
    """Execute a notebook in `workdir`; returns the text of its outputs (errors fail the test)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", "") + str(out.get("data", {}).get("text/plain", "")))
    return texts


def test_quickstart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus"  # two of the example files: the same cells, fewer pages to encode
    corpus.mkdir()
    for name in ("acme-q3-2025-report.pdf", "harbour-line-timetable.png"):
        shutil.copy(EXAMPLES / name, corpus / name)
    monkeypatch.setenv("DSE_CORPUS", str(corpus))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    text = "\n".join(_run("quickstart.ipynb", tmp_path))
    assert "4 pages from 2 files" in text
    assert "--- hybrid" in text and "acme-q3-2025-report.pdf" in text
    assert "patches" in text  # the similarity map cell ran
    assert (tmp_path / "quickstart-index" / "manifest.json").is_file()


def test_vidore_eval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("datasets")
    monkeypatch.setenv("DSE_CORPUS", str(EXAMPLES))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    text = "\n".join(_run("vidore_eval.ipynb", tmp_path))
    assert "tiny_reports_qa 6 queries" in text and "tiny_guides_qa 5 queries" in text
    assert "| dataset | tiny-dse | bm25 |" in text
    assert (tmp_path / "vidore-offline" / "tiny_guides_qa").is_dir()
