"""Single-vector binary / int8 search with exact rescoring, against exact inner-product search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dse.engines.results import topk
from dse.kernels import hamming_scores, int8_scores, top_hamming
from dse.engines.quantize import int8_encode, pack_signs
from dse.engines.quantized.engine import QuantizedFlatEngine

DIM = 96


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def corpus(rng: np.random.Generator, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit rows (n, DIM) and 20 queries near some of them (20, DIM)."""
    centres = unit(rng.standard_normal((40, DIM)))
    rows = unit(centres[rng.integers(0, 40, n)] + 0.7 * rng.standard_normal((n, DIM)) / np.sqrt(DIM))
    queries = unit(rows[rng.integers(0, n, 20)] + 0.5 * rng.standard_normal((20, DIM)) / np.sqrt(DIM))
    return rows, queries


def test_kernels_equal_numpy() -> None:
    rng = np.random.default_rng(0)
    x, q = rng.standard_normal((300, DIM)), rng.standard_normal((3, DIM))
    signs_x, signs_q = np.where(x > 0, 1, -1), np.where(q > 0, 1, -1)
    np.testing.assert_array_equal(hamming_scores(pack_signs(q), pack_signs(x), DIM), signs_q @ signs_x.T)
    codes, scales = int8_encode(x)
    want = q.astype(np.float32) @ (codes.astype(np.float32) * scales[:, None]).T  # (3, 300)
    np.testing.assert_allclose(int8_scores(q, codes, scales), want, rtol=1e-4, atol=1e-4)
    scores = np.array([5, -3, 5, 7, 7, 1], np.int32)
    allowed = np.array([True, True, True, True, False, True])
    assert list(top_hamming(scores, allowed, 8, 3)) == [0, 2, 3]  # ties: lower rows first
    assert sorted(top_hamming(scores, allowed, 8, 10)) == [0, 1, 2, 3, 5]


@pytest.mark.parametrize("mode", ["binary", "int8"])
def test_recall_against_exact_and_exact_mode(mode: str) -> None:
    rng = np.random.default_rng(1)
    rows, queries = corpus(rng)
    want = topk(queries @ rows.T, 10)[1]  # (20, 10)
    engine = QuantizedFlatEngine(mode=mode, n_candidates=200)
    engine.add(rows[:1200])
    engine.add(rows[1200:])
    scores, got = engine.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)])
    assert recall >= 0.95, recall
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ rows.T, got, axis=1), rtol=1e-5)
    exact_scores, exact_rows = engine.search(queries, 10, n_candidates=0)
    np.testing.assert_array_equal(exact_rows, want)


def test_allowed_mask_and_errors() -> None:
    rng = np.random.default_rng(2)
    rows, queries = corpus(rng, 500)
    engine = QuantizedFlatEngine(mode="binary", n_candidates=20)
    engine.add(rows)
    allowed = np.zeros(500, bool)
    allowed[::7] = True
    _, got = engine.search(queries, 15, allowed=allowed)
    assert got.shape == (20, 15) and allowed[got].all()
    few = np.zeros(500, bool)
    few[[3, 9]] = True
    assert sorted(engine.search(queries[:1], 10, allowed=few)[1][0]) == [3, 9]
    with pytest.raises(ValueError, match="allowed must be a bool array"):
        engine.search(queries, 5, allowed=np.ones(3, bool))
    with pytest.raises(ValueError, match="mode must be one of"):
        QuantizedFlatEngine(mode="pq")
    with pytest.raises(ValueError, match="expects dim 96"):
        engine.add(np.ones((2, 5), np.float32))


@pytest.mark.parametrize("mode", ["binary", "int8"])
def test_save_load_append_and_interrupted_add(mode: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rows, queries = corpus(rng, 60)
    a, b, c, extra = rows[:20], rows[20:30], rows[30:40], rows[40:60]

    def built(data: np.ndarray) -> QuantizedFlatEngine:
        engine = QuantizedFlatEngine(mode=mode, n_candidates=8)
        engine.add(data)
        return engine

    def same(x: QuantizedFlatEngine, y: QuantizedFlatEngine) -> None:
        for got, want in zip(x.search(queries, 5), y.search(queries, 5)):
            np.testing.assert_array_equal(got, want)

    d = tmp_path / "vectors"
    engine = built(a)
    engine.save(d)
    loaded = QuantizedFlatEngine.load(d, rows=20, **engine.options())
    assert loaded.options() == engine.options()
    same(loaded, built(a))
    loaded.add(extra)
    loaded.save(d)  # never committed by the catalogue
    (d / ".shard-000003.vectors.npy.7.tmp").write_bytes(b"half")
    engine = QuantizedFlatEngine.load(d, rows=20, **engine.options())
    engine.add(b)
    engine.save(d)
    assert not list(d.glob(".*"))
    same(QuantizedFlatEngine.load(d, rows=30, **engine.options()), built(np.concatenate([a, b])))
    engine = QuantizedFlatEngine.load(d, rows=25, **engine.options())
    engine.add(c)
    engine.save(d)
    same(QuantizedFlatEngine.load(d, rows=35, **engine.options()), built(np.concatenate([a, b[:5], c])))
    with pytest.raises(ValueError, match="holds 35 rows on disk, expected 36"):
        QuantizedFlatEngine.load(d, rows=36, **engine.options())


def test_index_directory_with_binary_mode(tmp_path: Path) -> None:
    from dse.storage.page_index import PageIndex

    describe = {"name": "tiny-dse", "kind": "single", "model": "m", "dim": DIM, "prompt_version": 1, "options": {}}
    index = PageIndex.create(tmp_path / "idx", describe, {"mode": "binary", "n_candidates": 64})
    assert isinstance(index.engine, QuantizedFlatEngine)
    assert index.manifest.engine["mode"] == "binary"
