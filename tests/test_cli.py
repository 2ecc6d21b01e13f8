"""The `dse` command end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dse.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_index_search_info(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    idx = str(tmp_path / "idx")
    code, _, err = run(capsys, "index", str(corpus), "--index", idx, "--no-progress")
    assert code == 0 and "indexed 5 source(s), 11 page(s)" in err

    code, out, _ = run(capsys, "search", "--index", idx, "sourdough starter feeding", "-k", "2", "--json")
    hits = json.loads(out)
    assert code == 0 and len(hits) == 2
    assert set(hits[0]) >= {"source", "page", "score", "page_id"}
    assert (Path(hits[0]["source"]).name, hits[0]["page"]) == ("sourdough-baking.pdf", 1)

    code, out, _ = run(capsys, "search", "--index", idx, "peregrine falcon")
    assert code == 0 and "bird-field-guide.pdf  page 1" in out.splitlines()[0]

    queries = tmp_path / "q.txt"
    queries.write_text("torque wrench clamps\n\nfull year guidance\n")
    code, out, _ = run(capsys, "search", "--index", idx, "--queries", str(queries), "-k", "1")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["query"] for line in lines] == ["torque wrench clamps", "full year guidance"]
    assert [h["page"] for line in lines for h in line["hits"]] == [2, 3]

    code, out, _ = run(capsys, "info", "--index", idx, "--json")
    info = json.loads(out)
    assert code == 0 and info["pages"] == 11 and info["sources"] == 5
    assert info["encoder"]["name"] == "bm25" and "prompt_version" in info["encoder"]
    code, out, _ = run(capsys, "info", "--index", idx)
    assert "bm25" in out and "11" in out

    # appending the same folder again skips everything and still succeeds
    code, _, err = run(capsys, "index", str(corpus), "--index", idx, "--no-progress")
    assert code == 0 and "skipped 5 already indexed" in err


def test_failures_reported_and_exit_status(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (corpus / "bad.pdf").write_bytes(b"not a pdf")
    code, _, err = run(capsys, "index", str(corpus), "--index", str(tmp_path / "a"), "--no-progress")
    assert code == 0 and "1 failed" in err and "bad.pdf" in err
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.pdf").write_bytes(b"")
    code, _, err = run(capsys, "index", str(only_bad), "--index", str(tmp_path / "b"), "--no-progress")
    assert code == 1 and "x.pdf" in err


def test_user_errors_are_one_clear_line(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "search", "--index", str(tmp_path / "none"), "q")
    assert code == 2 and "not a dse index" in err
    code, _, err = run(capsys, "index", str(corpus), "--index", str(tmp_path / "i"), "--encoder", "nope")
    assert code == 2 and "unknown encoder 'nope'" in err
    bad_cfg = tmp_path / "c.yaml"
    bad_cfg.write_text("encoder: bm25\nfoo: 1\n")
    code, _, err = run(capsys, "index", str(corpus), "--index", str(tmp_path / "i"), "--config", str(bad_cfg))
    assert code == 2 and "c.yaml" in err and "foo" in err
    run(capsys, "index", str(corpus / "sourdough-baking.pdf"), "--index", str(tmp_path / "j"), "--no-progress")
    code, _, err = run(capsys, "index", str(corpus), "--index", str(tmp_path / "j"), "--encoder", "tiny-dse")
    assert code == 2 and "another encoder" in err
    code, _, err = run(capsys, "search", "--index", str(tmp_path / "j"))
    assert code == 2 and "QUERY or --queries" in err


def test_tiny_visual_encoder_via_config(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    idx = str(tmp_path / "idx")
    code, _, err = run(capsys, "index", str(corpus / "acme-q3-2025-report.pdf"), "--index", idx,
                       "--config", str(ROOT / "configs" / "tiny-colqwen2.yaml"), "--no-progress")
    assert code == 0, err
    code, out, _ = run(capsys, "search", "--index", idx, "revenue", "-k", "3", "--json")
    assert code == 0 and sorted(h["page"] for h in json.loads(out)) == [1, 2, 3]


def test_console_script_runs(tmp_path: Path) -> None:
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "dse", "encoders"], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "dse-qwen2" in proc.stdout and "colqwen2" in proc.stdout and "bm25" in proc.stdout
