"""qdrant-edge-py specifics (the shared behaviour is tests/test_backend_conformance.py's `qdrant-edge`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dse.backends import backend_class

pytest.importorskip("qdrant_client")
pytest.importorskip("qdrant_edge")
ROOT = Path(__file__).resolve().parents[1]
ENCODER = {"name": "t", "kind": "single", "model": "random", "dim": 4, "prompt_version": "1", "options": {}}


def test_cluster_settings_need_a_server(tmp_path) -> None:
    with pytest.raises(ValueError, match="shard_number need a Qdrant server"):
        backend_class("qdrant").create(tmp_path / "idx", ENCODER, {"qdrant": f"edge:{tmp_path}/e", "shard_number": 2})


def test_one_process_at_a_time_is_a_clear_error(tmp_path) -> None:
    location = f"edge:{tmp_path / 'e'}"
    probe = [sys.executable, "-c", "import sys; from dse.backends import open_backend; len(open_backend(sys.argv[1])); "
             "print('opened')", str(tmp_path / "idx")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with backend_class("qdrant").create(tmp_path / "idx", ENCODER, {"qdrant": location}, image_size=0) as index:
        assert index.manifest.store["qdrant"]["location"] == location
        assert len(index) == 0  # the shard is open in this process
        other = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=120)
        assert other.returncode != 0 and "IndexLockedError" in other.stderr and "open in another process" in other.stderr
    other = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=120)  # released on close
    assert other.returncode == 0 and "opened" in other.stdout, other.stderr
