"""bench/query_encode.py and bench/encode_pages.py run end to end at tiny size on the CPU.

No timings are asserted: speed is what the benches report, not what a test checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
MODELS = ("dse-qwen2", "colqwen2", "qwen3-vl-embedding")


def _run(script: str, *args: str, tmp_path: Path) -> dict:
    import os

    env = {**os.environ, "DSE_CACHE_DIR": os.environ.get("DSE_CACHE_DIR", str(tmp_path / "cache"))}
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=900, cwd=BENCH.parent, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_query_encode_tiny(tmp_path: Path) -> None:
    out = _run("query_encode.py", "--size", "tiny", "--runs", "2", "--warmup", "1", "--models", ",".join(MODELS),
               tmp_path=tmp_path)
    assert set(out["models"]) == set(MODELS)
    for name, model in out["models"].items():
        assert model["words"] == {"q12": 12, "q40": 40}, name
        assert set(model["precisions"]) == {"fp32", "bf16", "int8"}, name
        for precision, entry in model["precisions"].items():
            for key in ("q12", "q40"):
                assert entry[key]["p50_ms"] > 0 and entry[key]["p95_ms"] >= entry[key]["p50_ms"]
                assert 0.9 <= entry[key]["cos_fp32"] <= 1.0 + 1e-6, (name, precision, entry)
        assert model["precisions"]["fp32"]["q12"]["cos_fp32"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_encode_pages_tiny_cpu(tmp_path: Path) -> None:
    out = _run("encode_pages.py", "--device", "cpu", "--size", "tiny", "--pages", "3", "--batch-sizes", "1,2",
               "--page-size", "200x280", "--models", ",".join(MODELS) + ",colqwen3", tmp_path=tmp_path)
    assert set(MODELS) <= set(out["models"])
    assert "colqwen3" in out["models"] or "colqwen3" in out["skipped"]  # skipped until tiny-colqwen3 is registered
    for name, model in out["models"].items():
        runs = model["runs"]["sdpa"]
        assert set(runs) == {"1", "2"}, name
        assert all(r["pages_per_s"] > 0 for r in runs.values()), (name, runs)
