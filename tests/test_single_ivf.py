"""IVF lists in the quantized single-vector engine: oracle equality, recall, filters, persistence, crashes."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dse.engines.ivf import lists as ivf
from dse.engines.ivf import state as ivf_state
from dse.engines.results import topk
from dse.kernels import dot_rows, hamming_spans, int8_spans
from dse.engines.quantize import int8_encode, pack_signs
from dse.engines.files import save_npy
from dse.engines.quantized.engine import QuantizedFlatEngine

DIM = 64
LISTS = 16  # trains once the engine holds 40 * 16 = 640 rows


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def corpus(seed: int, n: int = 2000, nq: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit rows (n, DIM) and queries near some of them (nq, DIM)."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((30, DIM)))
    rows = unit(centres[rng.integers(0, 30, n)] + 0.6 * rng.standard_normal((n, DIM)) / np.sqrt(DIM))
    queries = unit(rows[rng.integers(0, n, nq)] + 0.4 * rng.standard_normal((nq, DIM)) / np.sqrt(DIM))
    return rows, queries


def engine(mode: str = "binary", **options: int) -> QuantizedFlatEngine:
    return QuantizedFlatEngine(mode=mode, **{"n_candidates": 64, "n_lists": LISTS, "n_probe": 4, **options})


def same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> None:
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])


def test_list_kernels_and_layout_equal_numpy() -> None:
    rng = np.random.default_rng(0)
    x, q = rng.standard_normal((200, DIM)).astype(np.float32), rng.standard_normal(DIM).astype(np.float32)
    starts, stops = np.array([150, 0, 40]), np.array([160, 0, 70])
    take = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)])  # (40,)
    signs_x, signs_q = np.where(x > 0, 1, -1), np.where(q > 0, 1, -1)
    np.testing.assert_array_equal(hamming_spans(pack_signs(q[None])[0], pack_signs(x), starts, stops, DIM),
                                  signs_x[take] @ signs_q)
    codes, scales = int8_encode(x)
    np.testing.assert_allclose(int8_spans(q, codes, scales, starts, stops),
                               (codes[take] * scales[take, None]) @ q, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dot_rows(x, q, take), x[take] @ q, rtol=1e-5, atol=1e-5)
    labels = rng.integers(0, 5, 50)
    layout = ivf.ListLayout.build(labels, 6)
    assert layout.offsets[-1] == 50 and layout.offsets[5] == layout.offsets[6]  # list 5 is empty
    for lst in range(6):
        assert list(layout.items[layout.offsets[lst] : layout.offsets[lst + 1]]) == list(np.flatnonzero(labels == lst))
    np.testing.assert_array_equal(layout.items[layout.take(np.array([3, 5, 1]))],
                                  np.concatenate([np.flatnonzero(labels == 3), np.flatnonzero(labels == 1)]))
    np.testing.assert_array_equal(layout.items[layout.positions], np.arange(50))
    ranked, counts = np.array([2, 0, 1]), np.array([4, 0, 1])
    assert ivf.lists_to_scan(ranked, counts, need=1, n_probe=1) == 1
    assert ivf.lists_to_scan(ranked, counts, need=5, n_probe=1) == 2  # list 2 holds 1, list 0 adds 4
    assert ivf.lists_to_scan(ranked, counts, need=50, n_probe=1) == 2  # all 5 allowed items are in 2 lists
    assert ivf.lists_to_scan(ranked, counts, need=1, n_probe=3) == 3


@pytest.mark.parametrize("mode", ["binary", "int8"])
def test_full_probe_is_the_plain_engine_and_partial_probe_recalls(mode: str) -> None:
    rows, queries = corpus(1)
    plain, lists = QuantizedFlatEngine(mode=mode, n_candidates=64), engine(mode)
    plain.add(rows)
    lists.add(rows[:1200])
    lists.add(rows[1200:])
    assert lists.centroids is not None and lists.centroids.shape == (LISTS, DIM)
    np.testing.assert_allclose(np.linalg.norm(lists.centroids, axis=1), 1.0, rtol=1e-5)
    for n_candidates in (64, 0):
        same(lists.search(queries, 10, n_probe=LISTS, n_candidates=n_candidates),
             plain.search(queries, 10, n_candidates=n_candidates))
    exact = queries @ rows.T  # (20, 2000)
    np.testing.assert_array_equal(lists.search(queries, 10, n_probe=99, n_candidates=0)[1], topk(exact, 10)[1])
    scores, got = lists.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, topk(exact, 10)[1])])
    assert recall >= 0.9, recall
    np.testing.assert_allclose(scores, np.take_along_axis(exact, got, axis=1), rtol=1e-5, atol=1e-6)


def test_no_centroids_before_the_threshold_and_with_n_lists_zero() -> None:
    rows, queries = corpus(2, n=700)
    small, off = engine(), QuantizedFlatEngine(n_candidates=64, n_lists=0)
    small.add(rows[: ivf.TRAIN_ROWS_PER_LIST * LISTS - 1])
    off.add(rows[: ivf.TRAIN_ROWS_PER_LIST * LISTS - 1])
    assert small.centroids is None
    same(small.search(queries, 10), off.search(queries, 10))  # scans every row until trained
    small.add(rows[ivf.TRAIN_ROWS_PER_LIST * LISTS - 1 :])
    off.add(rows[ivf.TRAIN_ROWS_PER_LIST * LISTS - 1 :])
    assert small.centroids is not None and off.centroids is None


@pytest.mark.parametrize("mode", ["binary", "int8"])
def test_allowed_rows_in_unprobed_lists_still_come_back(mode: str) -> None:
    rows, queries = corpus(3)
    e = engine(mode, n_probe=1)
    e.add(rows)
    far = int(ivf.probe_order(queries[:1], e.centroids, LISTS)[0, -1])  # the query's worst list
    labels = ivf.assign(rows, e.centroids)
    allowed = labels == far
    k = min(10, int(allowed.sum()))
    _, got = e.search(queries[:1], 10, allowed=allowed)
    assert got.shape == (1, k) and allowed[got].all()
    _, got = e.search(queries[:1], 10, allowed=allowed, n_candidates=0)  # exact within the scanned lists
    want = np.flatnonzero(allowed)[topk(queries[:1] @ rows[allowed].T, k)[1][0]]  # exact top-k of the allowed
    np.testing.assert_array_equal(got[0], want)
    few = np.zeros(len(rows), bool)
    few[[5, 1700]] = True
    for probe in (1, LISTS):  # widened probe; every row scanned (fewer allowed rows than candidates)
        assert [sorted(r) for r in e.search(queries, 10, allowed=few, n_probe=probe)[1]] == [[5, 1700]] * len(queries)
    some = np.random.default_rng(0).random(len(rows)) < 0.3
    _, got = e.search(queries, 10, allowed=some)
    assert got.shape == (len(queries), 10) and some[got].all()
    assert e.search(queries, 10, allowed=np.zeros(len(rows), bool))[1].shape == (len(queries), 0)


def test_options_are_validated_and_recorded() -> None:
    for bad, match in (({"n_lists": -1}, "n_lists must be an integer >= 0"), ({"n_probe": 0}, "n_probe must be"),
                       ({"n_lists": True}, "n_lists must be"), ({"n_probe": 2.5}, "n_probe must be")):
        with pytest.raises(ValueError, match=match):
            QuantizedFlatEngine(**bad)
    e = engine()
    assert e.options() == {"mode": "binary", "dim": None, "n_candidates": 64, "n_lists": LISTS, "n_probe": 4,
                           "retrain": True}
    e.add(corpus(4, n=20)[0])
    with pytest.raises(ValueError, match="n_probe must be"):
        e.search(corpus(4, n=20)[1], 3, n_probe=0)


def test_persistence_shards_before_training_and_reloads(tmp_path: Path) -> None:
    rows, queries = corpus(5, n=1400)
    d = tmp_path / "vectors"
    e = engine()
    e.add(rows[:300])
    e.save(d)  # shard 1: before the centroids exist
    assert not list(d.glob("*lists*")) and not (d / ivf_state.CENTROIDS_FILE).exists()
    e.add(rows[300:900])  # trains; shard 2 follows
    e.save(d)
    tag = ivf_state.fingerprint(e.centroids)
    assert (d / ivf_state.CENTROIDS_FILE).exists()
    assert sorted(p.name for p in d.glob("*lists*")) == [f"shard-00000{i}.lists-{tag}.npy" for i in (1, 2)]
    loaded = QuantizedFlatEngine.load(d, rows=900, **e.options())
    np.testing.assert_array_equal(loaded.centroids, e.centroids)
    same(loaded.search(queries, 10), e.search(queries, 10))
    loaded.add(rows[900:])
    loaded.save(d)
    again = QuantizedFlatEngine.load(d, rows=1400, **e.options())
    same(again.search(queries, 10), loaded.search(queries, 10))
    e.add(rows[900:])  # the same rows in memory only: same centroids, same lists
    same(again.search(queries, 10), e.search(queries, 10))
    with pytest.raises(ValueError, match="n_lists=8"):
        QuantizedFlatEngine.load(d, rows=1400, **{**e.options(), "n_lists": 8})


def test_missing_or_damaged_list_files_are_recomputed(tmp_path: Path) -> None:
    rows, queries = corpus(6, n=1200)
    d = tmp_path / "vectors"
    e = engine()
    for a in range(0, 1200, 400):
        e.add(rows[a : a + 400])
        e.save(d)
    want = e.search(queries, 10)
    tag = ivf_state.fingerprint(e.centroids)
    ivf_state.lists_path(d, 1, tag).unlink()
    ivf_state.lists_path(d, 2, tag).write_bytes(b"\x93NUMPY half a file")
    save_npy(ivf_state.lists_path(d, 3, tag), np.full(400, 99, np.int32))  # out of range
    save_npy(ivf_state.lists_path(d, 3, "000000000000"), np.zeros(400, np.int32))  # other centroids
    loaded = QuantizedFlatEngine.load(d, rows=1200, **e.options())
    same(loaded.search(queries, 10), want)
    (d / ivf_state.CENTROIDS_FILE).write_bytes(b"garbage")  # unreadable centroids: search scans everything
    blind = QuantizedFlatEngine.load(d, rows=1200, **e.options())
    assert blind.centroids is None
    plain = QuantizedFlatEngine(n_candidates=64)
    plain.add(rows)
    same(blind.search(queries, 10), plain.search(queries, 10))
    loaded.add(rows[:50])
    loaded.save(d)  # rewrites the centroids it holds and the missing list file, drops the stale one
    assert ivf_state.lists_path(d, 1, tag).exists() and not ivf_state.lists_path(d, 3, "000000000000").exists()
    np.testing.assert_array_equal(ivf_state.load_lists(d, 2, tag, 400, LISTS), ivf.assign(rows[400:800], e.centroids))


def test_reader_extends_past_training_and_adopts_the_centroids(tmp_path: Path) -> None:
    rows, queries = corpus(7, n=1000)
    d = tmp_path / "vectors"
    writer = engine()
    writer.add(rows[:200])
    writer.save(d)
    reader = QuantizedFlatEngine.load(d, rows=200, **writer.options())
    writer.add(rows[200:])
    writer.save(d)
    reader.extend(1000)
    np.testing.assert_array_equal(reader.centroids, writer.centroids)
    same(reader.search(queries, 10), writer.search(queries, 10))


def test_manifest_round_trip(tmp_path: Path) -> None:
    from dse.engines.registry import engine_for
    from dse.storage.page_index import PageIndex

    describe = {"name": "tiny-dse", "kind": "single", "model": "m", "dim": DIM, "prompt_version": 1, "options": {}}
    options = {"mode": "binary", "n_candidates": 32, "n_lists": 8, "n_probe": 2}
    index = PageIndex.create(tmp_path / "idx", describe, options)
    assert index.manifest.engine == {**options, "dim": DIM, "retrain": True}
    cls = engine_for("single", index.manifest.engine)
    assert cls is QuantizedFlatEngine and cls(**index.manifest.engine).options() == index.manifest.engine


# A writer process: add and save batches until every row is in, recording the committed row count
# (atomically, after each save) like the catalogue would. A fresh interpreter rather than a fork: FAISS's
# OpenMP pool, used by training in this process, does not survive fork.
_WRITER = """
import os, random, sys
from pathlib import Path
import numpy as np
from dse.engines.quantized.engine import QuantizedFlatEngine
directory, committed, data = Path(sys.argv[1]), Path(sys.argv[2]), np.load(sys.argv[3])
count = int(committed.read_text()) if committed.exists() else 0
e = QuantizedFlatEngine.load(directory, rows=count, n_candidates=16, n_lists=4, n_probe=1)
print("ready", flush=True)
rng = random.Random(count)
while count < len(data):
    e.add(data[count : count + rng.randint(20, 120)])
    e.save(directory)
    count = len(e)
    tmp = committed.with_name(committed.name + ".tmp")
    tmp.write_text(str(count))
    os.replace(tmp, committed)
