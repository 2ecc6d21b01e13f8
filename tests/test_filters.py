"""Metadata filters: the `where` syntax, and every engine's `allowed` mask against a brute-force oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dse.engines.bm25.engine import BM25Engine
from dse.backends.records import NewPage
from dse.storage.filters import FilterError, check_metadata, compile_where, parse_conditions
from dse.engines.flat.engine import FlatEngine
from dse.engines.maxsim import MaxSimEngine
from dse.storage.page_index import PageIndex

ENC = {"name": "fake", "kind": "single", "input": "image", "model": "m", "revision": None,
       "prompt_version": "1", "dim": 4, "options": {}}


def test_where_compiles_to_sql_and_names_bad_input() -> None:
    f = compile_where({"kind": "pdf", "page": {"gte": 2, "lte": 5}, "source": ["a.pdf", "b.pdf"], "x.y": True})
    assert f.sql == ("s.kind = ? AND p.page >= ? AND p.page <= ? AND s.path IN (?,?) AND "
                     "json_extract(p.metadata, ?) = ?")
    assert f.args == ("pdf", 2, 5, "a.pdf", "b.pdf", '$."x"."y"', True) and f.metadata_keys == ("x.y",)
    bad = [
        ({"page": {"gtx": 1}}, r"where\['page'\]: unknown operator 'gtx'"),
        ({"page": {"in": 3}}, r"where\['page'\]\['in'\]: expected a non-empty list"),
        ({"page": {"gte": True}}, "range bound"),
        ({"source": {"glob": 3}}, "glob pattern must be a string"),
        ({"ti tle": 1}, "bad field name 'ti tle'"),
        ({"kind": {"eq": {"a": 1}}}, r"where\['kind'\]\['eq'\]: expected a string, number or bool"),
        ({"kind": {}}, "empty condition"),
        (["kind"], "where must be a dict"),
    ]
    for where, message in bad:
        with pytest.raises(FilterError, match=message):
            compile_where(where)  # type: ignore[arg-type]


def test_command_line_conditions() -> None:
    where = parse_conditions(["kind=pdf", "page>=2", "page<5", "source~docs/*.pdf", "lang=en|fr",
                              "title=\"2024\"", "year!=2020", "draft=false"])
    assert where == {"kind": {"eq": "pdf"}, "page": {"gte": 2, "lt": 5}, "source": {"glob": "docs/*.pdf"},
                     "lang": {"in": ["en", "fr"]}, "title": {"eq": "2024"}, "year": {"ne": 2020},
                     "draft": {"eq": False}}
    with pytest.raises(FilterError, match="expected KEY OP VALUE"):
        parse_conditions(["page"])
    with pytest.raises(FilterError, match="page already has a >= condition"):
        parse_conditions(["page>=2", "page>=3"])
    with pytest.raises(FilterError, match="reserved"):
        check_metadata({"page": 3})
    with pytest.raises(FilterError, match="metadata key 'a b'"):
        check_metadata({"a b": 3})
    assert check_metadata({"collection": "legal", "year": 2024}) == {"collection": "legal", "year": 2024}


def _masks(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Masks that reach every code path: few excluded, sparse, empty, all True, one row."""
    few = np.ones(n, bool)
    few[rng.choice(n, 5, replace=False)] = False
    one = np.zeros(n, bool)
    one[n // 2] = True
    return [few, rng.random(n) < 0.05, rng.random(n) < 0.6, np.zeros(n, bool), np.ones(n, bool), one]


def _check(engine, queries, oracle: np.ndarray, masks: list[np.ndarray], exact: bool = True) -> None:
    for mask in masks:
        for k in (1, 7, 40):
            scores, rows = engine.search(queries, k, allowed=mask)
            assert rows.shape == (oracle.shape[0], min(k, int(mask.sum())))
            assert mask[rows].all()
            if exact:
                masked = np.where(mask, oracle, -np.inf)  # (nq, n)
                order = np.argsort(-masked, axis=1, kind="stable")[:, : rows.shape[1]]
                np.testing.assert_array_equal(rows, order)
                np.testing.assert_allclose(scores, np.take_along_axis(oracle, order, 1), rtol=1e-5, atol=1e-5)


def test_flat_exact_and_hnsw_respect_allowed() -> None:
    rng = np.random.default_rng(0)
    n, dim = 3000, 8
    x = rng.standard_normal((n, dim)).astype(np.float32)  # (n, dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = rng.standard_normal((3, dim)).astype(np.float32)  # (3, dim)
    masks = _masks(n, rng) + [rng.random(n) < 0.3]  # > 1024 excluded: the gathered-subset path
    exact = FlatEngine()
    exact.add(x)
    _check(exact, q, q @ x.T, masks)
    hnsw = FlatEngine(hnsw=True, M=8, ef_construction=40, ef_search=16)
    hnsw.add(x)
    small = [masks[3], masks[5], rng.random(n) < 0.01]
    _check(hnsw, q, q @ x.T, small, exact=True)  # small allowed sets: exact on the subset
    _check(hnsw, q, q @ x.T, [masks[0], masks[2], masks[4]], exact=False)  # graph walk with an IDSelector
    rows = hnsw.search(x[:5], 1, allowed=masks[0])[1]  # (5, 1): each allowed vector finds itself
    assert [int(rows[i, 0]) for i in range(5) if masks[0][i]] == [i for i in range(5) if masks[0][i]]
    with pytest.raises(ValueError, match="allowed has 3 entries, but the engine holds 3000 rows"):
        exact.search(q, 3, allowed=np.ones(3, bool))
    with pytest.raises(ValueError, match="1-D bool"):
        exact.search(q, 3, allowed=np.ones(n, int))


def test_maxsim_skips_disallowed_pages(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pages = [rng.standard_normal((int(rng.integers(0, 6)), 8)).astype(np.float32) for _ in range(300)]
    engine = MaxSimEngine(block_mb=0.001)  # tiny blocks: many blocks per segment
    engine.add(pages[:120])
    engine.save(tmp_path)  # a memory-mapped segment, then an in-memory one
    engine.add(pages[120:])
    queries = [rng.standard_normal((3, 8)).astype(np.float32), np.zeros((0, 8), np.float32)]
    _check(engine, queries, engine.score(queries), _masks(300, rng))


def test_bm25_returns_only_allowed_pages() -> None:
    rng = np.random.default_rng(2)
    words = [f"w{i}" for i in range(40)]
    docs = [list(rng.choice(words, size=int(rng.integers(0, 20)))) for _ in range(400)]
    for method in ("lucene", "bm25+"):
        engine = BM25Engine(method=method)
        engine.add(docs)
        queries = [["w1", "w2", "w1", "zz"], ["w3"]]
        _check(engine, queries, engine.scores(queries), _masks(400, rng))


def test_filtered_search_returns_k_matching_pages(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    index = PageIndex.create(tmp_path / "idx", ENC, image_size=0)
    for s in range(4):
        vecs = rng.standard_normal((5, 4)).astype(np.float32)  # (pages, dim)
        meta = {"kind": "pdf" if s < 3 else "image", "lang": ["en", "fr"][s % 2], "width": 100 * s}
        pages = [NewPage(f"s{s}-p{p}", p, f"text {s} {p}", None, meta) for p in range(1, 6)]
        index.add_source(f"docs/s{s}.pdf", f"d{s}", meta["kind"], pages, vecs)
    q = rng.standard_normal((1, 4)).astype(np.float32)  # (1, dim)
    hits = index.search(q, 4, where={"source": "docs/s2.pdf"})[0]
    assert len(hits) == 4 and {h.record.source for h in hits} == {"docs/s2.pdf"}
    hits = index.search(q, 20, where={"lang": "fr", "page": {"gte": 2, "lte": 3}, "width": {"lt": 250}})[0]
    assert sorted((h.record.source, h.record.page) for h in hits) == [("docs/s1.pdf", 2), ("docs/s1.pdf", 3)]
    assert {h.record.source for h in index.search(q, 20, where={"kind": "image"})[0]} == {"docs/s3.pdf"}
    assert len(index.search(q, 20, where={"source": {"glob": "docs/s[01].pdf"}})[0]) == 10
    assert index.search(q, 3, where={"kind": "web"})[0] == []
    with pytest.raises(FilterError, match="no page in this index has the field 'lnag'; known fields: .*lang"):
        index.search(q, 3, where={"lnag": "fr"})
    index.delete(sources=["docs/s2.pdf"])
    assert index.search(q, 4, where={"source": "docs/s2.pdf"})[0] == []
    assert len(index.search_text(["text"], 30, where={"page": 1})[0]) == 3
    index.close()
