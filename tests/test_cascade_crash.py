"""Crash safety of the cascade's shard truncation: an interrupted cut leaves an index that opens.

An add rolled back (killed before its catalogue commit) leaves the last shard longer than the
index's row count; the next writer cuts it back before appending. The cut rewrites the shard's
files one by one, so a crash can leave some files cut and others not: every such mix must open
with exactly the committed rows and search like a fresh index of those rows.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from dse.engines.cascade import tiers as cascade_tiers  # noqa: E402
from dse.engines.cascade import tokens as cascade_tokens  # noqa: E402
from dse.engines.cascade.engine import CascadeEngine  # noqa: E402

DIM, TOKENS = 16, 12
KEEP = 400  # rows committed: shard 1 (300 pages) + the first 100 of shard 2 (150 pages)


def _data() -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((60, DIM)).astype(np.float32)
    pages = []
    for i in range(470):
        own = centres[rng.choice(60, 3, replace=False)]
        t = own[rng.integers(0, 3, TOKENS)] + 0.3 * rng.standard_normal((TOKENS, DIM)).astype(np.float32)
        pages.append(t / np.linalg.norm(t, axis=1, keepdims=True))
    queries = [p[:5] + 0.05 for p in pages[:400:37]]
    return pages, [q / np.linalg.norm(q, axis=1, keepdims=True) for q in queries]


PAGES, QUERIES = _data()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two shards on disk (300 and 150 pages); the index committed only 400 rows."""
    directory = tmp_path_factory.mktemp("cascade-pristine")
    engine = CascadeEngine()
    for part in (PAGES[:300], PAGES[300:450]):
        engine.add(part)
        engine.save(directory)
    return directory


def _check_opens_with(directory: Path, rows: int) -> None:
    """The index opens with `rows` rows and ranks exactly like exact MaxSim over them."""
    engine = CascadeEngine.load(directory, rows=rows)
    assert len(engine) == rows
    data = PAGES[:rows] if rows <= KEEP else PAGES[:KEEP] + PAGES[450 : 450 + rows - KEEP]
    exact = np.array([[float((q @ p.T).max(axis=1).sum()) for p in data] for q in QUERIES])  # (nq, rows)
    scores, got = engine.search(QUERIES, 10, n_probe=0, n_coarse=0, n_candidates=0)  # every page, exact tier
    tenth = np.sort(exact, axis=1)[:, -10]  # (nq,) tie-tolerant: float16 exact tier
    for j, rows_j in enumerate(got):
        assert (exact[j, rows_j] >= tenth[j] - 2e-2).all()
        np.testing.assert_allclose(scores[j], exact[j, rows_j], atol=2e-2)
    assert engine.search(QUERIES, 10)[1].shape == (len(QUERIES), 10)  # the default stages run too


class _Killed(Exception):
    pass


@pytest.mark.parametrize("files_written", range(0, 18))
def test_a_cut_interrupted_after_any_file_opens(pristine: Path, tmp_path: Path, files_written: int,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "idx"
    shutil.copytree(pristine, directory)
    real = cascade_tiers.save_npy
    count = {"n": 0}

    def dying(path: Path, array: np.ndarray) -> None:
        if count["n"] == files_written:
            raise _Killed(path.name)
        count["n"] += 1
        real(path, array)

    monkeypatch.setattr(cascade_tiers, "save_npy", dying)
    monkeypatch.setattr(cascade_tokens, "save_npy", dying)
    engine = CascadeEngine.load(directory, rows=KEEP)
    try:
        engine.add(PAGES[450:470])
        engine.save(directory)  # cuts shard 2 to 100 pages, then writes shard 3
    except _Killed:
        pass
    monkeypatch.undo()
    _check_opens_with(directory, KEEP)
    resumed = CascadeEngine.load(directory, rows=KEEP)  # a later writer finishes the job
    resumed.add(PAGES[450:470])
    resumed.save(directory)
    _check_opens_with(directory, KEEP + 20)


def _writer(directory: str) -> None:
    """Open the committed rows (the cut is pending), say so, then add 20 pages (cut + new shard)."""
    engine = CascadeEngine.load(Path(directory), rows=KEEP)
    print("loaded", flush=True)
    engine.add(PAGES[450:470])
    engine.save(Path(directory))


def _start(directory: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, str(directory)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "loaded"
    return proc


def test_kill_9_during_the_cut(pristine: Path, tmp_path: Path) -> None:
    """SIGKILL at seeded moments of a real writer process: the committed rows always open."""
    probe = tmp_path / "timing"
    shutil.copytree(pristine, probe)
    proc = _start(probe)
    t0 = time.perf_counter()
    assert proc.wait(timeout=120) == 0
    duration = time.perf_counter() - t0  # from "loaded" to the end: the cut and the new shard
    _check_opens_with(probe, KEEP + 20)
    rng = random.Random(99)
    for round_no in range(8):
        directory = tmp_path / f"idx{round_no}"
        shutil.copytree(pristine, directory)
        proc = _start(directory)
        time.sleep(rng.uniform(0.0, duration))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        _check_opens_with(directory, KEEP)


if __name__ == "__main__":
    _writer(sys.argv[1])
