"""Every MaxSim of `dse.kernels.maxsim` against one brute-force oracle, and the engines that use them."""

from __future__ import annotations

import numpy as np
import pytest

from dse.engines.maxsim import MaxSimEngine
from dse.engines.quantize import int8_decode, int8_encode, pack_signs
from dse.kernels.maxsim import hamming_maxsim, maxsim_dense, maxsim_pruned, maxsim_rows
from dse.kernels.clusters import kmeans_labels

DIM = 16


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def oracle(queries: list[np.ndarray], pages: list[np.ndarray]) -> np.ndarray:
    """MaxSim float64 (nq, n_pages) by loops (a page or query without tokens scores 0)."""
    out = np.zeros((len(queries), len(pages)))
    for qi, q in enumerate(queries):
        for pi, p in enumerate(pages):
            if len(q) and len(p):
                out[qi, pi] = sum(max(float(np.dot(t.astype(np.float64), u)) for u in p.astype(np.float64)) for t in q)
    return out


@pytest.fixture(scope="module")
def data() -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(11)
    pages = [unit(rng.standard_normal((int(n), DIM))) for n in rng.integers(1, 30, size=40)]
    pages[7] = np.zeros((0, DIM), np.float32)  # a page without tokens
    queries = [unit(rng.standard_normal((int(n), DIM))) for n in (5, 1, 12)]
    return queries, pages


def stacked(items: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in items])]).astype(np.int64)
    return np.concatenate(items).astype(np.float32), offsets


def test_dense_float_and_quantized_rows_equal_the_oracle(data) -> None:  # noqa: ANN001
    queries, pages = data
    want = oracle(queries, pages)  # (nq, n)
    q_all, q_offsets = stacked(queries)
    tokens, offsets = stacked(pages)
    dense = maxsim_dense(q_all, np.diff(q_offsets), tokens, offsets, 0, len(pages))
    np.testing.assert_allclose(dense, want, rtol=1e-5, atol=1e-5)
    rows = maxsim_rows(q_all, q_offsets, tokens, np.ones(len(tokens), np.float32), offsets)
    np.testing.assert_allclose(rows, want, rtol=1e-5, atol=1e-5)
    f16 = maxsim_rows(q_all, q_offsets, tokens.astype(np.float16).astype(np.float32), np.ones(len(tokens), np.float32),
                      offsets)  # the cascade's float16 tier, as it scores it
    np.testing.assert_allclose(f16, oracle(queries, [p.astype(np.float16).astype(np.float32) for p in pages]),
                               rtol=1e-4, atol=1e-4)
    codes, scales = int8_encode(tokens)
    decoded = int8_decode(codes, scales)  # (T, dim)
    on_codes = maxsim_rows(q_all, q_offsets, codes, scales, offsets)
    np.testing.assert_allclose(on_codes, oracle(queries, [decoded[a:b] for a, b in zip(offsets[:-1], offsets[1:])]),
                               rtol=1e-4, atol=1e-4)
    subset = np.array([3, 7, 20, 39], np.int64)
    np.testing.assert_array_equal(maxsim_rows(q_all, q_offsets, codes, scales, offsets, subset), on_codes[:, subset])
    # a page range is the same sums over a smaller BLAS product: equal up to its summation order
    # (one float32 ulp seen on an AVX2-only CPU)
    np.testing.assert_allclose(maxsim_dense(q_all, np.diff(q_offsets), tokens, offsets, 3, 21),
                               dense[:, 3:21], rtol=1e-6, atol=1e-6)


def test_float16_tokens_are_scored_in_place_as_their_float32_values(data) -> None:  # noqa: ANN001
    queries, pages = data
    q_all, q_offsets = stacked(queries)
    tokens, offsets = stacked(pages)
    half = tokens.astype(np.float16)
    ones = np.ones(len(tokens), np.float32)
    subset = np.array([0, 5, 6, 39], np.int64)
    np.testing.assert_array_equal(maxsim_rows(q_all, q_offsets, half, ones, offsets, subset),
                                  maxsim_rows(q_all, q_offsets, half.astype(np.float32), ones, offsets, subset))


def test_every_finite_float16_converts_exactly() -> None:
    every = np.arange(65536, dtype=np.uint16).view(np.float16)
    finite = every[np.isfinite(every)]  # zeros, subnormals, normals, both signs
    tokens = finite[: len(finite) // DIM * DIM].reshape(-1, DIM)  # one page per token
    q = np.eye(DIM, dtype=np.float32)  # query d: the d-th coordinate of each page's token
    got = maxsim_rows(q, np.arange(DIM + 1, dtype=np.int64), tokens, np.ones(len(tokens), np.float32),
                      np.arange(len(tokens) + 1, dtype=np.int64))  # (DIM, pages)
    np.testing.assert_array_equal(got.T, tokens.astype(np.float32))


def test_the_exact_engine_scores_with_maxsim_dense(data) -> None:  # noqa: ANN001
    queries, pages = data
    engine = MaxSimEngine(dim=DIM)
    engine.add(pages)
    q_all, q_offsets = stacked(queries)
    tokens, offsets = stacked(pages)
    np.testing.assert_array_equal(engine.score(queries), maxsim_dense(q_all, np.diff(q_offsets), tokens, offsets, 0,
                                                                      len(pages)))
    scores, rows = engine.search(queries, 5)
    want = oracle(queries, pages)
    for qi in range(len(queries)):
        np.testing.assert_allclose(scores[qi], np.sort(want[qi])[::-1][:5], rtol=1e-5, atol=1e-5)


def test_hamming_maxsim_equals_the_sign_oracle(data) -> None:  # noqa: ANN001
    queries, pages = data
    signs = [np.where(p >= 0, 1.0, -1.0) for p in pages]  # +-1 tokens: their dot is dim - 2 * hamming
    q_signs = [np.where(q >= 0, 1.0, -1.0) for q in queries]
    q_all, q_offsets = stacked(queries)
    tokens, offsets = stacked(pages)
    got = hamming_maxsim(pack_signs(q_all), q_offsets, pack_signs(tokens), offsets, DIM)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, np.rint(oracle(q_signs, signs)).astype(np.int32))


def test_pruned_maxsim_is_a_lower_bound_equal_with_every_cluster(data) -> None:  # noqa: ANN001
    from dse.kernels import kmeans_pages

    queries, pages = data
    tokens, offsets = stacked(pages)
    centroids, c_offsets = kmeans_pages(tokens, offsets, 4)  # (C, dim), (pages + 1,)
    labels = kmeans_labels(tokens, offsets, centroids, c_offsets)
    page = np.repeat(np.arange(len(pages)), np.diff(offsets))
    cluster = c_offsets[page] + labels
    order = np.argsort(cluster, kind="stable")
    grouped = tokens[order]
    spans = np.concatenate([[0], np.cumsum(np.bincount(cluster, minlength=len(centroids)))]).astype(np.int64)
    codes, scales = int8_encode(grouped)
    c_codes, c_scales = int8_encode(centroids)
    q_all, q_offsets = stacked(queries)
    every = np.arange(len(pages), dtype=np.int64)
    full = maxsim_rows(q_all, q_offsets, codes, scales, offsets, every)
    np.testing.assert_allclose(maxsim_pruned(q_all, q_offsets, codes, scales, spans, c_codes, c_scales, c_offsets,
                                             every, 4), full, rtol=1e-5, atol=1e-5)
    one = maxsim_pruned(q_all, q_offsets, codes, scales, spans, c_codes, c_scales, c_offsets, every, 1)
    assert (one <= full + 1e-5).all()
