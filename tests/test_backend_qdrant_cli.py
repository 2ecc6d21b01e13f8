"""`dse index --backend qdrant` end to end (qdrant-client's local mode), and a re-run after kill -9
(local mode and qdrant-edge-py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dse.cli.main import main

pytest.importorskip("qdrant_client")
ROOT = Path(__file__).resolve().parents[1]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_index_search_info_delete(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    idx, data = str(tmp_path / "idx"), str(tmp_path / "qdrant")
    code, _, err = run(capsys, "index", str(corpus), "--index", idx, "--backend", "qdrant", "--qdrant", data,
                       "--collection", "docs", "--no-progress")
    assert code == 0 and "indexed 5 source(s), 11 page(s)" in err, err
    code, out, _ = run(capsys, "search", "--index", idx, "sourdough starter feeding", "-k", "2", "--json")
    hits = json.loads(out)
    assert code == 0 and (Path(hits[0]["source"]).name, hits[0]["page"]) == ("sourdough-baking.pdf", 1)
    code, out, _ = run(capsys, "info", "--index", idx, "--json")
    info = json.loads(out)
    assert (info["backend"], info["pages"], info["sources"]) == ("qdrant", 11, 5)
    assert info["store"]["qdrant"]["collection"] == "docs"
    code, out, _ = run(capsys, "info", "--index", idx)
    assert "backend    qdrant (collection 'docs'" in out
    code, _, err = run(capsys, "index", str(corpus), "--index", idx, "--no-progress")
    assert code == 0 and "skipped 5 already indexed" in err
    code, _, err = run(capsys, "delete", "--index", idx, "--source", str(corpus / "sourdough-baking.pdf"))
    assert code == 0 and "deleted" in err and "page(s) left" in err
    code, out, _ = run(capsys, "search", "--index", idx, "sourdough starter feeding", "-k", "3", "--json")
    assert all(Path(h["source"]).name != "sourdough-baking.pdf" for h in json.loads(out))


def test_hybrid_with_a_tiny_single_vector_encoder(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    idx = str(tmp_path / "idx")
    code, _, err = run(capsys, "index", str(corpus), "--index", idx, "--encoder", "tiny-dse", "--backend", "qdrant",
                       "--qdrant", str(tmp_path / "q"), "--no-progress")
    assert code == 0, err
    for mode in ("visual", "text", "hybrid"):
        code, out, err = run(capsys, "search", "--index", idx, "peregrine falcon", "-k", "3", "--mode", mode, "--json")
        assert code == 0 and len(json.loads(out)) >= 1, (mode, err)
    code, out, _ = run(capsys, "search", "--index", idx, "peregrine falcon", "-k", "1", "--mode", "text", "--json")
    assert Path(json.loads(out)[0]["source"]).name == "bird-field-guide.pdf"


@pytest.mark.parametrize("mode", ["local", "edge"])
def test_rerun_after_kill_9(tmp_path: Path, corpus: Path, mode: str) -> None:
    idx, data = tmp_path / "idx", str(tmp_path / "q")
    if mode == "edge":
        pytest.importorskip("qdrant_edge")
        data = f"edge:{data}"
    cmd = [sys.executable, "-m", "dse.cli.main", "index", str(corpus), "--index", str(idx), "--backend", "qdrant",
           "--qdrant", data, "--commit-pages", "1", "--workers", "0", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:  # kill once the first commit is recorded
        try:
            if json.loads((idx / "manifest.json").read_text())["store"]["qdrant"]["rows"] > 0:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, after its first commit
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    from dse.backends import open_backend

    with open_backend(idx) as index:
        assert (len(index), index.counts().sources) == (11, 5)
        names = {Path(s["path"]).name for s in index.sources()}
        assert "sourdough-baking.pdf" in names
        hits = index.search_text(["peregrine falcon"], 1)[0]
        assert Path(hits[0].record.source).name == "bird-field-guide.pdf"


@pytest.mark.parametrize("encoder", ["bm25", "tiny-dse"])
def test_export_an_embedded_index_to_qdrant(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str],
                                            encoder: str) -> None:
    idx, out = str(tmp_path / "idx"), str(tmp_path / "out")
    assert run(capsys, "index", str(corpus), "--index", idx, "--encoder", encoder, "--no-progress")[0] == 0
    code, _, err = run(capsys, "export", "--index", idx, "--qdrant", str(tmp_path / "q"), "--out", out)
    assert code == 0 and "exported 11 page(s)" in err, err
    from dse.retrieve.retriever import Retriever

    with Retriever.open(idx) as a, Retriever.open(out) as b:
        assert type(b.index).__name__ == "QdrantIndex" and len(b) == 11
        assert b.page_image(a.search_text("peregrine falcon")[0].page_id).size
        mode = "text" if encoder == "bm25" else "visual"
        for q in ("peregrine falcon", "sourdough starter feeding", "torque wrench"):
            ha, hb = a.search(q, k=3, mode=mode), b.search(q, k=3, mode=mode)
            assert [h.page_id for h in ha][:1] == [h.page_id for h in hb][:1]
            if mode == "visual":
                assert [h.page_id for h in ha] == [h.page_id for h in hb]


def test_help_lists_every_qdrant_option_and_an_unknown_one_is_named(tmp_path: Path, corpus: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from dse.backends.qdrant.schema import OPTION_KEYS

    with pytest.raises(SystemExit):
        main(["index", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for key in OPTION_KEYS[1:]:
        assert key in text, key
    config = tmp_path / "q.yaml"
    config.write_text("encoder: bm25\nindex:\n  qdrant:\n    first_stage: pooled\n    n_prob: 2\n")
    code, _, err = run(capsys, "index", str(corpus), "--index", str(tmp_path / "idx"), "--config", str(config),
                       "--backend", "qdrant", "--qdrant", str(tmp_path / "q"), "--no-progress")
    assert code != 0 and "'n_prob' is not an option of the Qdrant backend" in err and "n_probe" in err, err
    config.write_text("encoder: bm25\nindex:\n  backend: qdrant\n  qdrant:\n    prefetch: 50\n    collection: cfg\n")
    code, _, err = run(capsys, "index", str(corpus), "--index", str(tmp_path / "idx"), "--config", str(config),
                       "--qdrant", str(tmp_path / "q"), "--no-progress")
    store = json.loads((tmp_path / "idx" / "manifest.json").read_text())["store"]["qdrant"]
    assert code == 0 and store["collection"] == "cfg" and store["options"] == {"prefetch": 50}, err
