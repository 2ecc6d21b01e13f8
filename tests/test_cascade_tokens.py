"""The cascade's token-level first stage: codebook, lists, kernels and engine, against brute-force oracles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dse.engines.cascade import probe as cascade_probe
from dse.engines.cascade import tokens as cascade_tokens
from dse.engines.cascade.engine import CascadeEngine
from dse.kernels.postings import centroid_maxsim
from tests.test_cascade import oracle, unit
from tests.test_late_corpus import RealisticCorpus

DIM = 32
PAGES = 300  # above cascade_tokens.MIN_PAGES: the first add trains a codebook


def noise(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    return scale * rng.standard_normal((n, DIM)) / np.sqrt(DIM)  # (n, DIM)


@pytest.fixture(scope="module")
def random_data() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Pages of 24 tokens around 4 private centroids; queries of 6 noisy tokens of a page."""
    rng = np.random.default_rng(5)
    pages = []
    for _ in range(PAGES):
        c = unit(rng.standard_normal((4, DIM)))  # (4, DIM)
        pages.append(unit(c[rng.integers(0, 4, 24)] + noise(rng, 24, 0.4)))  # (24, DIM)
    queries = [unit(pages[t][:6] + noise(rng, 6, 0.3)) for t in rng.choice(PAGES, 10, replace=False)]
    return pages, queries


@pytest.fixture(scope="module")
def near_duplicates() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """20 templates of 20 tokens; each page = its template's tokens (noisy) + 4 tokens of its own."""
    rng = np.random.default_rng(6)
    templates = [unit(rng.standard_normal((20, DIM))) for _ in range(20)]
    pages, owns = [], []
    for i in range(PAGES):
        own = unit(rng.standard_normal((4, DIM)))  # (4, DIM)
        owns.append(own)
        pages.append(unit(np.concatenate([templates[i % 20] + noise(rng, 20, 0.1), own])))  # (24, DIM)
    queries = []
    for t in rng.choice(PAGES, 10, replace=False):
        picked = np.concatenate([templates[t % 20][:3], owns[t][:3]])  # (6, DIM)
        queries.append(unit(0.6 * picked + noise(rng, 6, 0.6)))
    return pages, queries


def recall(rows: np.ndarray, exact: np.ndarray, k: int = 10) -> float:
    """Tie-tolerant recall@k of `rows` (nq, k) against exact scores (nq, n_pages)."""
    tenth = np.sort(exact, axis=1)[:, -k]  # (nq,)
    return float(np.mean([(exact[j, r] >= tenth[j] - 1e-4).sum() / k for j, r in enumerate(rows)]))


def test_sizes_scale_with_the_data() -> None:
    assert cascade_tokens.centroids_for(0) == 64
    assert cascade_tokens.centroids_for(64 * 1024) == 1024
    assert cascade_tokens.centroids_for(10**9) == cascade_tokens.MAX_CENTROIDS
    assert cascade_tokens.shortlist_for(1000) == 1024
    assert cascade_tokens.shortlist_for(100_000) == 6250
    assert cascade_tokens.shortlist_for(10**7) == 16384


def test_lists_are_each_pages_distinct_nearest_centroids(random_data) -> None:  # noqa: ANN001
    pages = random_data[0]
    tokens = np.concatenate(pages)  # (T, DIM)
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in pages])])  # (pages + 1,)
    book = cascade_tokens.train(tokens)
    lists = cascade_tokens.encode(book, tokens, offsets)
    nearest = np.argmax(tokens @ book.centroids.T, axis=1)  # (T,)
    for p in range(0, PAGES, 7):
        want = sorted(set(nearest[offsets[p] : offsets[p + 1]].tolist()))
        assert lists.fwd_codes[lists.fwd_offsets[p] : lists.fwd_offsets[p + 1]].tolist() == want
    for c in range(0, len(book.centroids), 5):
        want = [p for p in range(PAGES) if c in set(nearest[offsets[p] : offsets[p + 1]].tolist())]
        assert lists.list_pages[lists.list_offsets[c] : lists.list_offsets[c + 1]].tolist() == want
    cut = lists.rows(10, 20)
    assert cut.fwd_codes.tolist() == lists.fwd_codes[lists.fwd_offsets[10] : lists.fwd_offsets[20]].tolist()


def test_centroid_interaction_kernel_equals_numpy() -> None:
    rng = np.random.default_rng(2)
    sim = rng.standard_normal((5, 9)).astype(np.float32)  # (query_tokens, centroids)
    fwd_offsets = np.array([0, 3, 3, 7, 9])  # page 1 has no tokens
    fwd_codes = rng.integers(0, 9, 9).astype(np.int32)
    want = [sim[:, fwd_codes[a:b]].max(axis=1).sum() if b > a else 0.0
            for a, b in zip(fwd_offsets[:-1], fwd_offsets[1:])]
    np.testing.assert_allclose(centroid_maxsim(sim, fwd_offsets, fwd_codes, np.array([0, 1, 2, 3])), want, rtol=1e-6)


