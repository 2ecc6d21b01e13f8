"""`dse eval` indexes file corpora with OCR (`ocr=`, `dse eval --ocr`), with the real tesseract."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.test_ingest import make_pdf
from tests.test_ocr import _scan

pytestmark = pytest.mark.skipif(shutil.which("tesseract") is None or shutil.which("pdftoppm") is None,
                                reason="tesseract-ocr and poppler-utils are needed (scripts/install.sh)")


def _local_set(root):
    (root / "pdfs").mkdir(parents=True)
    _scan(root / "pdfs" / "scan.pdf")
    (root / "pdfs" / "text.pdf").write_bytes(make_pdf(["Minutes of the annual meeting of shareholders",
                                                       "Dividend policy and payout ratio"]))
    questions = [
        {"query_id": "scan", "question": "zebrafish inventory", "doc_id": "scan.pdf", "evidence_pages": [1]},
        {"query_id": "text", "question": "dividend payout", "doc_id": "text.pdf", "evidence_pages": [2]},
    ]
    (root / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    return root


def test_eval_reads_scans_with_ocr_and_records_it(tmp_path):
    from dse.evaluate import evaluate, load_local

    dataset = load_local(_local_set(tmp_path / "set"))
    result = evaluate(dataset, "bm25", scopes=("corpus",), ocr="auto")
    scores = result.scores[0]
    assert scores.per_query["scan"]["ndcg@10"] == 1.0 and scores.per_query["text"]["ndcg@10"] == 1.0
    assert scores.info["ocr_pages"] == 1 and scores.info["ocr_seconds"] > 0 and scores.info["ocr_warnings"] == []
    assert result.config["ocr"] == "auto"
    never = evaluate(dataset, "bm25", scopes=("corpus",), ocr="never").scores[0]
    assert never.info["ocr_pages"] == 0 and never.per_query["text"]["ndcg@10"] == 1.0


def test_cli_eval_ocr_flag(tmp_path, capsys):
    from dse.cli.main import main

    root = _local_set(tmp_path / "set")
    out = tmp_path / "never.json"
    assert main(["eval", str(root), "--ocr", "never", "--scope", "corpus", "-o", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["config"]["ocr"]["mode"] == "never" and saved["results"][0]["info"]["ocr_pages"] == 0
