"""The cascade's residual first stage: packing, the WARP kernel and the engine, against brute-force oracles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dse.engines.cascade import residuals as cascade_residuals
from dse.engines.cascade import tokens as cascade_tokens
from dse.engines.cascade.engine import CascadeEngine
from dse.kernels import residuals as kernel
from tests.test_cascade import oracle, unit
from tests.test_cascade_tokens import PAGES, near_duplicates, random_data, recall  # noqa: F401
from tests.test_late_corpus import RealisticCorpus


@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("dim", [13, 32])
def test_pack_unpack_decodes_each_value_to_its_bucket_weight(bits: int, dim: int) -> None:
    rng = np.random.default_rng(bits * dim)
    r = rng.standard_normal((50, dim)).astype(np.float32) * 0.1  # (50, dim)
    cutoffs, weights = kernel.buckets(r, bits)
    assert cutoffs.shape == ((1 << bits) - 1,) and weights.shape == (1 << bits,) and np.all(np.diff(cutoffs) >= 0)
    packed = kernel.pack(r, cutoffs, bits)
    assert packed.shape == (50, kernel.bytes_per_token(dim, bits)) and packed.dtype == np.uint8
    expected = weights[np.searchsorted(cutoffs, r)]  # (50, dim)
    np.testing.assert_array_equal(kernel.unpack(packed, weights, bits, dim), expected)
    q = unit(rng.standard_normal((3, dim)))  # (3, dim)
    lut = kernel.luts(q, weights, bits)  # (3, bytes, 256)
    via_lut = np.array([[lut[i, np.arange(packed.shape[1]), packed[t]].sum() for t in range(50)] for i in range(3)])
    np.testing.assert_allclose(via_lut, q @ expected.T, atol=1e-5)


@pytest.mark.parametrize("bits", [2, 4])
def test_warp_scores_equal_the_brute_force_formula(bits: int) -> None:
    rng = np.random.default_rng(bits)
    dim, k, n_pages, qt, n_probe = 16, 12, 40, 5, 3
    centroids = unit(rng.standard_normal((k, dim)))  # (k, dim)
    offsets = np.concatenate([[0], np.cumsum(rng.integers(1, 9, n_pages))]).astype(np.int64)  # (pages + 1,)
    tokens = unit(rng.standard_normal((int(offsets[-1]), dim)))  # (T, dim)
    assigned = np.argmax(tokens @ centroids.T, axis=1).astype(np.int32)  # (T,)
    res = cascade_residuals.encode(centroids, tokens, offsets, assigned, bits)
    q = unit(rng.standard_normal((qt, dim)))  # (qt, dim)
    sim = (q @ centroids.T).astype(np.float32)  # (qt, k)
    probe = np.argsort(-sim, axis=1)[:, :n_probe].astype(np.int64)  # (qt, p)
    impute = np.sort(sim, axis=1)[:, -n_probe - 1].astype(np.float32)  # (qt,)
    allowed = rng.random(n_pages) < 0.8
    got = kernel.warp_scores(np.take_along_axis(sim, probe, axis=1), probe, impute, res.offsets, res.pages, res.codes,
                             kernel.luts(q, res.weights, bits), allowed)
    # oracle: decode every token in its centroid's list, in plain Python
    decoded = kernel.unpack(res.codes, res.weights, bits, dim)  # (T, dim) in list order
    lists = np.repeat(np.arange(k), np.diff(res.offsets))  # (T,)
    want = np.full(n_pages, -np.inf, np.float32)
    for p in np.flatnonzero(allowed):
        total = 0.0
        for i in range(qt):
            best = -np.inf
            for e in np.flatnonzero(res.pages == p):
                if lists[e] in probe[i]:
                    best = max(best, sim[i, lists[e]] + float(q[i] @ decoded[e]))
            total += max(best, impute[i])
        want[p] = total
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the residual lists hold every token once, each in its own centroid's list, pages ascending within one
    assert len(res.pages) == len(tokens) and np.array_equal(np.sort(lists), np.sort(assigned))
    for c in range(k):
        assert np.all(np.diff(res.pages[res.offsets[c] : res.offsets[c + 1]]) >= 0)


def test_rows_and_concat_keep_each_tokens_residual() -> None:
    rng = np.random.default_rng(3)
    dim, k = 8, 6
    centroids = unit(rng.standard_normal((k, dim)))
    offsets = np.arange(0, 61, 3, dtype=np.int64)  # 20 pages of 3 tokens
    tokens = unit(rng.standard_normal((60, dim)))
    assigned = np.argmax(tokens @ centroids.T, axis=1).astype(np.int32)
    whole = cascade_residuals.encode(centroids, tokens, offsets, assigned, 2)
    head, tail = whole.rows(0, 8), whole.rows(8, 20)
    again = cascade_residuals.concat([head, tail], [8, 12])
    for a, b in ((whole.offsets, again.offsets), (whole.pages, again.pages), (whole.codes, again.codes)):
        np.testing.assert_array_equal(a, b)
    part = cascade_residuals.encode(centroids, tokens[24:], offsets[8:] - 24, assigned[24:], 2, like=whole)
    np.testing.assert_array_equal(part.codes, tail.codes)  # shared buckets: the same codes
    other = cascade_residuals.encode(centroids, tokens[24:], offsets[8:] - 24, assigned[24:], 2)
    assert cascade_residuals.concat([head, other], [8, 12]) is None or other.key == head.key


def test_exhaustive_probe_scores_the_decoded_tokens_and_n_probe_0_is_exact(random_data) -> None:  # noqa: F811
    pages, queries = random_data
    engine = CascadeEngine()
    engine.add(pages)
    assert engine.knobs()["stage"] == "residual"
    exact = oracle(queries, pages)  # (nq, n)
    scores, rows = engine.search(queries, 10, n_probe=0)
    np.testing.assert_array_equal(rows, np.argsort(-exact, axis=1, kind="stable")[:, :10])
    np.testing.assert_allclose(scores, np.sort(exact, axis=1)[:, ::-1][:, :10], atol=2e-2)
    # every centroid probed: the shortlist is the exact top of the decoded tokens' MaxSim
    seg = engine._segments[0]
    res, book = seg.tok.res, seg.tok.codebook
    decoded = kernel.unpack(res.codes, res.weights, res.bits, seg.exact.shape[1])  # (T, dim) in list order
    lists = np.repeat(np.arange(len(book.centroids)), np.diff(res.offsets))
    approx_tokens = book.centroids[lists] + decoded  # (T, dim)
    by_page = [approx_tokens[res.pages == p] for p in range(len(pages))]
    approx = oracle(queries, by_page)  # (nq, n)
    from dse.engines.cascade import warp

    mask = np.ones(len(pages), np.bool_)
    for j, q in enumerate(queries):
        got = np.sort(warp.shortlist(engine, q, mask, len(book.centroids), 20))
        want = np.sort(np.argsort(-approx[j], kind="stable")[:20])
        assert len(set(got.tolist()) & set(want.tolist())) >= 19  # float ties at the 20th place aside


def test_residual_stage_recall_on_near_duplicates(near_duplicates) -> None:  # noqa: F811
    pages, queries = near_duplicates
    engine = CascadeEngine(n_shortlist=20)
    engine.add(pages)
    exact = oracle(queries, pages)
    _, rows = engine.search(queries, 10)
    assert recall(rows, exact) >= 0.9


def test_residual_stage_beats_centroid_tokens_on_a_small_realistic_corpus() -> None:
    corpus = RealisticCorpus(2048, seed=1, tokens=64, dim=64, vocab=4096, word_clusters=256, doc_pages=16)
    pages = [corpus.page(i) for i in range(corpus.n)]
    targets = np.random.default_rng(7).choice(corpus.n, 16, replace=False)
    queries = [corpus.query(int(t)) for t in targets]
    exact = oracle(queries, pages)
    found = {}
    for bits in (0, 2):
        engine = CascadeEngine(residual_bits=bits)
        for a in range(0, corpus.n, 1024):
            engine.add(pages[a : a + 1024])
        found[bits] = recall(engine.search(queries, 10)[1], exact)
        assert engine.knobs()["stage"] == ("residual" if bits else "tokens")
    assert found[2] >= 0.95 and found[2] >= found[0]


def test_save_load_and_a_cut_keep_the_residual_lists(tmp_path: Path, random_data) -> None:  # noqa: F811
    from dse.engines.files import shard_path

    pages, queries = random_data
    engine = CascadeEngine(n_shortlist=30)
    engine.add(pages)
    engine.save(tmp_path)
    for suffix in cascade_residuals.FILES:
        assert shard_path(tmp_path, 1, suffix).exists()
    loaded = CascadeEngine.load(tmp_path, rows=len(pages), **engine.options())
    assert loaded.knobs()["stage"] == "residual"
    for a, b in zip(engine.search(queries, 10), loaded.search(queries, 10)):
        np.testing.assert_array_equal(a, b)
    keep = PAGES - 40
    before = shard_path(tmp_path, 1, ".tok-res-codes.npy").stat().st_size
    loaded._truncate_shard(tmp_path, 1, keep)  # the cut leaves the residual files as a superset
    assert shard_path(tmp_path, 1, ".tok-res-codes.npy").stat().st_size == before
    cut = CascadeEngine.load(tmp_path, rows=keep, **engine.options())
    want = engine._segments[0].tok.res.rows(0, keep)
    got = cut._segments[0].tok.res
    for a, b in ((want.offsets, got.offsets), (want.pages, got.pages), (want.codes, got.codes)):
        np.testing.assert_array_equal(a, b)
    mask = np.zeros(len(pages), np.bool_)
    mask[:keep] = True
    for a, b in zip(engine.search(queries, 10, allowed=mask), cut.search(queries, 10)):
        np.testing.assert_array_equal(a, b)


def test_an_index_without_residuals_keeps_the_token_stage_and_takes_new_pages(tmp_path: Path, random_data) -> None:  # noqa: F811
    pages, queries = random_data
    old = CascadeEngine(residual_bits=0)
    old.add(pages)
    old.save(tmp_path)
    opened = CascadeEngine.load(tmp_path, rows=len(pages), **{**old.options(), "residual_bits": 2})
    assert opened.knobs()["stage"] == "tokens"
    opened.add(pages[:50])  # new pages get residual lists; the index keeps the stage every segment has
    assert opened._segments[-1].tok is not None and opened.knobs()["stage"] == "tokens"
    assert opened.search(queries, 10)[1].shape == (len(queries), 10)
    with pytest.raises(ValueError, match="residual_bits"):
        CascadeEngine(residual_bits=3)
    assert cascade_tokens.MAX_CENTROIDS >= 16384
