"""`bench/serve.py` runs end to end at a tiny size: both indexes, HTTP and in-process, zero errors.

No timings are asserted: speed is what the bench reports, not what a test checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "serve.py"
KEYS = ("http_p50_ms", "http_p99_ms", "inprocess_p50_ms", "rps", "errors")


@pytest.mark.slow
def test_bench_serve_tiny(tmp_path: Path) -> None:
    cmd = [sys.executable, str(BENCH), "--pages", "200", "--requests", "5", "--workdir", str(tmp_path / "work"),
           "--max-seconds", "60"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=BENCH.parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    for key in KEYS:
        assert key in result, key
    assert result["errors"] == 0, result
    for kind in ("text", "multi"):
        per = result[kind]
        for key in KEYS:
            assert key in per, (kind, key)
        assert per["errors"] == 0, per
        assert per["pages"] == 200
        assert per["runs"]["http"]["requests"] == 8 * 5
        assert per["runs"]["inprocess"]["requests"] == 8 * 5
        assert per["cold"]["server"]["start_to_first_hit_s"] > 0
    assert result["text"]["ranking_mismatches"] == 0  # BM25: the server's ranking is Retriever.search's
    assert 0 <= result["text"]["hardness"]["target_rank1"] <= 1
    assert "p50" in done.stdout and "load average" in done.stdout
