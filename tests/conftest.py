"""Shared fixtures: the example corpus, a private tiny-model cache, the shared data folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "corpus"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Build tiny checkpoints into a private cache, unless the caller chose one."""
    if "DSE_CACHE_DIR" not in os.environ:
        os.environ["DSE_CACHE_DIR"] = str(tmp_path_factory.mktemp("dse-cache"))


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    """A private copy of the example corpus (4 PDFs, 1 PNG)."""
    dst = tmp_path / "corpus"
    shutil.copytree(EXAMPLES, dst)
    return dst


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
