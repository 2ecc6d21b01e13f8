"""The multi-vector cascade engine, its kernels and codecs, against brute-force oracles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dse.engines.results import topk
from dse.engines.cascade.engine import CascadeEngine
from dse.engines.registry import engine_for
from dse.kernels import hamming_maxsim, kmeans_pages, maxsim_rows
from dse.engines.quantize import coarse_tokens, int8_decode, int8_encode, pack_signs, pool_tokens

DIM = 32


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered_pages(rng: np.random.Generator, n: int, dim: int = DIM) -> list[np.ndarray]:
    """Pages of 10-40 tokens around 4 page centroids each (like patch embeddings)."""
    out = []
    for _ in range(n):
        centroids = unit(rng.standard_normal((4, dim)))  # (4, dim)
        t = int(rng.integers(10, 40))
        out.append(unit(centroids[rng.integers(0, 4, t)] + 0.3 * rng.standard_normal((t, dim)) / np.sqrt(dim)))
    return out


def oracle(qs: list[np.ndarray], ps: list[np.ndarray]) -> np.ndarray:
    """MaxSim float64 (nq, n_pages) by loops."""
    return np.array([[(q.astype(np.float64) @ p.astype(np.float64).T).max(axis=1).sum() for p in ps] for q in qs])


def hamming_oracle(q_bits: np.ndarray, pages: list[np.ndarray], dim: int) -> np.ndarray:
    """sum_i max_j (dim - 2 * hamming) by numpy bit counting: int (n_pages,)."""
    out = []
    for p in pages:
        xor = q_bits[:, None, :] ^ p[None, :, :]  # (qt, t, words)
        ham = np.unpackbits(xor.view(np.uint8), axis=-1).sum(axis=-1).astype(np.int64)  # (qt, t)
        out.append(int((dim - 2 * ham).max(axis=1).sum()) if len(p) else 0)
    return np.array(out)


def queries_near(rng: np.random.Generator, pages: list[np.ndarray], targets: list[int]) -> list[np.ndarray]:
    return [unit(pages[t][:6] + 0.2 * rng.standard_normal((6, pages[t].shape[1])) / np.sqrt(DIM)) for t in targets]


@pytest.mark.parametrize("dim", [128, 100, 200])
def test_binary_kernel_equals_numpy_reference(dim: int) -> None:
    rng = np.random.default_rng(dim)
    pages = [pack_signs(rng.standard_normal((int(rng.integers(0, 30)), dim))) for _ in range(25)]
    q = pack_signs(rng.standard_normal((7, dim)))  # (7, words)
    bits = np.concatenate(pages)  # (T, words)
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in pages])])  # (26,)
    got = hamming_maxsim(np.concatenate([q, q[:3]]), np.array([0, 7, 10]), bits, offsets, dim)  # (2, 25)
    want = hamming_oracle(q, pages, dim)
    assert got.shape == (2, 25)
    np.testing.assert_array_equal(got[0], np.where([len(p) for p in pages], want, 0))
    np.testing.assert_array_equal(got[1], np.where([len(p) for p in pages], hamming_oracle(q[:3], pages, dim), 0))
    subset = np.array([4, 0, 9])
    np.testing.assert_array_equal(hamming_maxsim(q, np.array([0, 7]), bits, offsets, dim, subset)[0], got[0][subset])


def test_pack_signs_and_codecs_roundtrip() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 130)).astype(np.float32)  # (50, 130)
    bits = pack_signs(x)  # (50, 3)
    assert bits.shape == (50, 3) and bits.dtype == np.uint64
    unpacked = np.unpackbits(bits.view(np.uint8), axis=1, bitorder="little")[:, :130]  # (50, 130)
    np.testing.assert_array_equal(unpacked.astype(bool), x > 0)
    codes, scales = int8_encode(x)
    assert codes.dtype == np.int8 and scales.shape == (50,)
    assert (np.abs(int8_decode(codes, scales) - x) <= scales[:, None] / 2 + 1e-6).all()
    assert (np.abs(x.astype(np.float16).astype(np.float32) - x) <= np.abs(x) * 2.0**-11 + 1e-7).all()
    zero_codes, zero_scales = int8_encode(np.zeros((2, 4)))
    assert not zero_codes.any() and not zero_scales.any()


def test_quantized_maxsim_kernel_equals_numpy() -> None:
    rng = np.random.default_rng(2)
    pages = clustered_pages(rng, 12)
    tokens = np.concatenate(pages)  # (T, dim)
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in pages])])
    qs = queries_near(rng, pages, [0, 5])
    q_offsets = np.array([0, 6, 12])
    codes, scales = int8_encode(tokens)
    decoded = [int8_decode(codes[a:b], scales[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
    got = maxsim_rows(np.concatenate(qs), q_offsets, codes, scales, offsets)  # (2, 12)
    np.testing.assert_allclose(got, oracle(qs, decoded), rtol=1e-5, atol=1e-5)
    got32 = maxsim_rows(np.concatenate(qs), q_offsets, tokens, np.ones(len(tokens), np.float32), offsets)
    np.testing.assert_allclose(got32, oracle(qs, pages), rtol=1e-5, atol=1e-5)


def test_token_pooling_reduces_by_the_factor_and_keeps_scores_close() -> None:
    rng = np.random.default_rng(3)
    pages = clustered_pages(rng, 10)
    qs = queries_near(rng, pages, [1, 4, 7])
    for factor in (2, 3):
        pooled = [pool_tokens(p, factor) for p in pages]
        assert [len(p) for p in pooled] == [len(p) // factor for p in pages]
        full, small = oracle(qs, pages), oracle(qs, pooled)
        # cluster means score a little below the best single token; the queries' own pages stay on top
        assert (np.abs(small - full) <= 0.2 * full.max(axis=1, keepdims=True)).all()
        assert (small.argmax(axis=1) == full.argmax(axis=1)).all()
    np.testing.assert_array_equal(pool_tokens(pages[0], 1), pages[0])
    tokens = np.concatenate(pages[:3])  # (T, dim)
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in pages[:3]])])
    centroids, c_offsets = kmeans_pages(tokens, offsets, 4)  # compiled per-page k-means = numpy reference
    np.testing.assert_array_equal(c_offsets, [0, 4, 8, 12])
    np.testing.assert_allclose(centroids[4:8], coarse_tokens(pages[1], 4), atol=1e-5)
    with pytest.raises(ValueError, match="pool factor"):
        pool_tokens(pages[0], 0)


@pytest.mark.parametrize("exact_dtype", ["float16", "int8"])
def test_cascade_with_enough_candidates_equals_exact_maxsim(exact_dtype: str) -> None:
    rng = np.random.default_rng(4)
    pages = clustered_pages(rng, 120)
    qs = queries_near(rng, pages, [3, 50, 99, 119])
    engine = CascadeEngine(exact_dtype=exact_dtype, coarse_tokens=4, n_coarse=40, n_refine=20, n_candidates=15)
    engine.add(pages[:70])
    engine.add(pages[70:])
    codes = [p.astype(np.float16).astype(np.float32) if exact_dtype == "float16" else int8_decode(*int8_encode(p))
             for p in pages]
    want_scores, want_rows = topk(oracle(qs, codes).astype(np.float32), 10)
    for n_coarse, n_candidates in ((0, 0), (120, 120), (0, 120)):
        scores, rows = engine.search(qs, 10, n_coarse=n_coarse, n_candidates=n_candidates)
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-4)
    # the default (pruned) cascade finds each query's own page first, and is close to float32 MaxSim
    scores, rows = engine.search(qs, 10)
    assert list(rows[:, 0]) == [3, 50, 99, 119]
    np.testing.assert_allclose(scores[:, 0], oracle(qs, pages)[np.arange(4), rows[:, 0]], atol=0.05)


def test_allowed_mask_is_respected() -> None:
    rng = np.random.default_rng(5)
    pages = clustered_pages(rng, 60)
    qs = queries_near(rng, pages, [0, 10])
    engine = CascadeEngine(coarse_tokens=4, n_coarse=8, n_refine=6, n_candidates=4)
    engine.add(pages)
    allowed = np.zeros(60, bool)
    allowed[1::3] = True  # 20 rows, not the targets
    scores, rows = engine.search(qs, 12, allowed=allowed)
    assert rows.shape == (2, 12) and allowed[rows].all() and len(set(rows[0])) == 12
    few = np.zeros(60, bool)
    few[[5, 40, 59]] = True
    assert sorted(engine.search(qs, 10, allowed=few)[1][0]) == [5, 40, 59]
    assert engine.search(qs, 10, allowed=np.zeros(60, bool))[1].shape == (2, 0)
    assert engine.search(qs, 10, allowed=allowed, n_coarse=2, n_candidates=0)[1].shape == (2, 10)  # depth >= k
    with pytest.raises(ValueError, match="allowed must be a bool array"):
        engine.search(qs, 5, allowed=np.ones(59, bool))


@pytest.mark.parametrize("options", [{"exact_dtype": "float16"}, {"exact_dtype": "int8", "pool_factor": 2}])
def test_save_load_append_and_interrupted_add(options: dict, tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    a, b, c, extra = (clustered_pages(rng, n) for n in (10, 6, 4, 9))
    qs = queries_near(rng, a, [0, 3])
    options = {"coarse_tokens": 4, "n_coarse": 0, "n_candidates": 0, **options}

    def built(data: list[np.ndarray]) -> CascadeEngine:
        engine = CascadeEngine(**options)
        engine.add(data)
        return engine

    def same(x: CascadeEngine, y: CascadeEngine) -> None:
        for got, want in zip(x.search(qs, 30), y.search(qs, 30)):
            np.testing.assert_array_equal(got, want)

    d = tmp_path / "vectors"
    engine = built(a)
    engine.save(d)
    engine.save(d)  # nothing new: no new shard
    assert len(list(d.glob("shard-*.offsets.npy"))) == 1
    loaded = CascadeEngine.load(d, rows=10, **engine.options())
    assert loaded.options() == engine.options()
    same(loaded, built(a))
    loaded.add(extra)
    loaded.save(d)  # an add the catalogue never committed
    (d / ".shard-000003.bits.npy.1.tmp").write_bytes(b"half written")
    (d / "shard-000003.bits.npy").write_bytes(b"bits without offsets: not committed")
    engine = CascadeEngine.load(d, rows=10, **options)
    same(engine, built(a))
    engine.add(b)
    engine.save(d)  # cleans shard 2 and the stray files, then appends
    assert not list(d.glob(".*")) and not (d / "shard-000003.bits.npy").exists()
    same(CascadeEngine.load(d, rows=16, **options), built(a + b))
    engine = CascadeEngine.load(d, rows=13, **options)  # ends inside shard 2
    same(engine, built(a + b[:3]))
    engine.add(c)
    engine.save(d)
    same(CascadeEngine.load(d, rows=17, **options), built(a + b[:3] + c))
    with pytest.raises(ValueError, match="holds 17 rows on disk, expected 18"):
        CascadeEngine.load(d, rows=18, **options)
    with pytest.raises(ValueError, match="not a"):
        CascadeEngine.load(d, rows=17, **{**options, "exact_dtype": "int8" if options["exact_dtype"] == "float16"
                                           else "float16"})


def test_bad_options_and_inputs() -> None:
    with pytest.raises(ValueError, match="exact_dtype"):
        CascadeEngine(exact_dtype="int4")
    with pytest.raises(ValueError, match="n_candidates"):
        CascadeEngine(n_candidates=-1)
    with pytest.raises(ValueError, match="n_refine must be an integer >= 0"):
        CascadeEngine(n_refine=-1)
    with pytest.raises(ValueError, match="n_shortlist must be an integer >= 1"):
        CascadeEngine(n_shortlist=0)
    with pytest.raises(ValueError, match="n_probe"):
        CascadeEngine(n_probe=1.5)
    engine = CascadeEngine(dim=DIM)
    with pytest.raises(ValueError, match="has dim 5"):
        engine.add([np.ones((3, 5), np.float32)])
    assert engine.search([np.ones((2, DIM), np.float32)], 3)[1].shape == (1, 0)


def test_engine_selection_from_manifest_options() -> None:
    from dse.engines.flat.engine import FlatEngine
    from dse.engines.maxsim import MaxSimEngine
    from dse.engines.quantized.engine import QuantizedFlatEngine

    assert engine_for("multi", {"mode": "cascade"}) is CascadeEngine
    assert engine_for("multi", {"dim": 4}) is MaxSimEngine
    assert engine_for("single", {"mode": "binary"}) is QuantizedFlatEngine
    assert engine_for("single", {"mode": "int8"}) is QuantizedFlatEngine
    assert engine_for("single", {"hnsw": True}) is FlatEngine
    with pytest.raises(ValueError, match="unknown engine mode 'cascade' for single"):
        engine_for("single", {"mode": "cascade"})
    engine = CascadeEngine(pool_factor=2)
    assert engine_for("multi", engine.options()) is CascadeEngine


def test_retriever_end_to_end_in_cascade_mode(tmp_path: Path, corpus: Path) -> None:
    from dse import Retriever, load_encoder

    encoder = load_encoder("tiny-colqwen2", batch_size=4)
    options = {"mode": "cascade", "coarse_tokens": 4, "n_coarse": 0, "n_candidates": 0}  # exhaustive
    with Retriever.create(tmp_path / "idx", encoder, engine=options) as r:
        r.add(corpus, dpi=40)
        assert isinstance(r.index.engine, CascadeEngine)
    with Retriever.open(tmp_path / "idx") as reopened:  # engine chosen from the manifest
        engine = reopened.index.engine
        assert isinstance(engine, CascadeEngine) and reopened.index.manifest.engine["mode"] == "cascade"
        hits = reopened.search("wiring the inverter", k=5)
        q = reopened.encoder.encode_queries(["wiring the inverter"])  # list of (tokens, dim)
        assert engine.search(q, 5, n_coarse=6, n_candidates=3)[1].shape == (1, 5)  # pruned stages run too
    # brute force over the stored float16 tier, all pages: the cascade's exhaustive stage agrees
    pages = [np.asarray(seg.exact[a:b], np.float32) for seg in engine._segments
             for a, b in zip(seg.offsets[:-1], seg.offsets[1:])]
    want = np.sort(oracle(q, pages)[0])[::-1][:5]
    assert len(hits) == 5 and [h.rank for h in hits] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([h.score for h in hits], want, rtol=1e-4, atol=1e-4)
