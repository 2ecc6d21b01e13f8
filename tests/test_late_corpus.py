"""The multi-vector bench's corpora, oracle and recall, and `dse export-vectors`, against brute force."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from dse.engines.maxsim import MaxSimEngine

ROOT = Path(__file__).resolve().parents[1]


def _bench(name: str):  # noqa: ANN202 - loaded by path: bench/ on sys.path would shadow the ingest package
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_corpus = _bench("corpus_late")
late_exact = _bench("late_exact")
EasyCorpus, NpzCorpus, RealisticCorpus, groups = _corpus.EasyCorpus, _corpus.NpzCorpus, _corpus.RealisticCorpus, _corpus.groups


def brute(q: np.ndarray, pages: list[np.ndarray]) -> np.ndarray:
    return np.array([(q.astype(np.float64) @ p.astype(np.float64).T).max(axis=1).sum() for p in pages])


@pytest.fixture(scope="module")
def gen() -> RealisticCorpus:
    return RealisticCorpus(300, seed=3, tokens=256, dim=128, vocab=4096, word_clusters=256, doc_pages=10)


def test_realistic_pages_are_seeded_unit_and_templated(gen: RealisticCorpus) -> None:
    a, b = gen.page(7), RealisticCorpus(300, seed=3, tokens=256, dim=128, vocab=4096, word_clusters=256,
                                           doc_pages=10).page(7)
    assert a.shape == (256, 128) and a.dtype == np.float32 and np.array_equal(a, b)
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    doc = gen.doc_of
    pairs_same = [(i, i + 1) for i in range(100) if doc[i] == doc[i + 1]][:20]
    pairs_other = [(i, i + 150) for i in range(20)]

    def overlap(i: int, j: int) -> float:  # mean best-match cosine of page i's tokens on page j
        return float((gen.page(i) @ gen.page(j).T).max(axis=1).mean())

    assert np.mean([overlap(*p) for p in pairs_same]) > np.mean([overlap(*p) for p in pairs_other]) + 0.05


def test_realistic_queries_have_a_modality_gap(gen: RealisticCorpus) -> None:
    pages = [gen.page(i) for i in range(gen.n)]
    words = gen.query_words
    to_target, to_others, top1 = [], [], []
    for t in (5, 50, 120, 250):
        q = gen.query(t)
        assert q.shape == (gen.query_words + gen.aug_tokens, 128)
        best = np.stack([(q[:words] @ p.T).max(axis=1).mean() for p in pages])  # (pages,)
        to_target.append(best[t])
        to_others.append(np.median(best))
        top1.append(int(np.argmax(brute(q, pages))) == t)
    assert 0.3 <= np.mean(to_target) <= 0.6
    assert np.mean(to_others) < np.mean(to_target) - 0.05
    assert np.mean(top1) >= 0.5


def test_groups_are_whole_documents_covering_every_page(gen: RealisticCorpus) -> None:
    g = groups(gen.doc_starts, gen.n, 64)
    assert g[0][0] == 0 and g[-1][1] == gen.n
    assert all(b == c for (_, b), (c, _) in zip(g[:-1], g[1:]))
    assert all(b in set(gen.doc_starts.tolist()) for _, b in g)
    assert all(b - a >= 64 for a, b in g[:-1])


def test_easy_corpus_still_there() -> None:
    c = EasyCorpus(10, tokens=16, dim=32, query_tokens=4)
    assert c.page(3).shape == (16, 32) and c.query(3).shape == (4, 32)


def test_oracle_recall_and_hardness_against_brute_force(tmp_path: Path, gen: RealisticCorpus) -> None:
    pages = [gen.page(i) for i in range(120)]
    engine = MaxSimEngine()
    engine.add(pages[:70])
    engine.save(tmp_path)
    engine.add(pages[70:])
    engine.save(tmp_path)
    queries = [gen.query(t) for t in (3, 40, 90)]
    scores, rows = late_exact.oracle(engine, queries, depth=20, batch=2)
    for q, s, r in zip(queries, scores, rows):
        want = brute(q, pages)
        assert np.allclose(s, np.sort(want)[::-1][:20], rtol=1e-4)
        assert np.allclose(want[r], s, rtol=1e-4)
    assert late_exact.recall(engine, queries, rows, scores) == 1.0
    worse = rows.copy()
    worse[:, 9] = rows[:, 19]  # rank 20 instead of rank 10: one miss a query (unless tied)
    expect = np.mean([0.9 if s[19] < s[9] * (1 - 1e-4) else 1.0 for s in scores])
    assert late_exact.recall(engine, queries, worse, scores) == pytest.approx(expect)
    dup = rows.copy()
    dup[:, 1] = rows[:, 0]  # a row returned twice counts once
    assert late_exact.recall(engine, queries, dup, scores) == pytest.approx(0.9)
    hard = late_exact.hardness(scores, rows, np.array([3, 40, 90]))
    assert hard["gap_1_10"] >= hard["gap_10_11"] >= 0 and 0 <= hard["top1_is_target"] <= 1


def test_index_exact_is_exhaustive_maxsim_over_the_float16_tier(gen: RealisticCorpus) -> None:
    from dse.engines.cascade.engine import CascadeEngine

    pages = [gen.page(i) for i in range(300)]
    cascade = CascadeEngine(coarse_tokens=8)
    cascade.add(pages[:280])
    cascade.add(pages[280:])
    exact = late_exact.IndexExact(cascade)
    assert len(exact) == 300
    halves = [p.astype(np.float16).astype(np.float32) for p in pages]
    queries = [gen.query(t) for t in (3, 150, 290)]
    scores, rows = late_exact.oracle(exact, queries, depth=20, batch=2)
    for q, s, r in zip(queries, scores, rows):
        want = brute(q, halves)
        assert np.allclose(s, np.sort(want)[::-1][:20], rtol=1e-4)
        assert np.allclose(want[r], s, rtol=1e-4)
    assert late_exact.recall(exact, queries, rows, scores) == 1.0


def test_page_tokens_of_both_engines(tmp_path: Path, gen: RealisticCorpus) -> None:
    from dse.engines.cascade.engine import CascadeEngine

    pages = [gen.page(i) for i in range(300)]
    exact, cascade = MaxSimEngine(), CascadeEngine(coarse_tokens=8)
    for e in (exact, cascade):
        e.add(pages[:280])
        e.add(pages[280:])
    for row in (0, 279, 280, 299):
        assert np.array_equal(exact.page_tokens(row), pages[row])
        got = cascade.page_tokens(row)  # float16, tokens grouped by cluster
        assert got.shape == pages[row].shape
        order = lambda x: x[np.lexsort(x.T[::-1])]  # noqa: E731
        assert np.allclose(order(got.astype(np.float16).astype(np.float32)),
                           order(pages[row].astype(np.float16).astype(np.float32)), atol=1e-3)
    with pytest.raises(IndexError):
        exact.page_tokens(300)


def test_export_vectors_round_trip(tmp_path: Path, corpus: Path) -> None:
    from dse.cli import export_vectors
    from dse.cli.main import main

    idx = tmp_path / "idx"
    assert main(["index", str(corpus / "acme-q3-2025-report.pdf"), "--index", str(idx),
                 "--config", str(ROOT / "configs" / "tiny-colqwen2.yaml"), "--no-progress"]) == 0
    from dse.retrieve.retriever import Retriever

    with Retriever.open(idx) as r:
        pid = r.index.catalogue.pages([1])[0].page_id
        want_q = r.encode_queries(["revenue by segment"])[0]
        want_p = r.index.view().engine.page_tokens(1)
    queries = tmp_path / "q.txt"
    queries.write_text(f"revenue by segment\t{pid}\nsecond query\n")
    out = tmp_path / "v.npz"
    assert export_vectors.run(argparse.Namespace(index=str(idx), out=str(out), queries=str(queries), limit=0)) == 0
    c = NpzCorpus(out)
    assert c.n == 3 and list(c.targets) == [1, -1]
    assert np.allclose(c.page(1), want_p.astype(np.float16), atol=1e-3)
    assert np.allclose(c.queries[0], want_q, atol=1e-6)
    assert np.load(out)["doc_starts"].tolist() == [0, 3]


def test_export_vectors_from_a_qdrant_index(tmp_path: Path, corpus: Path) -> None:
    """`dse export-vectors` reads a Qdrant-backed index through the IndexBackend interface: the same file."""
    pytest.importorskip("qdrant_client")
    from dse.cli import export_vectors
    from dse.cli.main import main

    config = str(ROOT / "configs" / "tiny-colqwen2.yaml")
    files = [str(corpus / "acme-q3-2025-report.pdf"), str(corpus / "bird-field-guide.pdf")]
    assert main(["index", *files, "--index", str(tmp_path / "a"), "--config", config, "--no-progress"]) == 0
    assert main(["index", *files, "--index", str(tmp_path / "b"), "--config", config, "--backend", "qdrant",
                 "--qdrant", str(tmp_path / "q"), "--no-progress"]) == 0
    queries = tmp_path / "q.txt"
    queries.write_text("revenue by segment\n")
    for name in ("a", "b"):
        assert export_vectors.run(argparse.Namespace(index=str(tmp_path / name), out=str(tmp_path / f"{name}.npz"),
                                                     queries=str(queries), limit=0)) == 0
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert b["page_ids"].tolist() == a["page_ids"].tolist() and len(a["page_ids"]) > 3
    for key in ("page_offsets", "doc_starts"):
        assert b[key].tolist() == a[key].tolist(), key
    assert np.allclose(b["page_tokens"].astype(np.float32), a["page_tokens"].astype(np.float32), atol=2e-3)
    assert np.allclose(b["query_tokens"], a["query_tokens"], atol=1e-5)
