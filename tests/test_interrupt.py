"""An interrupted `dse index` (SIGKILL, Ctrl-C) keeps what it committed; re-running completes it.

The interrupted run is a real `python -m dse index` process. It is made deterministic by a
`sitecustomize` hook on its PYTHONPATH (test code only): when the index already holds one
source, the next catalogue commit first signals the test and then blocks, so the signal lands
at the worst moment: the next source's vectors and page images are written, its catalogue
transaction is not.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

HOOK = '''
import os, time
if os.environ.get("DSE_TEST_HOLD_AFTER"):
    from dse.storage import catalogue

    _commit = catalogue.Catalogue.commit_sources

    def commit_sources(self, *args, **kwargs):
        if self.num_sources() >= int(os.environ["DSE_TEST_HOLD_AFTER"]):
            open(os.environ["DSE_TEST_HELD"], "w").close()
            time.sleep(600)  # the test signals this process here
        return _commit(self, *args, **kwargs)

    catalogue.Catalogue.commit_sources = commit_sources
'''
WAIT_SECONDS = 300  # a bound against hanging, not a timing assertion


def _dse(*args: str, env: dict[str, str] | None = None, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dse", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=WAIT_SECONDS,
    )


def _counts(index: Path) -> tuple[int, int]:
    """(sources, pages) committed, read from the catalogue (the commit point)."""
    with sqlite3.connect(index / "catalogue.sqlite") as db:
        sources = db.execute("SELECT COUNT(*) FROM sources").fetchone()[0]
        return sources, db.execute("SELECT COUNT(*) FROM pages").fetchone()[0]


def _search(index: Path, cwd: Path) -> list[tuple[str, int]]:
    done = _dse("search", "--index", str(index), "revenue quarter report", "-k", "20", "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return [(hit["page_id"], round(hit["score"], 5)) for hit in json.loads(done.stdout)]


def _page_ids(index: Path) -> list[str]:
    with sqlite3.connect(index / "catalogue.sqlite") as db:
        return [row[0] for row in db.execute("SELECT page_id FROM pages")]


def _interrupted_run(corpus: Path, index: Path, tmp_path: Path, signum: int, commit_pages: int = 1) -> int:
    """Start `dse index --commit-pages N`, wait until it holds inside its second commit, send `signum`."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    held = tmp_path / "held"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
        "DSE_TEST_HOLD_AFTER": "1",
        "DSE_TEST_HELD": str(held),
    }
    log = (tmp_path / "interrupted.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "dse", "index", str(corpus), "--index", str(index), "--encoder", "bm25",
         "--no-progress", "--commit-pages", str(commit_pages)],  # 1: the hold lands between two sources
        cwd=tmp_path, env=env, stdout=log, stderr=log,
    )
    deadline = time.monotonic() + WAIT_SECONDS
    while not held.exists():
        assert process.poll() is None, (tmp_path / "interrupted.log").read_text()
        assert time.monotonic() < deadline, "dse index never reached its second commit"
        time.sleep(0.05)
    process.send_signal(signum)
    code = process.wait(timeout=WAIT_SECONDS)
    log.close()
    return code


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[tuple[str, float]]]:
    """The example corpus indexed by an uninterrupted run: (index, page ids, search hits)."""
    from conftest import EXAMPLES

    folder = tmp_path_factory.mktemp("clean")
    corpus = folder / "corpus"
    corpus.symlink_to(EXAMPLES)
    done = _dse("index", "corpus", "--index", "clean", "--encoder", "bm25", "--no-progress", "--workers", "0",
                cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder / "clean", _page_ids(folder / "clean"), _search(folder / "clean", folder)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "sigint"])
def test_interrupted_index_resumes_exactly(
    corpus: Path, tmp_path: Path, signum: int, clean_run: tuple[Path, list[str], list]
) -> None:
    clean, clean_ids, clean_hits = clean_run

    index = tmp_path / "index"
    code = _interrupted_run(corpus, index, tmp_path, signum)
    log = (tmp_path / "interrupted.log").read_text()
    if signum == signal.SIGINT:
        assert code == 130 and "interrupted" in log, log
    else:
        assert code == -signal.SIGKILL
    assert _counts(index)[0] == 1  # only what was committed before the signal
    info = _dse("info", "--index", str(index), "--json", cwd=tmp_path)  # opens, repairs counts
    assert info.returncode == 0 and json.loads(info.stdout)["sources"] == 1, info.stderr

    done = _dse("index", str(corpus), "--index", str(index), "--no-progress", "--workers", "0", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "skipped 1 already indexed" in done.stderr
    assert _counts(index) == _counts(clean)
    ids = _page_ids(index)
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(clean_ids)
    assert sorted(_search(index, tmp_path)) == sorted(clean_hits)