def test_shortlist_equals_the_imputed_score_oracle(random_data) -> None:  # noqa: ANN001
    pages, queries = random_data
    engine = CascadeEngine(residual_bits=0)
    engine.add(pages)
    stacked = engine._token_stack()
    lists = engine._segments[0].tok
    for q in queries[:4]:
        sims = cascade_probe.similarities(stacked, q)
        sim = sims[lists.codebook.key]  # (query_tokens, centroids)
        order = np.argsort(-sim, axis=1)  # (query_tokens, centroids)
        probed, floor = order[:, :4], np.take_along_axis(sim, order[:, 4:5], axis=1)[:, 0]  # (qt, 4), (qt,)
        want = np.zeros(PAGES)
        for p in range(PAGES):
            codes = set(lists.fwd_codes[lists.fwd_offsets[p] : lists.fwd_offsets[p + 1]].tolist())
            per = [max([sim[i, c] for c in probed[i] if c in codes], default=floor[i]) for i in range(len(q))]
            want[p] = sum(per) if any(set(probed[i].tolist()) & codes for i in range(len(q))) else -np.inf
        got = cascade_probe.shortlist(stacked, q, sims, 4, 20, 10, np.ones(PAGES, np.bool_))
        assert len(got) == 20 and (want[got] >= np.sort(want)[-20] - 1e-5).all()


@pytest.mark.parametrize("exact_dtype", ["float16", "int8"])
def test_exhaustive_mode_equals_exact_maxsim(random_data, exact_dtype: str) -> None:  # noqa: ANN001
    pages, queries = random_data
    engine = CascadeEngine(exact_dtype=exact_dtype, residual_bits=0)
    engine.add(pages)
    assert engine.knobs()["stage"] == "tokens"
    exact = oracle(queries, pages)  # (nq, pages)
    scores, rows = engine.search(queries, 10, n_probe=0, n_coarse=0, n_candidates=0)
    assert recall(rows, exact) == 1.0
    np.testing.assert_allclose(scores, np.take_along_axis(exact, rows, axis=1), atol=0.02 * 6)


@pytest.mark.parametrize(("data", "want"), [("random_data", 0.6), ("near_duplicates", 0.9)])
def test_pruned_search_against_exact_maxsim(data: str, want: float, request: pytest.FixtureRequest) -> None:
    """Shortlist 128 and keep 64 of 300 pages: the best page always; ranks 2-10 of random pages are
    near-ties of unrelated pages (no approximation finds them), of near-duplicates they are siblings."""
    pages, queries = request.getfixturevalue(data)
    engine = CascadeEngine(residual_bits=0)
    engine.add(pages)
    exact = oracle(queries, pages)
    _, rows = engine.search(queries, 10, n_shortlist=128, n_coarse=64)
    assert np.mean(rows[:, 0] == exact.argmax(axis=1)) >= 0.9
    assert recall(rows, exact) >= want
    _, rows = engine.search(queries, 10, n_shortlist=PAGES - 1, n_coarse=0)  # one page pruned, by the lists
    assert recall(rows, exact) >= 0.99


def test_recall_at_defaults_on_a_small_realistic_corpus() -> None:
    corpus = RealisticCorpus(2048, seed=1, tokens=64, dim=64, vocab=4096, word_clusters=256, doc_pages=16)
    pages = [corpus.page(i) for i in range(corpus.n)]
    targets = np.random.default_rng(7).choice(corpus.n, 16, replace=False)
    queries = [corpus.query(int(t)) for t in targets]
    engine = CascadeEngine(residual_bits=0)
    for a in range(0, corpus.n, 1024):
        engine.add(pages[a : a + 1024])
    knobs = engine.knobs()
    assert knobs["stage"] == "tokens" and knobs["n_shortlist"] < corpus.n
    exact = oracle(queries, pages)
    _, rows = engine.search(queries, 10)
    assert recall(rows, exact) >= 0.85  # 0.875 measured (the coarse-token lists: about 0.4 on this generator)
    assert len({seg.tok.codebook.key for seg in engine._segments}) == 1  # trained on the first add, then reused


def test_options_round_trip_through_the_manifest(tmp_path: Path, random_data) -> None:  # noqa: ANN001
    from dse.engines.registry import engine_for

    pages, queries = random_data
    engine = CascadeEngine(n_probe=6, n_coarse=40, residual_bits=0)
    assert engine.options()["n_shortlist"] is None and engine.options()["token_lists"] is True
    engine.add(pages)
    engine.save(tmp_path)
    options = engine.options()
    loaded = engine_for("multi", options).load(tmp_path, rows=PAGES, **options)
    assert loaded.options() == options
    assert loaded.knobs() == engine.knobs() == {"stage": "tokens", "n_probe": 6, "n_shortlist": 1024, "n_coarse": 40,
                                                "n_refine": 0, "n_candidates": 0}
    assert loaded.knobs(n_probe=3)["n_probe"] == 3
    np.testing.assert_array_equal(loaded.search(queries, 10)[1], engine.search(queries, 10)[1])
    assert len(list(tmp_path.glob("tokens-*.npy"))) == 1


