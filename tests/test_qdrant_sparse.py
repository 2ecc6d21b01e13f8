"""The Qdrant backend's sparse-centroids first stage: codebook, sparse vectors, training, retraining, resume.

Real collections (qdrant-client's local mode and qdrant-edge-py), real FAISS codebooks, corpora
larger than the prefetch so the sparse prefetch (not the exact small-corpus path) picks the
candidates; the small-corpus exactness is in tests/test_backend_conformance.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dse.backends import NewPage, NewSource, backend_class, open_backend
from dse.backends.qdrant import centroids as cents
from dse.backends.qdrant.schema import QdrantOptionError, check_options

DIM = 16
LOCATIONS = ["local", "edge"]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _words() -> np.ndarray:
    return _unit(np.random.default_rng(1).standard_normal((200, DIM)))  # (200, DIM) visual words


def _page(i: int) -> np.ndarray:
    """Page i of document i // 6: 6 template words shared by the document, 4 words of its own."""
    rng = np.random.default_rng(1000 + i)
    words = _words()
    template = np.random.default_rng(i // 6).choice(200, 6, replace=False)
    own = rng.choice(200, 4, replace=False)
    ids = np.concatenate([template, own])
    return _unit(words[ids] + 0.15 * rng.standard_normal((len(ids), DIM)))  # (10, DIM)


def _query(i: int) -> np.ndarray:
    rng = np.random.default_rng(5000 + i)
    return _unit(_page(i)[-4:] + 0.2 * rng.standard_normal((4, DIM)))  # (4, DIM): the page's own words


def _source(start: int, n: int) -> tuple[NewSource, list[np.ndarray]]:
    pages = tuple(NewPage(f"{i:016x}-p00001", 1, f"page {i}", None, {"doc": i // 6}) for i in range(start, start + n))
    return NewSource(f"/docs/d{start}.pdf", f"dig{start}", "pdf", pages), [_page(i) for i in range(start, start + n)]


def _create(tmp: Path, where: str, **options):
    pytest.importorskip("qdrant_client")
    if where == "edge":
        pytest.importorskip("qdrant_edge")
    location = f"edge:{tmp / 'edge'}" if where == "edge" else str(tmp / "local")
    encoder = {"name": "t", "kind": "multi", "model": "random", "dim": DIM, "prompt_version": "1", "options": {}}
    opts = {"qdrant": location, "collection": "c", "first_stage": "sparse-centroids", "codebook_min_pages": 48,
            **options}
    return backend_class("qdrant").create(tmp / "idx", encoder, opts, image_size=0)


def _add(index, start: int, n: int, per_source: int = 12) -> None:
    for s in range(start, start + n, per_source):
        src, vecs = _source(s, min(per_source, start + n - s))
        index.add_sources([src], [vecs])


def _exact_top(q: np.ndarray, pages: range, k: int) -> list[str]:
    scores = [(float((q @ _page(i).T).max(axis=1).sum()), f"{i:016x}-p00001") for i in pages]
    return [pid for _, pid in sorted(scores, reverse=True)[:k]]


def _state(index) -> dict:
    return json.loads((index.directory / "manifest.json").read_text())["store"]["qdrant"]["centroids"]


def _generations(index, vector: str) -> set[int]:
    """The generations of the sparse ids every page holds in `vector` (a page without it fails)."""
    ids = [pid for pid, _ in index.catalogue.scroll(fields=["page_id"])]
    got = index.client.retrieve(index.collection, ids, with_payload=False, with_vectors=[vector])
    assert len(got) == len(ids) and all(vector in (r.vector or {}) for r in got), vector
    return {int(i) >> cents.CENTROID_BITS for r in got for i in r.vector[vector].indices}


def _vector_names(index) -> set[str]:
    """The centroid vectors the points hold."""
    got, _ = index.client.scroll(index.collection, limit=1000, with_payload=False, with_vectors=True)
    return {name for r in got for name in (r.vector or {}) if name.startswith("centroids")}


@pytest.mark.parametrize("options, message", [
    ({"first_stage": "tokens"}, "first_stage 'tokens'"),
    ({"centroid_weight": "sim"}, "only read with first_stage: sparse-centroids"),
    ({"first_stage": "sparse-centroids", "centroid_weight": "max"}, "centroid_weight 'max'"),
    ({"first_stage": "sparse-centroids", "centroid_idf": "yes"}, "centroid_idf must be true or false"),
    ({"first_stage": "sparse-centroids", "codebook_retrain": 1}, "codebook_retrain must be true or false"),
    ({"codebook_retrain": False}, "only read with first_stage: sparse-centroids"),
    ({"first_stage": "sparse-centroids", "centroids": 1 << 15}, "centroids must be an integer"),
    ({"n_probe": 0}, "n_probe must be an integer"),
])
def test_bad_first_stage_options(options: dict, message: str) -> None:
    with pytest.raises(QdrantOptionError, match=message):
        check_options(options)


def test_size_rule() -> None:
    assert cents.size_for(0, 8192) == 16
    assert cents.size_for(128 * 256, 8192) == 1024  # 8 sqrt(32768) = 1448
    assert cents.size_for(128 * 20000, 8192) == 8192 and cents.size_for(128 * 20000, 16384) == 8192
    assert cents.size_for(10**9, 16384) == 16384


@pytest.mark.parametrize("weight", cents.WEIGHTS)
def test_page_and_query_vectors_against_brute_force(weight: str) -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    book = cents.train(_unit(rng.standard_normal((400, DIM))), 32, generation=3)
    page = _unit(rng.standard_normal((12, DIM)))
    (ids, values), = cents.Coder([book], weight).pages([page])
    sims = page @ book.centroids.T  # (12, 32)
    nearest = sims.argmax(axis=1)
    assert ids == sorted({int(c) + (3 << cents.CENTROID_BITS) for c in nearest})
    for i, v in zip(ids, values):
        c = i - (3 << cents.CENTROID_BITS)
        expected = {"presence": 1.0, "count": float((nearest == c).sum()),
                    "sim": max(float(sims[nearest == c, c].max()), 1e-3)}[weight]
        assert v == pytest.approx(expected, abs=1e-5)
    q = _unit(rng.standard_normal((3, DIM)))
    qids, qvals = cents.Coder([book], weight).query(q, 2)
    qs = q @ book.centroids.T  # (3, 32)
    want: dict[int, float] = {}
    for row in qs:
        for c in np.argsort(-row)[:2]:
            want[int(c) + (3 << cents.CENTROID_BITS)] = want.get(int(c) + (3 << cents.CENTROID_BITS), 0.0) + max(
                float(row[c]), 0.0)
    want = {k: v for k, v in want.items() if v > 0}
    assert qids == sorted(want) and qvals == pytest.approx([want[i] for i in sorted(want)], abs=1e-5)


def test_codebook_file_is_checked(tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    book = cents.train(_unit(np.random.default_rng(0).standard_normal((100, DIM))), 16, generation=1)
    cents.save(tmp_path, book)
    assert cents.load(tmp_path, book.record()).key == book.key
    with pytest.raises(cents.CentroidsError, match="not 16 hex digits"):
        cents.load(tmp_path, {**book.record(), "key": "../../etc/passwd"})
    with pytest.raises(cents.CentroidsError, match="does not match the manifest"):
        cents.load(tmp_path, {**book.record(), "size": 17})
    path = cents.file_of(tmp_path, book.key)
    np.save(path, book.centroids[::-1])  # same shape, other content
    with pytest.raises(cents.CentroidsError, match=f"{path.name}.*does not match"):
        cents.load(tmp_path, book.record())
    path.unlink()
    with pytest.raises(cents.CentroidsError, match="cannot be read"):
        cents.load(tmp_path, book.record())


@pytest.mark.parametrize("where", LOCATIONS)
def test_sparse_prefetch_finds_near_duplicate_pages(where: str, tmp_path: Path) -> None:
    index = _create(tmp_path, where, prefetch=24, n_probe=4)
    with index:
        _add(index, 0, 36)
        assert _state(index)["codebooks"] == [] and index._first_stage(None, 5).coder is None  # pooled until trained
        _add(index, 36, 84)
        state = _state(index)
        assert len(state["codebooks"]) == 1 and not state["pending"] and state["tokens"] == 120 * 10
        assert index._first_stage(None, 5).coder is not None and not index._first_stage(None, 5).exact
        book = state["codebooks"][0]
        assert book["generation"] == 2 and state["trained_at"] == 96  # trained at 48 pages, again at 96
        assert _vector_names(index) == {"centroids-2"} and _generations(index, "centroids-2") == {2}
        found, recall = 0, []
        targets = list(range(0, 120, 7))
        hits = index.search([_query(i) for i in targets], 5)
        for i, got in zip(targets, hits):
            ids = [h.record.page_id for h in got]
            found += ids[0] == _exact_top(_query(i), range(120), 1)[0]
            recall.append(len(set(ids) & set(_exact_top(_query(i), range(120), 5))) / 5)
            exact = {pid: s for pid, s in ((h.record.page_id, h.score) for h in got)}
            for h in got:  # scores are exact MaxSim of the candidates
                j = int(h.record.page_id.split("-")[0], 16)
                assert exact[h.record.page_id] == pytest.approx(float((_query(i) @ _page(j).T).max(axis=1).sum()),
                                                                 abs=1e-4)
        assert found >= len(targets) - 1 and np.mean(recall) >= 0.7, (found, recall)
        index.options["first_stage"] = "pooled"  # the page-mean prefetch of the same size does worse here
        pooled = [len({h.record.page_id for h in got} & set(_exact_top(_query(i), range(120), 5))) / 5
                  for i, got in zip(targets, index.search([_query(i) for i in targets], 5))]
        assert np.mean(pooled) < np.mean(recall)
        index.options["first_stage"] = "sparse-centroids"
        index.options["prefetch_pooled"] = 24  # the union of both prefetches: never fewer of the exact hits
        fused = [len({h.record.page_id for h in got} & set(_exact_top(_query(i), range(120), 5))) / 5
                 for i, got in zip(targets, index.search([_query(i) for i in targets], 5))]
        assert all(f >= r for f, r in zip(fused, recall))
        index.options["prefetch_pooled"] = 0
        # a filter no larger than the prefetch: exact MaxSim over the filtered pages
        where_ = {"doc": [3, 4]}
        assert index._first_stage(index._filter(where_), 5).exact
        got = index.search([_query(20)], 5, where=where_)[0]
        assert [h.record.page_id for h in got] == _exact_top(_query(20), range(18, 30), 5)


@pytest.mark.parametrize("where", LOCATIONS)
def test_retrain_as_the_collection_doubles_even_at_the_cap(where: str, tmp_path: Path) -> None:
    index = _create(tmp_path, where, prefetch=12, centroids=64, codebook_retrain=False)
    with index:  # the earlier rule: a new codebook only while the size rule doubles it, frozen at the cap
        _add(index, 0, 48, per_source=48)  # 480 tokens: 128 centroids capped at 64, trained on the first add
        first = _state(index)["codebooks"]
        assert [b["generation"] for b in first] == [1]
        _add(index, 48, 96, per_source=48)
        assert _state(index)["codebooks"] == first
    index = _create(tmp_path / "b", where, prefetch=12, centroids=64)
    with index:  # the default: a new codebook each time the pages cross 48 * 2**j, at the cap too
        _add(index, 0, 48, per_source=48)
        gen1 = _state(index)["codebooks"][0]
        assert (gen1["generation"], gen1["size"], _state(index)["trained_at"]) == (1, 64, 48)
        _add(index, 48, 36, per_source=36)  # 84 pages: not yet 96
        assert _state(index)["codebooks"] == [gen1]
        _add(index, 84, 12, per_source=12)  # 96 pages
        state = _state(index)
        gen2 = state["codebooks"][0]
        assert (gen2["generation"], gen2["size"], gen2["vector"], state["pending"]) == (2, 64, "centroids-2", False)
        assert state["trained_at"] == 96 and state["stale"] == [] and gen2["key"] != gen1["key"]
        assert _vector_names(index) == {"centroids-2"} and _generations(index, "centroids-2") == {2}
        files = sorted(p.name for p in index.directory.glob("qdrant-centroids-*.npy"))
        assert files == sorted(f"qdrant-centroids-{b['key']}.npy" for b in (gen1, gen2))  # one generation longer
        hits = index.search([_query(i) for i in (3, 50, 90)], 3)
        assert [h[0].record.page_id for h in hits] == [f"{i:016x}-p00001" for i in (3, 50, 90)]
        _add(index, 96, 96, per_source=48)  # 192 pages: generation 3; generation 1's file goes
        gen3 = _state(index)["codebooks"][0]
        assert gen3["generation"] == 3 and _vector_names(index) == {"centroids-3"}
        assert sorted(p.name for p in index.directory.glob("qdrant-centroids-*.npy")) == sorted(
            f"qdrant-centroids-{b['key']}.npy" for b in (gen2, gen3))


@pytest.mark.parametrize("where", LOCATIONS)
def test_reopened_index_reads_the_codebook_and_searches(where: str, tmp_path: Path) -> None:
    index = _create(tmp_path, where, prefetch=12, n_probe=2)
    with index:
        _add(index, 0, 60, per_source=60)
    with open_backend(tmp_path / "idx") as again:
        assert again.options["first_stage"] == "sparse-centroids"
        got = again.search([_query(30)], 3)[0]
        assert got[0].record.page_id == f"{30:016x}-p00001"
        again.options["n_probe"] = 1  # a search knob, changed on an open index
        assert again.search([_query(30)], 3)[0][0].record.page_id == f"{30:016x}-p00001"
