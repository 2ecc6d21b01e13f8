"""The cascade's coarse-token inverted-list stage (token_lists=False; old shards): lists, probing kernel, engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dse.engines.ivf import coarse as cascade_ivf
from dse.engines.cascade.engine import CascadeEngine
from dse.kernels.postings import probe_lists, select_lists, similarities
from tests.test_cascade import oracle, unit

PAGES = 320  # above cascade_ivf.MIN_PAGES: every add below gets a codebook
DIM = 32


@pytest.fixture(scope="module")
def corpus() -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Pages on 2 of 16 topics (6 page centroids, 48 tokens); queries of 8 held-out tokens of a page."""
    rng = np.random.default_rng(3)
    topics = unit(rng.standard_normal((16, DIM)))  # (16, DIM)

    def noise(n: int, scale: float) -> np.ndarray:
        return scale * rng.standard_normal((n, DIM)) / np.sqrt(DIM)  # (n, DIM)

    pages, centroids = [], []
    for _ in range(PAGES):
        picked = topics[rng.choice(16, 2, replace=False)]  # (2, DIM)
        c = unit(picked[rng.integers(0, 2, 6)] + noise(6, 0.8))  # (6, DIM)
        centroids.append(c)
        pages.append(unit(c[rng.integers(0, 6, 48)] + noise(48, 0.5)))  # (48, DIM)
    targets = rng.choice(PAGES, 12, replace=False)
    queries = [unit(centroids[t][rng.integers(0, 6, 8)] + noise(8, 0.5)) for t in targets]  # (8, DIM) each
    return pages, queries, oracle(queries, pages)


def test_lists_for_is_a_bounded_power_of_two() -> None:
    assert cascade_ivf.lists_for(0) == 16
    assert cascade_ivf.lists_for(128 * 1000) == 1024
    assert cascade_ivf.lists_for(10**9) == 4096


def test_lists_post_each_page_once_in_each_list_of_its_codes() -> None:
    rng = np.random.default_rng(0)
    coarse_offsets = np.array([0, 3, 3, 7, 9])  # page 1 has no coarse tokens
    codes = rng.integers(0, 5, 9).astype(np.uint16)  # (9,)
    lists = cascade_ivf.build(np.zeros((5, 4), np.float32), codes, coarse_offsets)
    for k in range(5):
        want = sorted({p for p in range(4) for c in codes[coarse_offsets[p] : coarse_offsets[p + 1]] if c == k})
        assert lists.pages[lists.offsets[k] : lists.offsets[k + 1]].tolist() == want
    assert cascade_ivf.build(np.zeros((0, 4), np.float32), codes[:0], coarse_offsets) is None


def test_probe_kernel_equals_a_loop_oracle() -> None:
    rng = np.random.default_rng(1)
    n_pages, n_lists = 40, 12
    members = [set(rng.choice(n_pages, int(rng.integers(0, 15)), replace=False).tolist()) for _ in range(n_lists)]
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in members])]).astype(np.int64)
    posted = np.concatenate([sorted(m) for m in members]).astype(np.int32)
    probe = np.stack([rng.permutation(n_lists)[:4] for _ in range(5)])  # (5, 4) best first
    gain = np.sort(rng.random((5, 4)).astype(np.float32), axis=1)[:, ::-1]  # (5, 4) descending
    allowed = rng.random(n_pages) < 0.8
    pages, scores = probe_lists(probe, gain, offsets, posted, allowed)
    want = {}
    for i in range(5):
        for p in range(n_pages):
            hits = [gain[i, r] for r in range(4) if p in members[probe[i, r]]]
            if hits and allowed[p]:
                want[p] = want.get(p, 0.0) + max(hits)
    assert sorted(pages.tolist()) == sorted(want)
    np.testing.assert_allclose(scores, [want[p] for p in pages.tolist()], rtol=1e-6)


@pytest.mark.parametrize("n_tokens", [1, 4, 7])
def test_similarities_equal_a_matrix_product(n_tokens: int) -> None:
    rng = np.random.default_rng(n_tokens)
    q, rows = rng.standard_normal((n_tokens, DIM)), rng.standard_normal((50, DIM))
    np.testing.assert_allclose(similarities(q, rows), q @ rows.T, rtol=1e-4, atol=1e-4)


