"""A token codebook that grows with the index: its size rule, the query's centroid probe past 16384
centroids (against brute force), assignment, and an engine searching such a codebook."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dse.engines.cascade import centroids as cascade_centroids
from dse.engines.cascade import retrain as cascade_retrain
from dse.engines.cascade import tokens as cascade_tokens
from dse.engines.cascade.engine import CascadeEngine
from dse.kernels.postings import similarities
from tests.test_cascade import oracle
from tests.test_cascade_tokens import DIM, noise, recall, unit

EXHAUSTIVE = {"n_probe": 0, "n_coarse": 0, "n_candidates": 0}


def old_rule(n_tokens: int) -> int:
    """The codebook size before it could grow past 16384: a power of two near n / 64 in [64, 16384]."""
    return int(min(1 << int(np.round(np.log2(max(n_tokens // 64, 64)))), 16384))


def brute(sim: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """The p best centroids of each query token (as sorted ids) and the (p+1)-th best similarity."""
    order = np.argsort(-sim, axis=1, kind="stable")  # (qt, K)
    return np.sort(order[:, :p], axis=1), np.take_along_axis(sim, order[:, p : p + 1], axis=1)[:, 0]


def codebook_like(rng: np.random.Generator, k: int, dim: int = DIM) -> np.ndarray:
    """k unit centroids around k / 16 centres, as a k-means codebook of clustered tokens is: (k, dim)."""
    centres = unit(rng.standard_normal((max(k // 16, 1), dim)))
    return unit(centres[rng.integers(0, len(centres), k)] + 0.5 * rng.standard_normal((k, dim)) / np.sqrt(dim))


def queries_near(rng: np.random.Generator, book: np.ndarray, n: int) -> np.ndarray:
    dim = book.shape[1]
    return unit(book[rng.integers(0, len(book), n)] + 0.6 * rng.standard_normal((n, dim)) / np.sqrt(dim))


def test_the_size_rule_keeps_n_over_64_up_to_16384_then_grows_like_plaid() -> None:
    sizes = [0, 1000, 64 * 1024, 741_000, 10**6, 4_000_000, 4_194_303, 4_194_304, 15_360_000, 76_800_000,
             128_000_000, 768_000_000, 10**12]
    for n in sizes:
        assert cascade_tokens.centroids_for(n, cap=16384) == old_rule(n)  # the cap of old indexes: the old rule
        assert cascade_tokens.centroids_for(n) == old_rule(n)  # the default cap keeps the old rule
        if n < 4_194_304:
            assert cascade_tokens.centroids_for(n, 262144) == old_rule(n)  # below 4.2M tokens nothing changes
    # 20k / 100k pages x 768 tokens, 1M x 128, 1M x 768: PLAID's 2**floor(log2(16 sqrt(n)))
    assert [cascade_tokens.centroids_for(n, 262144) for n in (4_194_304, 15_360_000, 76_800_000, 128_000_000)] == [
        32768, 32768, 131072, 131072]
    assert cascade_tokens.centroids_for(768_000_000, 262144) == 262144
    assert cascade_tokens.centroids_for(10**12, 262144) == 262144
    assert cascade_tokens.centroids_for(10**12) == cascade_tokens.MAX_CENTROIDS == 16384  # the default cap
    assert cascade_tokens.centroids_for(76_800_000, cap=65536) == 65536
    grown = [cascade_tokens.centroids_for(int(n), 262144) for n in np.logspace(3, 12, 200)]
    assert grown == sorted(grown)
    assert cascade_tokens.sample_size(76_800_000, 262144) == 2**21 and cascade_tokens.sample_size(15_360_000, 262144) == 32768 * 16
    assert cascade_tokens.sample_size(76_800_000) == 16384 * 16  # the default cap
    for bad in (1000, 32, 2**21, True, 64.0, "16384"):
        with pytest.raises(ValueError, match="max_centroids must be a power of two"):
            cascade_tokens.check_cap(bad)


def test_up_to_16384_centroids_the_probe_is_the_exact_one() -> None:
    rng = np.random.default_rng(1)
    for k in (300, 16384):
        book = codebook_like(rng, k)
        q = queries_near(rng, book, 7)  # (7, DIM)
        top_sim, top, impute = cascade_centroids.probe(f"exact-{k}", book, q, 32)
        sim = q @ book.T  # (7, k)
        ids, nxt = brute(sim, 32)
        assert np.array_equal(np.sort(top, axis=1), ids)
        np.testing.assert_allclose(top_sim, np.take_along_axis(sim, top, axis=1), atol=1e-5)
        np.testing.assert_allclose(impute, nxt, atol=1e-5)
        dense = similarities(q, book)  # what the probe did before the codebook could grow: bit for bit
        part = np.argpartition(-dense, 32, axis=1)
        assert np.array_equal(top, part[:, :32]) and np.array_equal(top_sim, np.take_along_axis(dense, top, axis=1))
        assert np.array_equal(impute, np.take_along_axis(dense, part[:, 32:33], axis=1)[:, 0])
    top_sim, top, impute = cascade_centroids.probe("exact-all", book[:20], q, 32)  # every centroid probed
    assert top.shape == (7, 20) and np.all(impute == -np.inf)


def test_the_listed_probe_equals_brute_force_when_every_list_is_scanned_and_is_close_otherwise() -> None:
    rng = np.random.default_rng(2)
    book = codebook_like(rng, 4096)  # 64 lists of about 64
    q = queries_near(rng, book, 32)  # (32, DIM)
    lists = cascade_centroids.lists_of("listed-4096", book)
    assert len(lists.coarse) == 64 and np.array_equal(np.sort(lists.members), np.arange(4096))
    sim = q @ book.T  # (32, 4096)
    ids, nxt = brute(sim, 32)
    top_sim, top, impute = cascade_centroids.listed_probe(lists, book, q, 32, 64)  # all 64 lists
    assert np.array_equal(np.sort(top, axis=1), ids)
    np.testing.assert_allclose(impute, nxt, atol=1e-5)
    top_sim, top, impute = cascade_centroids.listed_probe(lists, book, q, 32, 16)  # 16 of 64 lists
    found = np.mean([len(set(a) & set(b)) / 32 for a, b in zip(top, ids)])
    assert found >= 0.9
    np.testing.assert_allclose(top_sim, np.take_along_axis(sim, top, axis=1), atol=1e-5)  # exact similarities
    assert all(len(set(row)) == 32 for row in top)
    assert np.all(impute <= nxt + 1e-5)  # never above the exact estimate ...
    assert np.all(impute <= top_sim.min(axis=1) + 1e-6)  # ... nor above a probed centroid
    # a query token whose scanned lists hold n_probe centroids or fewer is probed exactly
    top_sim, top, impute = cascade_centroids.listed_probe(lists, book, q, 500, 1)
    ids, nxt = brute(sim, 500)
    assert np.array_equal(np.sort(top, axis=1), ids)
    np.testing.assert_allclose(impute, nxt, atol=1e-5)


def test_past_16384_centroids_queries_probe_and_tokens_are_assigned_through_lists() -> None:
    rng = np.random.default_rng(3)
    book = cascade_tokens.Codebook.of(codebook_like(rng, 32768))
    q = queries_near(rng, book.centroids, 32)  # (32, DIM)
    top_sim, top, impute = cascade_centroids.probe(book.key, book.centroids, q, 32)
    sim = q @ book.centroids.T  # (32, 32768)
    ids, nxt = brute(sim, 32)
    assert np.mean([len(set(a) & set(b)) / 32 for a, b in zip(top, ids)]) >= 0.9
    assert np.all(impute <= nxt + 1e-5) and np.all(impute <= top_sim.min(axis=1) + 1e-6)
    lists = cascade_centroids.lists_of(book.key, book.centroids)
    assert lists.nbytes == cascade_centroids.lists_nbytes(32768, DIM) and len(lists.coarse) == 512
    tokens = unit(book.centroids[rng.integers(0, 32768, 3000)] + noise(rng, 3000, 0.3))  # (3000, DIM)
    exact = np.argmax(tokens @ book.centroids.T, axis=1)  # (3000,)
    assert np.mean(cascade_tokens.assign(book, tokens) == exact) >= 0.95


def test_an_engine_searches_a_codebook_past_16384_and_reopens_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    pages = []
    for _ in range(300):
        c = unit(rng.standard_normal((4, DIM)))  # (4, DIM)
        pages.append(unit(c[rng.integers(0, 4, 24)] + noise(rng, 24, 0.4)))  # (24, DIM)
    queries = [unit(pages[t][:6] + noise(rng, 6, 0.3)) for t in rng.choice(300, 12, replace=False)]
    engine = CascadeEngine()
    engine.add(pages)
    tokens = np.concatenate(pages)  # (7200, DIM)
    big = cascade_tokens.Codebook.of(unit(tokens[rng.integers(0, len(tokens), 32768)] + noise(rng, 32768, 0.2)))
    engine._codebook, engine._like = big, None  # as a retraining of a 4.2M-token index leaves them
    assert cascade_retrain.reencode(engine, None) == 1 and engine._segments[0].tok.codebook.key == big.key
    exact = oracle(queries, pages)  # (12, 300)
    _, rows = engine.search(queries, 10)
    assert engine.knobs()["stage"] == "residual" and recall(rows, exact) >= 0.85  # 7200 tokens on 32768 centroids
    assert engine.resident_bytes() >= big.centroids.nbytes + cascade_centroids.lists_nbytes(32768, DIM)
    engine.save(tmp_path)
    opened = CascadeEngine.load(tmp_path, rows=300, **engine.options())
    opened.prepare()
    assert opened._segments[0].tok.codebook.key == big.key
    assert np.array_equal(opened.search(queries, 10)[1], rows)
    assert recall(opened.search(queries, 10, **EXHAUSTIVE)[1], exact) == 1.0


def test_max_centroids_is_an_option_old_manifests_lack_and_the_next_doubling_applies(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    pages = [unit(rng.standard_normal((24, DIM))) for _ in range(600)]  # 300 pages: 7200 tokens, 128 centroids
    capped = CascadeEngine(max_centroids=64)
    capped.add(pages[:300])
    assert len(capped._codebook.centroids) == 64 and capped.options()["max_centroids"] == 64
    capped.save(tmp_path / "capped")
    engine = CascadeEngine()
    engine.add(pages[:300])
    assert len(engine._codebook.centroids) == 128 and engine.options()["max_centroids"] == cascade_tokens.MAX_CENTROIDS
    engine.save(tmp_path / "plain")
    # an index written before the option: its manifest lacks it, so it gets the default rule
    old = {k: v for k, v in capped.options().items() if k != "max_centroids"}
    opened = CascadeEngine.load(tmp_path / "capped", rows=300, **old)
    assert opened.max_centroids == cascade_tokens.MAX_CENTROIDS and len(opened._codebook.centroids) == 64
    assert np.array_equal(opened.search(pages[:5], 10)[1], capped.search(pages[:5], 10)[1])  # opens, searches as before
    opened.add(pages[300:])  # 600 pages cross 512: the retraining moves it to the rule's size
    opened.save(tmp_path / "capped")
    assert len(opened._codebook.centroids) == cascade_tokens.centroids_for(600 * 24) == 256
    assert {seg.tok.codebook.key for seg in opened._segments} == {opened._codebook.key}
    kept = CascadeEngine.load(tmp_path / "plain", rows=300, **{**engine.options(), "max_centroids": 64})
    kept.add(pages[300:])  # a recorded cap holds at the next doubling
    assert len(kept._codebook.centroids) == 64
    with pytest.raises(ValueError, match="max_centroids"):
        CascadeEngine(max_centroids=1000)