"""


def _committed(path: Path) -> int:
    return int(path.read_text()) if path.exists() else 0


def test_kill_9_while_training_and_writing_lists_loses_no_row(tmp_path: Path) -> None:
    d, committed, data = tmp_path / "vectors", tmp_path / "committed", tmp_path / "rows.npy"
    rows, _ = corpus(8, n=1500)
    np.save(data, rows)
    rng = random.Random(8)

    def writer() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(d), str(committed), str(data)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    for round_no in range(6):
        proc = writer()
        if round_no % 2 == 0:  # after some commits
            target = _committed(committed) + rng.randint(1, 150)
            while _committed(committed) < target and proc.poll() is None:
                time.sleep(0.001)
        else:  # at an arbitrary moment
            time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        count = _committed(committed)
        e = QuantizedFlatEngine.load(d, rows=count, n_candidates=16, n_lists=4, n_probe=1)
        if count:  # every committed row is found by its own vector, probing one list
            _, got = e.search(rows[:count:7], 1)
            np.testing.assert_array_equal(got[:, 0], np.arange(0, count, 7))
    proc = writer()  # a writer resumes after the crashes and finishes
    assert proc.wait(timeout=300) == 0 and _committed(committed) == 1500
    e = QuantizedFlatEngine.load(d, rows=1500, n_candidates=16, n_lists=4, n_probe=1)
    assert e.centroids is not None and len(list(d.glob("*.lists-*.npy"))) == len(list(d.glob("*.vectors.npy")))
    _, got = e.search(rows[::5], 1)
    np.testing.assert_array_equal(got[:, 0], np.arange(0, 1500, 5))