def test_list_selection_equals_a_sort() -> None:
    rng = np.random.default_rng(2)
    sim = rng.standard_normal((5, 3, 16)).astype(np.float32)  # (tokens, segments, lists)
    sim[:, 2, 6:] = 10.0  # segment 2 has 6 real lists: its padding is never read
    top, gain, floor = select_lists(sim, np.array([16, 16, 6]), 8, -9.0)
    for i in range(5):
        for s in range(3):
            real = sim[i, s] if s < 2 else sim[i, s, :6]
            order = np.argsort(-real, kind="stable")
            got = top[i, s * 8 : s * 8 + 8]
            want = [s * 16 + k for k in order[:8]] + [-1] * (8 - min(8, len(real)))
            assert got.tolist() == want
            want_floor = real[order[8]] if len(real) > 8 else -9.0
            assert floor[i, s] == pytest.approx(want_floor)
            kept = got >= 0
            np.testing.assert_allclose(gain[i, s * 8 : s * 8 + 8][kept], real[order[: kept.sum()]] - want_floor, rtol=1e-6)


def test_probing_every_list_keeps_every_page_and_equals_the_scan(corpus) -> None:  # noqa: ANN001
    pages, queries, _ = corpus
    engine = CascadeEngine(token_lists=False, coarse_tokens=4, n_probe=1_000_000, n_shortlist=PAGES, n_coarse=64,
                           n_candidates=16)
    engine.add(pages)
    assert engine._segments[0].lists is not None
    scan = CascadeEngine(**{**engine.options(), "n_probe": 0})
    scan.add(pages)
    for q in queries:
        got, want = engine.search([q], 10), scan.search([q], 10)
        np.testing.assert_array_equal(got[1], want[1])


def test_list_stage_recall_against_exact_maxsim(corpus) -> None:  # noqa: ANN001
    pages, queries, exact = corpus
    # later stages keep every shortlisted page: recall measures the list stage alone (a fifth of the pages)
    engine = CascadeEngine(token_lists=False, coarse_tokens=8, n_probe=4, n_shortlist=64, n_coarse=64, n_candidates=64)
    engine.add(pages)
    rows = engine.search(queries, 10)[1]  # (nq, 10)
    want = np.argsort(-exact, axis=1)[:, :10]
    recall = np.mean([len(set(r) & set(w)) / 10 for r, w in zip(rows, want)])
    assert recall >= 0.95
    assert (rows[:, 0] == want[:, 0]).all()


def test_a_selective_filter_still_returns_k_pages(corpus) -> None:  # noqa: ANN001
    pages, queries, exact = corpus
    engine = CascadeEngine(token_lists=False, coarse_tokens=4, n_probe=1, n_shortlist=20, n_coarse=20, n_candidates=20)
    engine.add(pages)
    allowed = np.zeros(PAGES, np.bool_)
    allowed[::8] = True  # 40 pages: one probed list per query token reaches fewer than 20 of them
    seg = engine._segments[0]
    stacked = cascade_ivf.stack([(seg.lists, 0, PAGES)], DIM)
    assert cascade_ivf.shortlist(stacked, queries[0], 1, 20, 20, allowed) is None
    scores, rows = engine.search(queries[:3], 10, allowed=allowed)  # falls back to scanning the allowed pages
    assert rows.shape == (3, 10) and allowed[rows].all()
    assert all(len(set(r)) == 10 for r in rows)
    best_allowed = np.flatnonzero(allowed)[np.argmax(exact[:3][:, allowed], axis=1)]
    np.testing.assert_array_equal(rows[:, 0], best_allowed)


def test_codebooks_persist_per_shard_and_survive_truncation(corpus, tmp_path: Path) -> None:  # noqa: ANN001
    pages, queries, _ = corpus
    options = {"coarse_tokens": 4, "n_probe": 4, "n_shortlist": 64, "n_coarse": 32, "n_candidates": 16,
               "token_lists": False}
    engine = CascadeEngine(**options)
    engine.add(pages[:300])
    engine.save(tmp_path)
    engine.add(pages[300:])  # 20 pages: no codebook of their own
    engine.save(tmp_path)
    before = engine.search(queries, 10)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"shard-000001.ivf-codebook.npy", "shard-000001.ivf-codes.npy", "shard-000001.coarse-int8.npy"} <= names
    loaded = CascadeEngine.load(tmp_path, rows=PAGES, **options)
    assert loaded._segments[0].lists is not None and loaded._segments[1].lists is None
    after = loaded.search(queries, 10)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0], rtol=1e-6)
    cut = CascadeEngine.load(tmp_path, rows=290, **options)  # an interrupted add rolled back: shard 1 cut
    cut.add(pages[290:])
    cut.save(tmp_path)
    again = CascadeEngine.load(tmp_path, rows=PAGES, **options)
    assert again._segments[0].pages == 290 and again._segments[0].lists is not None
    assert again.search(queries, 10)[1].shape == (len(queries), 10)


