"""`compact`: every engine rewritten without deleted rows, checked against the index before and a fresh one.

An index of each engine gets sources added, updated (a replaced source's old pages tombstoned) and
deleted; after compaction it must answer every query exactly as before (ids and scores) on the
visual side, and exactly as a fresh index built from the live pages alone on both sides (the BM25
statistics of deleted pages are gone). Page records, text, metadata and images are unchanged;
readers opened before keep answering and move to the compacted state; writers continue.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dse.backends.records import NewPage, NewSource
from dse.storage.page_index import PageIndex

DIM = 16
WORDS = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "lambda", "theta", "zeta"]


def encoder(kind: str) -> dict[str, Any]:
    """A fake encoder description for an index of `kind`."""
    return {"name": f"fake-{kind}", "kind": kind, "input": "image", "model": "m", "revision": None,
            "prompt_version": "1", "dim": DIM, "options": {}}


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


class Corpus:
    """Deterministic sources: `pages` pages each, with vectors of `kind` and texts over a small vocabulary."""

    def __init__(self, kind: str, pages: int = 3, seed: int = 0) -> None:
        self.kind, self.pages, self.seed = kind, pages, seed

    def digest(self, i: int, version: int = 0) -> str:
        return hashlib.sha256(f"{self.seed}-{i}-{version}".encode()).hexdigest()

    def source(self, i: int, version: int = 0, index: PageIndex | None = None) -> tuple[NewSource, Any]:
        from ingest import make_page_id

        digest = self.digest(i, version)
        rng = np.random.default_rng(int(digest[:8], 16))
        texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)))) + f" doc{i}" for _ in range(self.pages)]
        pages = tuple(NewPage(make_page_id(digest, p), p, t, None, {"kind": "pdf", "n": i, "v": version})
                      for p, t in enumerate(texts, 1))
        if self.kind == "single":
            vectors: Any = unit(rng.standard_normal((self.pages, DIM)))  # (pages, dim)
        elif self.kind == "multi":
            vectors = [unit(rng.standard_normal((int(rng.integers(3, 9)), DIM))) for _ in range(self.pages)]
        else:
            assert index is not None
            vectors = index.tokenize(texts)
        return NewSource(f"/docs/doc{i:04d}.pdf", digest, "pdf", pages), vectors

    def queries(self, n: int = 6, seed: int = 7) -> Any:
        rng = np.random.default_rng(seed)
        if self.kind == "single":
            return unit(rng.standard_normal((n, DIM)))  # (n, dim)
        if self.kind == "multi":
            return [unit(rng.standard_normal((4, DIM))) for _ in range(n)]
        return [list(rng.choice(WORDS, size=2)) for _ in range(n)]


def text_queries(n: int = 6) -> list[str]:
    rng = np.random.default_rng(3)
    return [" ".join(rng.choice(WORDS, size=2)) for _ in range(n)] + ["doc5 alpha", "doc12"]


def build(directory: Path, corpus: Corpus, options: dict | None, n: int = 24, group: int = 3) -> PageIndex:
    """An index of `n` sources committed in groups, then updates and deletes: about a third of the rows dead."""
    index = PageIndex.create(directory, encoder(corpus.kind), options, image_size=64)

    def with_images(src: NewSource) -> NewSource:
        image = lambda p: index.store_image(p.page_id, Image.new("RGB", (40, 30), (p.page * 40, 90, 200)))  # noqa: E731
        return dataclasses.replace(src, pages=tuple(dataclasses.replace(p, image=image(p)) for p in src.pages))

    for start in range(0, n, group):
        items = [corpus.source(i, index=index) for i in range(start, min(start + group, n))]
        index.add_sources([with_images(s) for s, _ in items], [v for _, v in items])
    for i in range(1, n, 5):  # updates: new bytes at the same path
        src, vec = corpus.source(i, version=1, index=index)
        index.add_sources([with_images(src)], [vec])
    index.delete(sources=[f"/docs/doc{i:04d}.pdf" for i in range(0, n, 4)])
    index.delete(page_ids=[corpus.source(n - 1, index=index)[0].pages[1].page_id])  # one page of a live source
    return index


def fresh(directory: Path, corpus: Corpus, options: dict | None, index: PageIndex) -> PageIndex:
    """A new index holding exactly the live pages of `index`, in their order, with their vectors."""
    out = PageIndex.create(directory, encoder(corpus.kind), options, image_size=0)
    live = index.live_pages()
    vectors = index.page_vectors([r.page_id for r in live]) if corpus.kind != "text" else None
    by_source: dict[str, list[int]] = {}
    for i, rec in enumerate(live):
        by_source.setdefault(rec.source, []).append(i)
    sources, vecs = [], []
    for path, idx in by_source.items():
        pages = tuple(NewPage(live[i].page_id, live[i].page, live[i].text, None, live[i].metadata) for i in idx)
        sources.append(NewSource(path, hashlib.sha256(path.encode()).hexdigest(), "pdf", pages))
        if corpus.kind == "single":
            vecs.append(np.stack([vectors[i] for i in idx]))
        elif corpus.kind == "multi":
            vecs.append([vectors[i] for i in idx])
        else:
            vecs.append(index.tokenize([live[i].text for i in idx]))
    out.add_sources(sources, vecs)  # one group: as compaction's one chunk (< 1024 pages)
    return out


def hits(index: PageIndex, queries: Any, k: int = 12, text: bool = False, **kw: Any) -> list[list[tuple[str, float]]]:
    found = index.search_text(queries, k, **kw) if text else index.search(queries, k, **kw)
    return [[(s.record.page_id, round(s.score, 4)) for s in q] for q in found]


def records(index: PageIndex) -> list[tuple]:
    return [(r.page_id, r.source, r.page, r.text, r.image, r.metadata) for r in index.live_pages()]


ENGINES = [
    ("single", None),
    ("single", {"hnsw": True}),
    ("single", {"mode": "int8", "n_lists": 2, "n_probe": 1, "n_candidates": 8}),
    ("single", {"mode": "binary", "n_candidates": 8}),
    ("multi", None),
    ("text", None),
]


@pytest.mark.parametrize("kind,options", ENGINES, ids=[f"{k}-{o}" for k, o in ENGINES])
def test_compaction_answers_as_before_and_as_a_fresh_index(tmp_path: Path, kind: str, options: dict | None) -> None:
    corpus = Corpus(kind)
    index = build(tmp_path / "idx", corpus, options)
    q = corpus.queries()
    before, before_records = hits(index, q), records(index)
    before_where = hits(index, q, where={"v": 1})
    before_centroids = getattr(index.view().engine, "centroids", None)
    assert (before_centroids is not None) == bool(options and options.get("n_lists"))  # trained before
    counts = index.counts()
    assert counts.deleted_pages > 0
    reclaim = index.reclaimable()
    assert reclaim.rows == counts.deleted_pages and reclaim.bytes > 0

    report = index.compact()
    assert report.compacted and report.generation == 1
    assert (report.pages, report.rows_removed) == (counts.pages, counts.deleted_pages)
    assert report.sources_removed == counts.deleted_sources and report.bytes_after < report.bytes_before
    after = index.counts()
    assert (after.rows, after.pages, after.deleted_pages, after.deleted_sources) == (counts.pages, counts.pages, 0, 0)
    assert [r.row for r in index.live_pages()] == list(range(counts.pages))  # renumbered in order
    assert records(index) == before_records  # ids, sources, text, images, metadata unchanged
    for rec in index.live_pages():
        assert index.page_image(rec.page_id).size == (40, 30)
    if kind != "text":
        assert hits(index, q) == before  # the visual side: same pages, same scores (IVF: centroids kept)
        assert hits(index, q, where={"v": 1}) == before_where
    oracle = fresh(tmp_path / "fresh", corpus, options, index)
    ivf = index.view().engine.centroids is not None if options and options.get("n_lists") else False
    if not ivf:  # a fresh index of the live pages (below 40 rows a list) trains no centroids
        assert hits(index, q) == hits(oracle, q)
        assert hits(index, q, where={"v": 1}) == hits(oracle, q, where={"v": 1})
    else:
        np.testing.assert_array_equal(index.view().engine.centroids, before_centroids)
    if kind != "text":  # the BM25 side reclaims the deleted pages' statistics: as the fresh index's
        assert hits(index, text_queries(), text=True) == hits(oracle, text_queries(), text=True)
    reopened = PageIndex.open(tmp_path / "idx")
    assert hits(reopened, q) == hits(index, q) and records(reopened) == before_records
    assert sorted(p.name for p in (tmp_path / "idx").iterdir() if p.name.startswith(("vectors", "text"))) == (
        ["vectors.1"] if kind == "text" else ["text.1", "vectors.1"])
    again = index.compact()
    assert not again.compacted and "no deleted pages" in again.message and index.reclaimable().rows == 0


def test_bm25_statistics_of_deleted_pages_are_reclaimed(tmp_path: Path) -> None:
    corpus = Corpus("single")
    index = build(tmp_path / "idx", corpus, None)
    text = index.view().text_engine
    assert len(text) == index.counts().rows  # deleted pages still counted by BM25 before
    index.compact()
    assert len(index.view().text_engine) == index.counts().pages
    oracle = fresh(tmp_path / "fresh", corpus, None, index)
    np.testing.assert_allclose(index.view().text_engine.scores([["alpha"], ["zeta", "doc3"]]),
                               oracle.view().text_engine.scores([["alpha"], ["zeta", "doc3"]]), rtol=1e-6)


def test_a_reader_opened_before_keeps_answering_then_moves_to_the_compacted_state(tmp_path: Path) -> None:
    corpus = Corpus("multi")
    writer = build(tmp_path / "idx", corpus, None)
    reader = PageIndex.open(tmp_path / "idx")  # another process, as `dse serve` beside `dse compact`
    q, tq = corpus.queries(), text_queries()
    before = hits(reader, q)
    old_view = reader.view()
    seen: dict[str, Any] = {}

    def stage(name: str) -> None:
        if name == "written":  # new generation on disk, not switched: the reader answers from its state
            seen["written"] = (hits(reader, q), reader.view().generation, reader.refresh())
        if name == "committed":  # switched; the old directories not yet removed
            seen["committed"] = hits(reader, q, view=old_view)

    writer.compact(stage)
    assert seen["written"] == (before, 0, 0)
    assert seen["committed"] == before  # an old view's rows are never resolved in the new catalogue
    assert reader.view().generation == 1  # that search moved the reader to the compacted state
    assert not reader.unchanged(old_view)
    reader2 = PageIndex.open(tmp_path / "idx")
    assert hits(reader2, q) == before and hits(reader2, tq, text=True) == hits(writer, tq, text=True)
    late = PageIndex.open(tmp_path / "idx")  # a reader that refreshes explicitly
    assert late.refresh() == 0 and hits(late, q, where={"n": 5}) == hits(writer, q, where={"n": 5})
    assert [r.page_id for r in reader.live_pages()] == [r.page_id for r in writer.live_pages()]
    ids = [r.page_id for r in writer.live_pages()][:3]
    stale = PageIndex.open(tmp_path / "idx")
    writer.delete(page_ids=[ids[0]])
    writer.compact()  # generation 2: `stale` still holds generation 1's view
    assert [v.shape for v in stale.page_vectors(ids[1:])] == [v.shape for v in writer.page_vectors(ids[1:])]
    assert stale.view().generation == 2


def test_writers_continue_after_compaction_and_compact_again(tmp_path: Path) -> None:
    corpus = Corpus("single")
    index = build(tmp_path / "idx", corpus, None)
    other = PageIndex.open(tmp_path / "idx")  # a second writer opened before the compaction
    index.compact()
    src, vec = corpus.source(100)
    other.add_sources([src], [vec])  # refreshes to generation 1 under the lock, appends there
    assert other.view().generation == 1 and (tmp_path / "idx" / "vectors.1").is_dir()
    index.delete(sources=[src.path, "/docs/doc0001.pdf"])
    report = index.compact()
    assert report.compacted and report.generation == 2 and report.rows_removed == 3 + corpus.pages
    names = sorted(p.name for p in (tmp_path / "idx").iterdir() if p.name.startswith(("vectors", "text")))
    assert names == ["text.2", "vectors.2"]
    reopened = PageIndex.open(tmp_path / "idx")
    q = corpus.queries()
    assert hits(reopened, q) == hits(fresh(tmp_path / "fresh", corpus, None, reopened), q)


def test_leftover_generations_are_removed_and_counted(tmp_path: Path) -> None:
    corpus = Corpus("single")
    index = build(tmp_path / "idx", corpus, None, n=6)
    index.compact()
    junk = tmp_path / "idx" / "vectors.7"  # as an interrupted compaction leaves
    junk.mkdir()
    (junk / "shard-000001.npy").write_bytes(b"x" * 1000)
    assert index.reclaimable().bytes >= 1000 and index.reclaimable().rows == 0
    report = index.compact()
    assert not report.compacted and "interrupted compaction" in report.message and not junk.exists()


def test_read_only_index_refuses_compaction(tmp_path: Path) -> None:
    from dse.storage.layout import ReadOnlyIndexError

    corpus = Corpus("single")
    build(tmp_path / "idx", corpus, None, n=6).close()
    with pytest.raises(ReadOnlyIndexError, match="read-only"):
        PageIndex.open(tmp_path / "idx", read_only=True).compact()


def _engine_hits(index: PageIndex, q: Any, k: int, **knobs: Any) -> list[list[tuple[str, float]]]:
    """A cascade's top-k with per-call knobs, rows resolved to page ids in the index's catalogue."""
    view = index.view()
    scores, rows = view.engine.search(q, k, allowed=index.allowed(view=view), **knobs)
    return [[(rec.page_id, round(float(s), 3)) for rec, s in zip(index.catalogue.pages(r), sc)]
            for sc, r in zip(scores, rows)]


def test_cascade_keeps_its_codebook_and_answers_as_before(tmp_path: Path) -> None:
    from dse.engines.cascade import tokens as cascade_tokens

    corpus = Corpus("multi", pages=4)
    options = {"mode": "cascade", "coarse_tokens": 2}
    index = build(tmp_path / "idx", corpus, options, n=90, group=30)  # 360 pages: a trained codebook
    books = {p.name for p in (tmp_path / "idx" / "vectors").glob("tokens-*.npy")}
    assert books and all(seg.tok is not None for seg in index.view().engine._segments)
    q = corpus.queries(8)
    exhaustive = {"n_probe": 0, "n_coarse": 0, "n_candidates": 0}
    before, before_all = hits(index, q), _engine_hits(index, q, 10, **exhaustive)
    report = index.compact()
    assert report.compacted
    assert {p.name for p in (tmp_path / "idx" / "vectors.1").glob("tokens-*.npy")} == books  # kept, not retrained
    engine = index.view().engine
    assert all(seg.tok is not None and seg.tok.res is not None for seg in engine._segments)
    assert len({seg.tok.codebook.key for seg in engine._segments}) == 1
    assert hits(index, q) == before  # the same codes and residuals: the same candidates and scores
    assert _engine_hits(index, q, 10, **exhaustive) == before_all
    oracle = fresh(tmp_path / "fresh", corpus, options, index)  # trains its own codebook on the live pages
    assert _engine_hits(oracle, q, 10, **exhaustive) == before_all  # exact tier: the same tokens, the same scores
    assert hits(PageIndex.open(tmp_path / "idx"), q) == before
    assert cascade_tokens.MIN_PAGES <= report.pages
