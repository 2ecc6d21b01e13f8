"""`dse compact` and `Retriever.compact` end to end: the report, `dse info`'s reclaimable rows, a
Retriever open beside a `dse compact` process, nothing to reclaim, and the Qdrant backend (a no-op
that says Qdrant reclaims space itself)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dse.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _search(idx: str, capsys: pytest.CaptureFixture[str], query: str = "sourdough starter feeding") -> list:
    code, out, _ = run(capsys, "search", "--index", idx, query, "-k", "5", "--json")
    assert code == 0
    return [(h["page_id"], round(h["score"], 4)) for h in json.loads(out)]


def test_compact_cli_report_info_and_nothing_to_do(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    idx = str(tmp_path / "idx")
    assert run(capsys, "index", str(corpus), "--index", idx, "--no-progress")[0] == 0
    code, out, _ = run(capsys, "compact", "--index", idx)
    assert code == 0 and "no deleted pages to reclaim" in out
    code, _, err = run(capsys, "delete", "--index", idx, "--source", str(corpus / "sourdough-baking.pdf"))
    assert code == 0
    code, out, _ = run(capsys, "info", "--index", idx)
    assert "reclaim    " in out and "run `dse compact`" in out
    code, out, _ = run(capsys, "info", "--index", idx, "--json")
    info = json.loads(out)
    assert info["reclaimable_rows"] == info["deleted_pages"] > 0 and info["reclaimable_bytes"] > 0
    queries = ["peregrine falcon", "sourdough starter feeding", "quarterly revenue"]
    before = [_search(idx, capsys, q) for q in queries]
    code, out, err = run(capsys, "compact", "--index", idx, "--json")
    report = json.loads(out)
    assert code == 0 and report["compacted"] and report["rows_removed"] == info["deleted_pages"]
    assert report["pages"] == info["pages"] and report["bytes_after"] < report["bytes_before"]
    assert "compact: committed" in err  # progress on stderr
    code, out, _ = run(capsys, "info", "--index", idx, "--json")
    assert json.loads(out)["reclaimable_rows"] == 0 and json.loads(out)["deleted_pages"] == 0
    after = [_search(idx, capsys, q) for q in queries]
    live = tmp_path / "live"  # a fresh index of the live sources: BM25 statistics without the deleted pages
    shutil.copytree(corpus, live)
    (live / "sourdough-baking.pdf").unlink()
    assert run(capsys, "index", str(live), "--index", str(tmp_path / "fresh"), "--no-progress")[0] == 0
    assert after == [_search(str(tmp_path / "fresh"), capsys, q) for q in queries] != before
    code, out, _ = run(capsys, "compact", "--index", idx, "--quiet")
    assert code == 0 and "no deleted pages to reclaim" in out


def test_a_retriever_open_beside_a_compact_process(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dse import Retriever

    idx = str(tmp_path / "idx")
    assert run(capsys, "index", str(corpus), "--index", idx, "--encoder", "tiny-dse", "--no-progress")[0] == 0
    retriever = Retriever.open(idx)  # as `dse serve` holds one
    retriever.delete(sources=[str(corpus / "bird-field-guide.pdf")])
    before = [(h.page_id, round(h.score, 4)) for h in retriever.search("falcon", k=6)]
    proc = subprocess.run([sys.executable, "-m", "dse.cli.main", "compact", "--index", idx, "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["compacted"]
    assert [(h.page_id, round(h.score, 4)) for h in retriever.search("falcon", k=6)] == before
    assert retriever.index.view().generation == 1
    text = [(h.page_id, h.rank) for h in retriever.search("falcon", k=6, mode="hybrid")]
    assert text and retriever.compact().compacted is False  # Retriever.compact: nothing left


def test_qdrant_reclaims_space_itself(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("qdrant_client")
    idx = str(tmp_path / "idx")
    code, _, err = run(capsys, "index", str(corpus), "--index", idx, "--backend", "qdrant", "--qdrant",
                       str(tmp_path / "qdrant"), "--no-progress")
    assert code == 0, err
    assert run(capsys, "delete", "--index", idx, "--source", str(corpus / "sourdough-baking.pdf"))[0] == 0
    code, out, _ = run(capsys, "compact", "--index", idx)
    assert code == 0 and "reclaims the space of deleted pages itself" in out and "nothing for dse to compact" in out
    code, out, _ = run(capsys, "compact", "--index", idx, "--json")
    assert json.loads(out)["compacted"] is False
    code, out, _ = run(capsys, "info", "--index", idx)
    assert code == 0 and "reclaim    this backend keeps the vectors in its own store" in out
    code, out, _ = run(capsys, "search", "--index", idx, "peregrine falcon", "-k", "2", "--json")
    assert code == 0 and json.loads(out)
