"""One suite, every backend: the embedded index directory and Qdrant: qdrant-client's local mode
(with the page-mean and the grid pooling of multi-vector pages, and the sparse-centroids first
stage) and qdrant-edge-py (`edge:PATH`).

Precomputed random vectors (multi- and single-vector) are checked against brute-force exact
scores; filters, text search, delete, update and move behave the same on both backends.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dse.backends import NewPage, NewSource, backend_class, open_backend
from dse.storage.filters import FilterError

DIM = 16
BACKENDS = ["directory", "qdrant", "qdrant-grid", "qdrant-sparse", "qdrant-edge", "qdrant-edge-grid",
            "qdrant-edge-sparse"]
CLASSES = {name: name.split("-")[0] for name in BACKENDS}
WORDS = ["revenue", "segment", "growth", "margin", "forecast", "dividend", "liability", "asset"]


def _options(backend: str, tmp: Path) -> dict:
    if backend == "directory":
        return {}
    pytest.importorskip("qdrant_client")
    options = {"qdrant": str(tmp / "qdrant-data"), "collection": "test"}
    if "edge" in backend:
        pytest.importorskip("qdrant_edge")
        options["qdrant"] = f"edge:{tmp / 'edge-data'}"
    if backend.endswith("grid"):
        options.update(pooling="grid", grid_rows=2)
    if backend.endswith("sparse"):  # a codebook trained on the first add (30 pages), then kept current
        options.update(first_stage="sparse-centroids", codebook_min_pages=8)
    return options


def _encoder(kind: str) -> dict:
    return {"name": f"test-{kind}", "kind": kind, "model": "random", "dim": DIM, "prompt_version": "1", "options": {}}


def _corpus(kind: str, n_sources: int = 6, pages: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    sources, vectors = [], []
    for s in range(n_sources):
        new_pages, vecs = [], []
        for p in range(pages):
            text = " ".join(rng.choice(WORDS, size=6)) + f" unique{s}x{p}"
            meta = {"year": 2018 + s, "team": "a" if s % 2 else "b"}
            new_pages.append(NewPage(f"{s:016x}-p{p + 1:05d}", p + 1, text, None, meta))
            if kind == "multi":
                v = rng.standard_normal((int(rng.integers(3, 9)), DIM)).astype(np.float32)
            else:
                v = rng.standard_normal(DIM).astype(np.float32)
            vecs.append(v / np.linalg.norm(v, axis=-1, keepdims=True))
        sources.append(NewSource(f"/docs/src{s}.pdf", f"digest{s}", "pdf", tuple(new_pages)))
        vectors.append(vecs if kind == "multi" else np.stack(vecs))
    return sources, vectors


def _exact(kind, sources, vectors, q, allowed=None):
    scores = {}
    for src, vecs in zip(sources, vectors):
        for page, v in zip(src.pages, vecs):
            if allowed is not None and not allowed(src, page):
                continue
            scores[page.page_id] = float((q @ v.T).max(axis=1).sum()) if kind == "multi" else float(v @ q)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def _make(backend, tmp, kind):
    index = backend_class(CLASSES[backend]).create(tmp / "idx", _encoder(kind), _options(backend, tmp), image_size=0)
    sources, vectors = _corpus(kind)
    index.add_sources(sources, vectors)
    return index, sources, vectors


def _queries(kind, n=4):
    rng = np.random.default_rng(7)
    if kind == "multi":
        return [rng.standard_normal((4, DIM)).astype(np.float32) for _ in range(n)]
    return rng.standard_normal((n, DIM)).astype(np.float32)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["multi", "single"])
def test_same_hits_as_exact(backend, kind, tmp_path):
    index, sources, vectors = _make(backend, tmp_path, kind)
    with index:
        queries = _queries(kind)
        for q, hits in zip(queries, index.search(queries, 5)):
            exact = _exact(kind, sources, vectors, q)[:5]
            assert [h.record.page_id for h in hits] == [pid for pid, _ in exact]
            np.testing.assert_allclose([h.score for h in hits], [s for _, s in exact], rtol=1e-4, atol=1e-4)
        assert len(index) == 30 and index.counts().sources == 6


@pytest.mark.parametrize("backend", BACKENDS)
def test_filters(backend, tmp_path):
    index, sources, vectors = _make(backend, tmp_path, "multi")
    with index:
        q = _queries("multi", 1)
        cases = [
            ({"team": "a"}, lambda s, p: p.metadata["team"] == "a"),
            ({"year": {"gte": 2020, "lt": 2022}}, lambda s, p: 2020 <= p.metadata["year"] < 2022),
            ({"page": {"gte": 2}, "team": {"ne": "a"}}, lambda s, p: p.page >= 2 and p.metadata["team"] != "a"),
            ({"source": {"glob": "/docs/src[12].pdf"}}, lambda s, p: s.path in ("/docs/src1.pdf", "/docs/src2.pdf")),
            ({"source": ["/docs/src0.pdf", "/docs/src5.pdf"]}, lambda s, p: s.path in ("/docs/src0.pdf", "/docs/src5.pdf")),
            ({"year": {"not_in": [2018, 2019]}}, lambda s, p: p.metadata["year"] not in (2018, 2019)),
        ]
        for where, accept in cases:
            hits = index.search(q, 8, where=where)[0]
            exact = _exact("multi", sources, vectors, q[0], accept)[:8]
            assert [h.record.page_id for h in hits] == [pid for pid, _ in exact], where
        with pytest.raises(FilterError, match="colour"):
            index.search(q, 3, where={"colour": "red"})


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_search(backend, tmp_path):
    index, _, _ = _make(backend, tmp_path, "single")
    with index:
        hits = index.search_text(["unique3x2", "unique0x4 revenue"], 5)
        assert hits[0][0].record.page_id == f"{3:016x}-p00003"
        assert hits[1][0].record.page_id == f"{0:016x}-p00005"
        assert index.search_text(["unique3x2"], 5, where={"team": "b"})[0] == [] or all(
            h.record.metadata["team"] == "b" for h in index.search_text(["unique3x2"], 5, where={"team": "b"})[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_delete_update_move(backend, tmp_path):
    index, sources, vectors = _make(backend, tmp_path, "single")
    with index:
        report = index.delete(page_ids=[f"{1:016x}-p00001", "nope"], sources=["/docs/src2.pdf"])
        assert (report.pages, report.missing) == (6, ("nope",))
        assert report.sources == 1 and len(index) == 24
        assert index.has_source("digest1") and index.source_digest("/docs/src1.pdf") == "digest1"  # a page less
        q = _queries("single", 1)
        live = lambda s, p: s.path != "/docs/src2.pdf" and p.page_id != f"{1:016x}-p00001"
        hits = index.search(q, 30)[0]
        assert [h.record.page_id for h in hits] == [pid for pid, _ in _exact("single", sources, vectors, q[0], live)]
        # update: new bytes at the same path replace the old pages in one add
        new, new_vecs = _corpus("single", n_sources=1, pages=2, seed=3)
        updated = NewSource("/docs/src0.pdf", "digest-new", "pdf",
                            tuple(NewPage(f"{99:016x}-p{i + 1:05d}", i + 1, "fresh text", None, {}) for i in range(2)))
        index.add_sources([updated], new_vecs)
        assert index.source_digest("/docs/src0.pdf") == "digest-new" and len(index) == 21
        assert not index.has_source("digest0") and index.has_source("digest-new")
        assert index.move_source("/docs/src3.pdf", "/docs/moved.pdf")
        assert index.source_of_digest("digest3") == "/docs/moved.pdf"
        assert {s["path"] for s in index.sources()} == {"/docs/src0.pdf", "/docs/moved.pdf", "/docs/src1.pdf",
                                                         "/docs/src4.pdf", "/docs/src5.pdf"}
        assert index.page(f"{3:016x}-p00001").source == "/docs/moved.pdf"
        with pytest.raises(KeyError):
            index.page(f"{2:016x}-p00001")
    # reopened through the manifest's backend: the same state
    with open_backend(tmp_path / "idx") as again:
        assert type(again).__name__ == {"directory": "PageIndex", "qdrant": "QdrantIndex"}[CLASSES[backend]]
        assert len(again) == 21
        if "edge" in backend:
            assert type(again.client).__name__ == "EdgeClient"
            assert again.manifest.store["qdrant"]["location"] == f"edge:{tmp_path / 'edge-data'}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_readd_is_idempotent(backend, tmp_path):
    index, sources, vectors = _make(backend, tmp_path, "multi")
    with index:
        index.add_sources(sources[:2], vectors[:2])  # the same pages again (a re-run after a crash)
        assert len(index) == 30 and index.counts().sources == 6


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_query_without_terms(backend, tmp_path):
    index, _, _ = _make(backend, tmp_path, "single")
    with index:
        hits = index.search_text(["the and of", ""], 3)
        assert all(h.score == 0 for q in hits for h in q)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["multi", "single"])
def test_live_pages_and_their_vectors(backend, kind, tmp_path):
    index, sources, vectors = _make(backend, tmp_path, kind)
    with index:
        index.delete(sources=["/docs/src1.pdf"])
        live = [(p.page_id, v) for src, vecs in zip(sources, vectors) if src.path != "/docs/src1.pdf"
                for p, v in zip(src.pages, vecs)]
        assert [r.page_id for r in index.live_pages()] == [pid for pid, _ in live]
        got = index.page_vectors([pid for pid, _ in live[::-1]])
        for (_, want), have in zip(live[::-1], got):
            np.testing.assert_allclose(have, want, rtol=2e-3, atol=2e-3)  # float16 storage in some engines
        with pytest.raises(KeyError):
            index.page_vectors([f"{1:016x}-p00001"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_metadata_counts_and_the_ingest_record(backend, tmp_path):
    index, _, _ = _make(backend, tmp_path, "single")
    with index:
        assert index.metadata_count("team", "a") == 15 and index.metadata_count("year", 2019) == 5
        assert index.metadata_count("team", "c") == 0 and index.metadata_count("colour", "red") == 0
        index.delete(sources=["/docs/src1.pdf"])  # team a, 2019: live pages only are counted
        assert index.metadata_count("team", "a") == 10 and index.metadata_count("year", 2019) == 0
        index.record_ingest({"ocr": {"mode": "never"}})  # after pages added unrecorded
        index.record_ingest({"ocr": {"mode": "never"}})
        index.record_ingest({"ocr": {"mode": "auto"}})
        assert index.ocr_summary() == {"setting": {"mode": "auto"}, "mixed": True, "earlier": [{"mode": "never"}],
                                       "unrecorded": True, "pages": 0}
    with open_backend(tmp_path / "idx") as again:
        assert again.manifest.store["ingest"] == {"ocr": {"mode": "auto"}, "ocr_mixed": True, "ocr_unrecorded": True,
                                                  "ocr_earlier": [{"mode": "never"}]}
        assert again.counts().pages == 25