def test_small_adds_are_merged_into_one_shard_with_a_codebook(corpus, tmp_path: Path) -> None:  # noqa: ANN001
    pages, queries, _ = corpus
    engine = CascadeEngine(token_lists=False, coarse_tokens=4, n_probe=4, n_shortlist=64, n_coarse=32, n_candidates=16)
    for a in range(0, PAGES, 80):  # four adds below MIN_PAGES each
        engine.add(pages[a : a + 80])
    assert all(seg.lists is None for seg in engine._segments)
    engine.save(tmp_path)
    assert len(engine._segments) == 1 and engine._segments[0].lists is not None
    assert engine.resident_bytes() > 0


def test_token_labels_and_pruned_maxsim_equal_numpy() -> None:
    from dse.kernels import kmeans_pages
    from dse.kernels.maxsim import maxsim_pruned
    from dse.kernels.clusters import kmeans_labels
    from dse.engines.quantize import int8_encode

    rng = np.random.default_rng(7)
    pages = [unit(rng.standard_normal((int(rng.integers(1, 30)), DIM))) for _ in range(9)]
    tokens = np.concatenate(pages)  # (T, DIM)
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in pages])]).astype(np.int64)
    cents, c_off = kmeans_pages(tokens, offsets, 5)  # (C, DIM), (10,)
    labels = kmeans_labels(tokens, offsets, cents, c_off)  # (T,)
    for p in range(9):
        sims = tokens[offsets[p] : offsets[p + 1]] @ cents[c_off[p] : c_off[p + 1]].T  # (t, c)
        np.testing.assert_array_equal(labels[offsets[p] : offsets[p + 1]], sims.argmax(axis=1))
    # tokens grouped by cluster (as the engine stores them), int8 on both tiers
    page_of = np.repeat(np.arange(9), np.diff(offsets))
    order = np.argsort(c_off[page_of] + labels, kind="stable")
    grouped = tokens[order]  # (T, DIM)
    spans = np.concatenate([[0], np.cumsum(np.bincount(c_off[page_of] + labels, minlength=len(cents)))])
    exact, scales = int8_encode(grouped)
    c8, cs = int8_encode(cents)
    q = unit(rng.standard_normal((6, DIM)))  # (6, DIM)
    for probe in (1, 2, 5):
        got = maxsim_pruned(q, np.array([0, 4, 6]), exact, scales, spans, c8, cs, c_off, np.arange(9), probe)
        ex = exact.astype(np.float32) * scales[:, None]  # (T, DIM)
        cf = c8.astype(np.float32) * cs[:, None]  # (C, DIM)
        want = np.zeros((2, 9))
        for p in range(9):
            for i in range(6):
                top = np.argsort(-(cf[c_off[p] : c_off[p + 1]] @ q[i]), kind="stable")[:probe] + c_off[p]
                toks = np.concatenate([np.arange(spans[c], spans[c + 1]) for c in top])
                want[int(i >= 4), p] += (ex[toks] @ q[i]).max() if len(toks) else 0.0
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_cluster_probe_zero_is_exact_and_a_small_probe_a_close_lower_bound(corpus) -> None:  # noqa: ANN001
    from dse.engines.quantize import int8_decode, int8_encode

    pages, queries, _ = corpus
    engine = CascadeEngine(token_lists=False, exact_dtype="int8", coarse_tokens=8, n_coarse=0, n_candidates=0)
    engine.add(pages)
    decoded = [int8_decode(*int8_encode(p)) for p in pages]
    want = oracle(queries, decoded).astype(np.float32)  # (nq, pages)
    exact_scores, exact_rows = engine.search(queries, 10, cluster_probe=0)
    np.testing.assert_allclose(exact_scores, np.take_along_axis(want, exact_rows, axis=1), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(exact_rows[:, 0], want.argmax(axis=1))
    scores, rows = engine.search(queries, 10, cluster_probe=2)
    assert (scores <= np.take_along_axis(want, rows, axis=1) + 1e-4).all()  # a lower bound of MaxSim
    np.testing.assert_allclose(scores[:, 0], exact_scores[:, 0], rtol=0.02)
    seg = engine._segments[0]  # every page keeps its tokens (grouped by cluster, not in input order)
    for p in (0, 7, 300):
        stored = np.asarray(seg.exact[seg.offsets[p] : seg.offsets[p + 1]])
        assert sorted(map(bytes, stored)) == sorted(map(bytes, int8_encode(pages[p])[0]))
