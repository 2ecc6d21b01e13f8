"""Search engines against brute-force oracles, and their append-only, crash-safe persistence."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from dse.engines.results import topk
from dse.engines.bm25.engine import BM25Engine
from dse.engines.registry import engine_for
from dse.engines.flat.engine import FlatEngine
from dse.engines.maxsim import MaxSimEngine

DIM = 16
WORDS = [f"w{i}" for i in range(40)]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def maxsim_oracle(qs: list[np.ndarray], ps: list[np.ndarray]) -> np.ndarray:
    out = np.zeros((len(qs), len(ps)), np.float64)
    for i, q in enumerate(qs):
        for j, p in enumerate(ps):
            if len(q) and len(p):
                out[i, j] = (q.astype(np.float64) @ p.astype(np.float64).T).max(axis=1).sum()
    return out


def pages(kind: str, rng: np.random.Generator, n: int) -> list | np.ndarray:
    """n random rows of the kind an engine stores."""
    if kind == "single":
        return unit(rng.standard_normal((n, DIM)))
    if kind == "multi":
        return [unit(rng.standard_normal((int(rng.integers(1, 9)), DIM))) for _ in range(n)]
    return [list(rng.choice(WORDS, size=int(rng.integers(1, 12)))) for _ in range(n)]


def concat(kind: str, parts: list) -> list | np.ndarray:
    if kind == "single":
        return np.concatenate(parts, axis=0)
    return [x for part in parts for x in part]


def queries(kind: str, rng: np.random.Generator, nq: int = 4) -> list | np.ndarray:
    if kind == "single":
        return unit(rng.standard_normal((nq, DIM)))
    if kind == "multi":
        return [unit(rng.standard_normal((3, DIM))) for _ in range(nq)]
    return [list(rng.choice(WORDS, size=3)) for _ in range(nq)]


def built(kind: str, data: list | np.ndarray):
    engine = engine_for(kind)()
    engine.add(data)
    return engine


def assert_same_search(a, b, qs, k: int = 10) -> None:
    sa, ra = a.search(qs, k)
    sb, rb = b.search(qs, k)
    np.testing.assert_array_equal(ra, rb)
    np.testing.assert_allclose(sa, sb, rtol=1e-6, atol=1e-6)


KINDS = ["single", "multi", "text"]


# --- search against oracles -------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 60, 300])
@pytest.mark.parametrize("k", [1, 5, 400])
def test_flat_matches_bruteforce(n: int, k: int) -> None:
    rng = np.random.default_rng(n * 1000 + k)
    x, q = pages("single", rng, n), queries("single", rng, 5)
    scores, rows = built("single", x).search(q, k)
    want_scores, want_rows = topk(q @ x.T, k)
    assert scores.shape == rows.shape == (5, min(k, n))
    assert scores.dtype == np.float32 and rows.dtype == np.int64
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)


def test_flat_ties_keep_lower_rows_first() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(-3, 4, size=(6, 8)).astype(np.float32)  # integers: exact arithmetic
    x = np.concatenate([base] * 10)  # row r duplicates rows r % 6 + 6 j
    q = np.concatenate([base[:2], rng.integers(-3, 4, size=(25, 8)).astype(np.float32)])  # > 20: BLAS path
    for k in (1, 4, 13, 60):
        scores, rows = built("single", x).search(q, k)
        want_scores, want_rows = topk(q @ x.T, k)
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_array_equal(scores, want_scores)


def test_hnsw_recall_at_10() -> None:
    rng = np.random.default_rng(1)
    x, q = unit(rng.standard_normal((2000, 64))), unit(rng.standard_normal((100, 64)))
    exact = FlatEngine()
    exact.add(x)
    approx = FlatEngine(hnsw=True)
    approx.add(x)
    _, want = exact.search(q, 10)
    scores, got = approx.search(q, 10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want)])
    assert recall >= 0.95
    np.testing.assert_allclose(scores, np.take_along_axis(q @ x.T, got, axis=1), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()
    assert approx.options() == {"dim": 64, "hnsw": True, "M": 32, "ef_construction": 200, "ef_search": 128}
    s, r = approx.search(q[:3], 5000)  # k > n: every row, once
    assert r.shape == (3, 2000) and all(sorted(row) == list(range(2000)) for row in r)


@pytest.mark.parametrize("n", [1, 9, 80])
@pytest.mark.parametrize("k", [1, 6, 100])
def test_maxsim_matches_bruteforce(n: int, k: int) -> None:
    rng = np.random.default_rng(n * 100 + k)
    ps = pages("multi", rng, n)
    qs = [unit(rng.standard_normal((int(t), DIM))) for t in rng.integers(1, 7, size=5)]
    for engine in (MaxSimEngine(), MaxSimEngine(block_mb=1e-4)):  # one block; one page per block
        engine.add(ps[: n // 2])
        engine.add(ps[n // 2 :])  # two segments
        scores, rows = engine.search(qs, k)
        oracle = maxsim_oracle(qs, ps)
        want_scores, want_rows = topk(oracle, k)
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_allclose(scores, want_scores, atol=1e-5)
        np.testing.assert_allclose(engine.score(qs), oracle, atol=1e-5)


def test_maxsim_ties_empty_pages_and_queries() -> None:
    rng = np.random.default_rng(2)
    p = unit(rng.standard_normal((4, DIM)))
    ps = [p, np.zeros((0, DIM), np.float32), p.copy(), p[:2], p.copy()]
    qs = [p[:1], np.zeros((0, DIM), np.float32)]
    engine = MaxSimEngine()
    engine.add(ps)
    scores, rows = engine.search(qs, 5)
    assert list(rows[0][:4]) == [0, 2, 3, 4]  # rows 0, 2, 3 (contains p[0]) and 4 tie at 1.0
    assert rows[0][4] == 1 and scores[0][4] == 0.0  # the empty page scores 0
    assert list(rows[1]) == [0, 1, 2, 3, 4] and not scores[1].any()  # empty query: all 0, row order


def test_maxsim_matches_colpali_engine() -> None:
    torch = pytest.importorskip("torch")
    processing = pytest.importorskip("colpali_engine.utils.processing_utils")
    score = processing.BaseVisualRetrieverProcessor.score_multi_vector
    rng = np.random.default_rng(3)
    # Varied page lengths, embeddings sharing a direction (as real ColPali vectors do): every
    # query token's best page token is positive, so colpali's zero padding changes nothing.
    shift = unit(rng.standard_normal(DIM))
    ps = [unit(rng.standard_normal((int(t), DIM)) * 0.3 + shift) for t in rng.integers(3, 40, size=150)]
    qs = [unit(rng.standard_normal((int(t), DIM)) * 0.3 + shift) for t in rng.integers(2, 12, size=7)]
    # Equal page lengths (no padding at all), unconstrained signs.
    ps_eq = [unit(rng.standard_normal((10, DIM))) for _ in range(40)]
    for pages_, qs_ in ((ps, qs), (ps_eq, qs)):
        want = score([torch.from_numpy(q) for q in qs_], [torch.from_numpy(p) for p in pages_], device="cpu")
        engine = MaxSimEngine(block_mb=0.01)
        engine.add(pages_)
        np.testing.assert_allclose(engine.score(qs_), want.numpy(), rtol=1e-5, atol=1e-5)
        _, rows = engine.search(qs_, 10)
        want_rows = torch.argsort(want, dim=1, descending=True, stable=True)[:, :10].numpy()
        np.testing.assert_array_equal(rows, want_rows)


# --- validation ---------------------------------------------------------------------------------


def test_dim_mismatch_errors(tmp_path: Path) -> None:
    flat = FlatEngine(dim=8)
    with pytest.raises(ValueError, match="dim 5, but this index expects dim 8"):
        flat.add(np.zeros((2, 5), np.float32))
    flat.add(np.ones((2, 8), np.float32))
    with pytest.raises(ValueError, match="queries have dim 4, but this index expects dim 8"):
        flat.search(np.zeros((1, 4), np.float32), 3)
    with pytest.raises(ValueError, match="NaN"):
        flat.add(np.full((1, 8), np.nan, np.float32))
    multi = MaxSimEngine()
    multi.add([np.ones((3, 8), np.float32)])
    with pytest.raises(ValueError, match=r"pages\[1\] has dim 6, but this index expects dim 8"):
        multi.add([np.ones((2, 8), np.float32), np.ones((2, 6), np.float32)])
    assert len(multi) == 1  # nothing added from a rejected batch
    with pytest.raises(ValueError, match=r"queries\[0\] has dim 7"):
        multi.search([np.ones((2, 7), np.float32)], 1)
    flat.save(tmp_path / "flat")
    with pytest.raises(ValueError, match="shard-000001.npy.*expects dim 4"):
        FlatEngine.load(tmp_path / "flat", rows=2, dim=4)
    with pytest.raises(ValueError, match="k must be"):
        flat.search(np.ones((1, 8), np.float32), -1)
    with pytest.raises(ValueError, match="unknown vector kind 'sparse'"):
        engine_for("sparse")


@pytest.mark.parametrize("kind", KINDS)
def test_empty_inputs(kind: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    engine = engine_for(kind)()
    engine.add([])
    s, r = engine.search(queries(kind, rng, 2), 5)
    assert s.shape == r.shape == (2, 0)
    engine.save(tmp_path / "e")
    assert len(engine_for(kind).load(tmp_path / "e", rows=0)) == 0
    engine.add(pages(kind, rng, 3))
    s, r = engine.search(queries(kind, rng, 0) if kind != "single" else np.zeros((0, DIM), np.float32), 5)
    assert s.shape == r.shape == (0, 0)
    s, r = engine.search(queries(kind, rng, 2), 0)
    assert s.shape == r.shape == (2, 0)


# --- persistence --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_roundtrip_and_append(kind: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    a, b, c = pages(kind, rng, 20), pages(kind, rng, 7), pages(kind, rng, 5)
    qs = queries(kind, rng)
    d = tmp_path / "vectors"
    engine = engine_for(kind)()
    engine.add(a)
    engine.save(d)
    engine.save(d)  # nothing new: no new shard
    assert sorted(p.name for p in d.iterdir() if not p.name.endswith((".offsets.npy", ".postings.npz"))) == [
        f"shard-000001{engine.marker if kind != 'multi' else '.npy'}"
    ]
    loaded = engine_for(kind).load(d, rows=20, **engine.options())
    assert len(loaded) == 20 and loaded.options() == engine.options()
    assert_same_search(loaded, built(kind, a), qs)
    loaded.add(b)
    loaded.save(d)  # second save after load + add appends shard 2
    again = engine_for(kind).load(d, rows=27)
    again.add(c)
    again.save(d)
    final = engine_for(kind).load(d, rows=32)
    assert_same_search(final, built(kind, concat(kind, [a, b, c])), qs, k=40)
    assert len(list(d.glob(f"shard-*{engine.marker}"))) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_load_truncates_interrupted_add(kind: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    a, b, c, extra = (pages(kind, rng, n) for n in (10, 6, 4, 9))
    qs = queries(kind, rng)
    d = tmp_path / "vectors"
    engine = engine_for(kind)()
    engine.add(a)
    engine.save(d)
    engine.add(extra)
    engine.save(d)  # an add the catalogue never committed: shard 2 holds rows 10..18
    (d / ".shard-000003.npy.123.tmp").write_bytes(b"half written")
    if kind == "multi":
        (d / "shard-000003.npy").write_bytes(b"tokens without offsets: not committed")
    # rows past 10 are ignored
    engine = engine_for(kind).load(d, rows=10)
    assert_same_search(engine, built(kind, a), qs, k=30)
    engine.add(b)
    engine.save(d)  # cleans shard 2 and the stray files, then appends
    assert not list(d.glob(".*")) and not (d / "shard-000003.npy").exists()
    assert len(list(d.glob(f"shard-*{engine.marker}"))) == 2
    assert_same_search(engine_for(kind).load(d, rows=16), built(kind, concat(kind, [a, b])), qs, k=30)
    # the committed count ends inside a shard: keep its first rows only
    engine = engine_for(kind).load(d, rows=13)
    assert_same_search(engine, built(kind, concat(kind, [a, b[:3]])), qs, k=30)
    engine.add(c)
    engine.save(d)
    want = built(kind, concat(kind, [a, b[:3], c]))
    assert_same_search(engine_for(kind).load(d, rows=17), want, qs, k=30)
    with pytest.raises(ValueError, match="holds 17 rows on disk, expected 18"):
        engine_for(kind).load(d, rows=18)


@pytest.mark.parametrize("kind", KINDS)
def test_moved_directory_reopens(kind: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    a, b = pages(kind, rng, 12), pages(kind, rng, 3)
    qs = queries(kind, rng)
    engine = engine_for(kind)()
    engine.add(a)
    engine.save(tmp_path / "old" / "vectors")
    shutil.move(tmp_path / "old", tmp_path / "new")
    moved = engine_for(kind).load(tmp_path / "new" / "vectors", rows=12)
    assert_same_search(moved, built(kind, a), qs)
    moved.add(b)
    moved.save(tmp_path / "new" / "vectors")
    assert_same_search(engine_for(kind).load(tmp_path / "new" / "vectors", rows=15), built(kind, concat(kind, [a, b])), qs)


def test_save_refuses_foreign_shards_and_missing_directory(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    first = FlatEngine()
    first.add(pages("single", rng, 3))
    first.save(tmp_path / "v")
    other = FlatEngine()
    other.add(pages("single", rng, 2))
    with pytest.raises(ValueError, match="already holds shards"):
        other.save(tmp_path / "v")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FlatEngine.load(tmp_path / "missing", rows=1)
    fresh = FlatEngine.load(tmp_path / "missing", rows=0)
    assert len(fresh) == 0
    fresh.add(pages("single", rng, 2))
    fresh.save(tmp_path / "missing")  # created on first save
    assert len(FlatEngine.load(tmp_path / "missing", rows=2)) == 2


def test_maxsim_truncation_interrupted_between_files(tmp_path: Path) -> None:
    """A crash after the offsets were cut but before the tokens were: the shard still loads."""
    rng = np.random.default_rng(11)
    ps, qs = pages("multi", rng, 10), queries("multi", rng)
    engine = MaxSimEngine()
    engine.add(ps)
    engine.save(tmp_path / "v")
    offsets = np.load(tmp_path / "v" / "shard-000001.offsets.npy")
    np.save(tmp_path / "v" / "shard-000001.offsets.npy", offsets[:8])  # 7 pages, tokens untouched
    engine = MaxSimEngine.load(tmp_path / "v", rows=6)
    assert_same_search(engine, built("multi", ps[:6]), qs)
    engine.add(ps[8:])
    engine.save(tmp_path / "v")
    assert_same_search(MaxSimEngine.load(tmp_path / "v", rows=8), built("multi", ps[:6] + ps[8:]), qs)
    assert np.load(tmp_path / "v" / "shard-000001.npy").shape[0] == offsets[6]  # truncated on save


def test_hnsw_rebuilt_on_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    x, q = pages("single", rng, 300), queries("single", rng, 5)
    engine = FlatEngine(hnsw=True, M=16)
    engine.add(x)
    engine.save(tmp_path / "v")
    loaded = FlatEngine.load(tmp_path / "v", rows=300, **engine.options())
    assert loaded.hnsw and loaded.M == 16 and len(loaded) == 300
    _, rows = loaded.search(q, 5)
    _, want = topk(q @ x.T, 5)
    assert np.mean([len(set(r) & set(w)) / 5 for r, w in zip(rows, want)]) >= 0.9


def test_maxsim_saved_pages_are_memory_mapped(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    engine = MaxSimEngine()
    engine.add(pages("multi", rng, 5))
    engine.save(tmp_path / "v")
    assert all(isinstance(s.tokens, np.memmap) or isinstance(s.tokens.base, np.memmap) for s in engine._segments)


def test_engine_for() -> None:
    assert engine_for("single") is FlatEngine
    assert engine_for("multi") is MaxSimEngine
    assert engine_for("text") is BM25Engine


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_searching_an_empty_engine_does_not_fix_its_dim(kind: str) -> None:
    rng = np.random.default_rng(12)
    engine = engine_for(kind)()
    q = np.ones((1, 5), np.float32) if kind == "single" else [np.ones((2, 5), np.float32)]
    assert engine.search(q, 3)[1].shape == (1, 0)
    engine.add(pages(kind, rng, 4))  # DIM (16), not 5
    assert len(engine) == 4 and engine.options()["dim"] == DIM
    if kind == "multi":
        with pytest.raises(ValueError, match=r"pages\[1\] has dim 3, but this index expects dim 5"):
            MaxSimEngine().add([np.ones((2, 5), np.float32), np.ones((2, 3), np.float32)])
        fresh = MaxSimEngine()
        with pytest.raises(ValueError):
            fresh.add([np.ones((2, 5), np.float32), np.ones((2, 3), np.float32)])
        assert fresh.dim is None  # a rejected batch leaves the engine untouched


def test_topk_equals_a_stable_full_sort() -> None:
    """Selection then sort gives exactly the full stable sort: best first, ties by lower row."""
    rng = np.random.default_rng(0)
    for trial in range(200):
        n, k, nq = int(rng.integers(1, 3000)), int(rng.integers(1, 60)), int(rng.integers(1, 4))
        if trial % 2:  # many ties (BM25: most pages score 0)
            scores = rng.integers(0, 4, size=(nq, n)).astype(np.float32)  # (nq, n)
        else:
            scores = rng.standard_normal((nq, n)).astype(np.float32)  # (nq, n)
        got_scores, got_rows = topk(scores, k)
        want = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, n)]  # (nq, k')
        np.testing.assert_array_equal(got_rows, want)
        np.testing.assert_array_equal(got_scores, np.take_along_axis(scores, want, axis=1))


def test_hnsw_graph_is_cached_beside_the_shards(tmp_path: Path) -> None:
    """The graph is read back, not rebuilt; a stale or foreign graph file is never trusted."""
    import faiss

    from dse.engines.flat.engine import FlatEngine
    from dse.engines.flat.hnsw_file import GRAPH_FILE, read_graph

    rng = np.random.default_rng(3)
    x = rng.standard_normal((6000, 16)).astype(np.float32)  # (n, dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:20] + 0.01 * rng.standard_normal((20, 16)).astype(np.float32)  # (20, dim)
    engine = FlatEngine(hnsw=True, M=16)
    engine.add(x[:5000])
    engine.save(tmp_path)
    assert (tmp_path / GRAPH_FILE).is_file()
    want = engine.search(q, 5)
    adds = []
    real = faiss.IndexHNSWFlat.add
    try:
        faiss.IndexHNSWFlat.add = lambda self, v: (adds.append(len(v)), real(self, v))[1]  # counts graph building
        opened = FlatEngine.load(tmp_path, 5000, hnsw=True, M=16)
        got = opened.search(q, 5)
        assert adds == []  # read from the file, nothing rebuilt
        np.testing.assert_array_equal(got[1], want[1])
        opened.add(x[5000:])
        opened.save(tmp_path)
        reopened = FlatEngine.load(tmp_path, 6000, hnsw=True, M=16)
        adds.clear()
        reopened.search(q, 5)
        assert sum(adds) <= 1000  # only the rows the file may lag by
        adds.clear()
        assert read_graph(tmp_path / GRAPH_FILE, FlatEngine.load(tmp_path, 6000, hnsw=True, M=8)) is None
        fewer = FlatEngine.load(tmp_path, 3000, hnsw=True, M=16)  # the file holds rows past these: rebuilt
        assert (fewer.search(q, 5)[1] < 3000).all() and sum(adds) == 3000
    finally:
        faiss.IndexHNSWFlat.add = real
    (tmp_path / GRAPH_FILE).write_bytes(b"not a graph")
    broken = FlatEngine.load(tmp_path, 6000, hnsw=True, M=16)
    exact = FlatEngine()
    exact.add(x)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(broken.search(q, 5)[1], exact.search(q, 5)[1])])
    assert recall > 0.9


def test_a_graph_file_from_elsewhere_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dse.engines.flat.engine import FlatEngine
    from dse.engines.flat.hnsw_file import GRAPH_FILE, read_graph

    rng = np.random.default_rng(4)
    engine = FlatEngine(hnsw=True, M=16)
    engine.add(unit(rng.standard_normal((500, 16))))
    engine.save(tmp_path / "v")
    opened = FlatEngine.load(tmp_path / "v", 500, hnsw=True, M=16)
    assert read_graph(tmp_path / "v" / GRAPH_FILE, opened) is not None  # written here: trusted
    monkeypatch.setenv("DSE_CACHE_DIR", str(tmp_path / "another-machine"))
    assert read_graph(tmp_path / "v" / GRAPH_FILE, opened) is None
    assert len(opened.search(unit(rng.standard_normal((2, 16))), 3)[1][0]) == 3  # rebuilt from the shards


def test_filtered_maxsim_counts_the_gathered_tokens_in_its_memory_budget() -> None:
    """A sparse filter gathers the allowed pages' tokens: that copy and the scores both fit `block_mb`."""
    rng = np.random.default_rng(11)
    pages = [unit(rng.standard_normal((int(t), DIM))) for t in rng.integers(5, 30, size=300)]
    queries = [unit(rng.standard_normal((6, DIM))) for _ in range(3)]
    engine = MaxSimEngine(block_mb=0.02)
    engine.add(pages)
    allowed = np.zeros(len(pages), bool)
    allowed[rng.choice(len(pages), 60, replace=False)] = True  # < half: the gathered path
    limit = engine.block_mb * 2**20
    seg = engine._segments[0]
    blocks = list(engine._gathered(seg, np.flatnonzero(allowed), 18))
    assert len(blocks) > 1
    for rows, sub in blocks:
        used = sub.tokens.nbytes + 18 * sub.tokens.shape[0] * 4  # the gathered copy + the score block
        assert used <= limit or len(rows) == 1
    scores, rows = engine.search(queries, 5, allowed=allowed)
    full = engine.score(queries)  # (nq, n) oracle
    full[:, ~allowed] = -np.inf
    want = np.argsort(-full, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(rows, want)
    np.testing.assert_allclose(scores, np.take_along_axis(full, want, 1), rtol=1e-5)
