"""bench/single.py runs end to end at tiny size: every project engine through a real index directory,
every FAISS baseline, the hardness figures and the matched-recall table. No timings are asserted."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ("--pages", "400", "--queries", "5", "--dim", "32", "--commit-pages", "50", "--n-lists", "4",
        "--list-sweep", "1:16,4:64", "--scan-sweep", "16,0", "--hnsw-sweep", "16,64", "--sq8-sweep", "1:1,4:4",
        "--pq-sweep", "1:4,4:8", "--pq-m", "4", "--binary-sweep", "1:16,4:400")
ENGINES = {"flat", "hnsw", "binary", "binary-ivf", "int8", "int8-ivf"}
BASELINES = {"flat_exact", "faiss_hnsw", "faiss_ivf_sq8_refine", "faiss_ivf_pq_refine", "faiss_binary_ivf_rescore",
             "faiss_ivf_sq8_mmap_refine", "faiss_ivf_pq_mmap_refine"}


def _single(*args: str, tmp_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DSE_CACHE_DIR": os.environ.get("DSE_CACHE_DIR", str(tmp_path / "cache"))}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "single.py"), *args, "--dir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_single_tiny_realistic(tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    out = _single(*TINY, tmp_path=tmp_path)
    assert out["pages"] == 400 and out["queries"] == 5 and out["corpus"]["kind"] == "realistic"
    assert out["corpus"]["documents"] > 1  # pages come in documents
    for key in ("p50_ms", "p95_ms", "recall_at_10", "cpu_ms_p50", "resident_bytes_per_page", "disk_bytes_per_page",
                "build_s", "options"):
        assert key in out, key
    assert out["options"]["mode"] == "binary" and out["options"]["n_lists"] == 4
    assert set(out["engines"]) == ENGINES and set(out["baselines"]) == BASELINES
    hard = out["hardness"]
    assert {"gap_1_10", "gap_10_11", "gap_1_100", "top1_is_target", "target_in_top10"} <= set(hard)
    assert hard["gap_1_10"] >= 0 and hard["gap_10_11"] >= 0 and 0 <= hard["top1_is_target"] <= 1
    assert -1 <= hard["cosines"]["random_pages"] < hard["cosines"]["sibling_pages"] <= 1
    assert out["engines"]["flat"]["recall_at_10"] == 1.0  # exact search is the oracle
    assert out["baselines"]["flat_exact"]["recall_at_10"] == 1.0
    assert out["engines"]["binary"]["sweep"][1]["recall_at_10"] == 1.0  # n_candidates=0: every row rescored
    assert out["baselines"]["faiss_binary_ivf_rescore"]["sweep"][1]["recall_at_10"] == 1.0  # every list, every row
    for name, entry in {**out["engines"], **out["baselines"]}.items():
        assert 0.0 <= entry.get("recall_at_10", 0.0) <= 1.0, name
        for s in entry.get("sweep", []):
            assert 0.0 <= s["recall_at_10"] <= 1.0 and s["p95_ms"] >= s["p50_ms"] > 0, (name, s)
    for name in ("faiss_ivf_sq8_refine", "faiss_ivf_pq_refine"):  # the refine copy is float32, the codes are not
        b = out["baselines"][name]
        assert b["resident_bytes_per_page"] > b["codes_bytes_per_page"] + 4 * 32 - 1
        mapped = out["baselines"][name.replace("_refine", "_mmap_refine")]
        assert mapped["resident_bytes_per_page"] == b["codes_bytes_per_page"]
        assert [s["setting"] for s in mapped["sweep"]] == [s["setting"] for s in b["sweep"]]
        assert mapped["sweep"][-1]["recall_at_10"] == b["sweep"][-1]["recall_at_10"]  # same candidates, same rescoring
    matched = out["matched"]
    assert set(matched) == {"primary", "0.95", "0.99"} and matched["primary"]["recall"] == out["recall_at_10"]
    assert matched["0.99"]["cheapest"]["dse_flat"]["setting"] == "exact"
    for row in matched.values():
        for best in row["cheapest"].values():
            assert best is None or best["recall_at_10"] >= row["recall"] - 1e-9


def test_single_tiny_easy(tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    out = _single("--pages", "300", "--queries", "4", "--dim", "16", "--corpus-kind", "easy", "--topics", "20",
                  "--engines", "flat,binary", "--primary", "binary", "--baselines", "sq8", "--n-lists", "2",
                  "--scan-sweep", "32", "--sq8-sweep", "2:2", tmp_path=tmp_path)
    assert out["corpus"]["kind"] == "easy" and set(out["engines"]) == {"flat", "binary"}
    assert set(out["baselines"]) == {"flat_exact", "faiss_ivf_sq8_refine", "faiss_ivf_sq8_mmap_refine"}
    assert out["hardness"]["top1_is_target"] >= 0


def test_single_tiny_faiss_on_the_engine_lists(tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    out = _single("--pages", "300", "--queries", "3", "--dim", "16", "--engines", "binary-ivf", "--baselines",
                  "binary-ivf", "--n-lists", "2", "--list-sweep", "2:300", "--binary-sweep", "2:300",
                  "--faiss-centroids", "sample,engine", tmp_path=tmp_path)
    assert out["baselines"]["faiss_binary_ivf_rescore"]["centroids"] == "sample"
    b = out["baselines"]["faiss_binary_ivf_rescore_engine_lists"]
    assert b["centroids"] == "engine"
    assert b["sweep"][0]["recall_at_10"] == out["engines"]["binary-ivf"]["sweep"][0]["recall_at_10"] == 1.0


def _corpus_module():  # noqa: ANN202
    """bench/corpus_single.py loaded by path (bench/ is on sys.path only while it loads, for its sibling
    corpus_late: its ingest.py would shadow ingest)."""
    spec = importlib.util.spec_from_file_location("corpus_single", ROOT / "bench" / "corpus_single.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return module


def test_realistic_corpus_is_reproducible_by_range() -> None:
    module = _corpus_module()
    CHUNK, RealisticSingle = module.CHUNK, module.RealisticSingle  # noqa: N806

    c = RealisticSingle(CHUNK + 500, seed=3, dim=24)
    whole = c.pages(0, c.n)  # (n, dim)
    np.testing.assert_allclose(c.pages(CHUNK - 7, CHUNK + 9), whole[CHUNK - 7 : CHUNK + 9], rtol=0, atol=0)
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-5)
    assert c.doc_starts[0] == 0 and c.doc_starts[-1] == c.n and np.all(np.diff(c.doc_starts) > 0)
    q = c.queries(np.array([5, CHUNK + 3]))
    np.testing.assert_allclose(q, RealisticSingle(CHUNK + 500, seed=3, dim=24).queries(np.array([5, CHUNK + 3])))