def test_shards_share_one_codebook_and_survive_truncation(tmp_path: Path, random_data) -> None:  # noqa: ANN001
    pages, queries = random_data
    engine = CascadeEngine(residual_bits=0)
    for part in (pages[:150] * 2, pages[150:]):  # 300 pages (trains), then 150 (reuses the codebook)
        engine.add(part)
        engine.save(tmp_path)
    assert len(list(tmp_path.glob("tokens-*.npy"))) == 1
    cut = CascadeEngine.load(tmp_path, rows=400, residual_bits=0)  # an interrupted add rolled back: shard 2 cut to 100 pages
    cut.add(pages[:20])
    cut.save(tmp_path)
    again = CascadeEngine.load(tmp_path, rows=420, residual_bits=0)
    assert all(seg.tok is not None for seg in again._segments) and again.knobs()["stage"] == "tokens"
    data = pages[:150] * 2 + pages[150:250] + pages[:20]
    exact = oracle(queries, data)
    assert recall(again.search(queries, 10, n_probe=0, n_coarse=0, n_candidates=0)[1], exact) == 1.0
    rows = again.search(queries, 10, n_shortlist=128, n_coarse=64)[1]
    assert np.isin(exact.argmax(axis=1), rows).mean() >= 0.9  # duplicated pages tie for the best


def test_a_shard_without_token_lists_opens_with_the_coarse_stage(tmp_path: Path, random_data) -> None:  # noqa: ANN001
    pages, queries = random_data
    engine = CascadeEngine(residual_bits=0)
    engine.add(pages)
    engine.save(tmp_path)
    for path in tmp_path.glob("shard-000001.tok-*.npy"):  # as written before token lists existed
        path.unlink()
    old = CascadeEngine.load(tmp_path, rows=PAGES)
    assert old._segments[0].tok is None and old.knobs()["stage"] == "coarse"
    coarse = CascadeEngine(token_lists=False)
    coarse.add(pages)
    np.testing.assert_array_equal(old.search(queries, 10)[1], coarse.search(queries, 10)[1])
    old.add(pages[:50])  # new pages of an old index get token lists; the index keeps the coarse stage
    old.save(tmp_path)
    mixed = CascadeEngine.load(tmp_path, rows=PAGES + 50)
    assert mixed.knobs()["stage"] == "coarse" and mixed.search(queries, 10)[1].shape == (10, 10)


def test_filters_and_small_indexes(random_data) -> None:  # noqa: ANN001
    pages, queries = random_data
    small = CascadeEngine(residual_bits=0)
    small.add(pages[:100])  # below MIN_PAGES: no codebook, the coarse stage
    assert small._segments[0].tok is None and small.knobs()["stage"] == "coarse"
    engine = CascadeEngine(residual_bits=0)
    engine.add(pages)
    allowed = np.zeros(PAGES, np.bool_)
    allowed[::7] = True
    _, rows = engine.search(queries, 10, allowed=allowed, n_shortlist=16, n_coarse=12)
    assert allowed[rows].all() and rows.shape == (10, 10)


def test_large_codebooks_assign_by_hnsw_close_to_the_exact_nearest_centroid() -> None:
    rng = np.random.default_rng(9)
    book = cascade_tokens.Codebook.of(unit(rng.standard_normal((5000, DIM))))  # > 4096: HNSW assignment
    tokens = unit(book.centroids[rng.integers(0, 5000, 2000)] + noise(rng, 2000, 0.3))  # (2000, DIM)
    exact = np.argmax(tokens @ book.centroids.T, axis=1)  # (2000,)
    assert np.mean(cascade_tokens.assign(book, tokens) == exact) >= 0.95


def test_large_codebooks_train_by_hnsw_kmeans_as_well_as_sampled_centroids_and_better() -> None:
    rng = np.random.default_rng(10)
    centres = unit(rng.standard_normal((2048, DIM)))  # (2048, DIM)
    x = unit(centres[rng.integers(0, 2048, 8192 * 16)] + noise(rng, 8192 * 16, 0.5))  # (131072, DIM)
    book = cascade_tokens.train(x, n_tokens=8192 * 64)  # an index of 524k tokens: 8192 centroids, HNSW k-means
    assert book.centroids.shape == (8192, DIM)
    np.testing.assert_allclose(np.linalg.norm(book.centroids, axis=1), 1.0, atol=1e-4)
    held = unit(centres[rng.integers(0, 2048, 4000)] + noise(rng, 4000, 0.5))  # (4000, DIM)
    trained = (held @ book.centroids.T).max(axis=1).mean()
    picked = (held @ x[rng.choice(len(x), 8192, replace=False)].T).max(axis=1).mean()  # k-means' starting point
    assert trained > picked + 0.01
