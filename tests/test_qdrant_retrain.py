"""Retraining the sparse-centroids codebook: a killed writer resumes, bounded passes, readers follow it.

Real collections (qdrant-client's local mode and qdrant-edge-py) and real FAISS codebooks. A
`Recorder` wraps the real client to see the requests the writer makes (and, to stand for a kill
in the middle of a re-encode, to stop it after a number of rewrites); every request still goes to
the real collection. Neither local nor edge mode lets a second process (or a second client in
this process) open the folder, so "another process's reader" is a second `QdrantIndex` on the
same client with its own manifest and codebooks, as a `dse serve` beside a `dse index` on a
Qdrant server would be.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_qdrant_sparse import LOCATIONS, _add, _create, _generations, _query, _state, _vector_names

from dse.backends.qdrant import query, training
from dse.backends.qdrant.backend import QdrantIndex
from dse.backends.qdrant.schema import MULTI
from dse.storage.manifest import read_manifest


class Killed(Exception):
    """The writer stopped where a kill -9 would have stopped it."""


class Recorder:
    """The real client, with its vector reads and rewrites recorded (and stopped after `stop_after` rewrites)."""

    def __init__(self, inner: Any, stop_after: int | None = None) -> None:
        self.inner, self.stop_after = inner, stop_after
        self.rewrites: list[int] = []  # points per update_vectors
        self.reads: list[int] = []  # points (or the limit) per request that reads the multivector field

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def update_vectors(self, name: str, points: list, wait: bool = True) -> Any:
        if self.stop_after is not None and len(self.rewrites) >= self.stop_after:
            raise Killed
        self.rewrites.append(len(points))
        return self.inner.update_vectors(name, points=points, wait=wait)

    def scroll(self, name: str, **kw: Any) -> Any:
        if MULTI in (kw.get("with_vectors") or ()):
            self.reads.append(int(kw["limit"]))
        return self.inner.scroll(name, **kw)

    def retrieve(self, name: str, ids: list, **kw: Any) -> Any:
        if MULTI in (kw.get("with_vectors") or ()):
            self.reads.append(len(ids))
        return self.inner.retrieve(name, ids, **kw)


def _top1(index, pages: tuple[int, ...]) -> list[str]:
    return [h[0].record.page_id for h in index.search([_query(i) for i in pages], 3)]


def _ids(pages: tuple[int, ...]) -> list[str]:
    return [f"{i:016x}-p00001" for i in pages]


@pytest.mark.parametrize("where", LOCATIONS)
def test_a_killed_retrain_keeps_searching_the_old_codebook_and_resumes(where: str, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "BATCH", 8)
    index = _create(tmp_path, where, prefetch=12)
    with index:
        _add(index, 0, 84, per_source=42)  # generation 1, trained at 48 pages
        gen1 = _state(index)["codebooks"][0]
        real = index.client
        index.client = Recorder(real, stop_after=3)
        with pytest.raises(Killed):
            _add(index, 84, 12, per_source=12)  # 96 pages: generation 2, killed after 3 batches of 8
        index.client = real
        state = _state(index)
        assert state["pending"] and state["codebooks"] == [gen1] and state["next"]["generation"] == 2
        assert state["offset"] is not None  # where the re-encode got to
        assert _vector_names(index) == {"centroids-1", "centroids-2"}
        assert _generations(index, "centroids-1") == {1}  # searches use the complete generation meanwhile
        assert index._first_stage(None, 5).vector == "centroids-1"
        assert _top1(index, (3, 50, 90)) == _ids((3, 50, 90))
        index.client = Recorder(real)
        _add(index, 96, 6, per_source=6)  # the next add goes on from the offset (new pages get both vectors)
        rewritten, index.client = sum(index.client.rewrites), real
        assert 96 - 24 <= rewritten < 96  # the 24 pages already rewritten are not (all) done again
        state = _state(index)
        assert not state["pending"] and state["codebooks"] == [state["codebooks"][0]]
        assert state["codebooks"][0]["generation"] == 2 and state["offset"] is None and state["stale"] == []
        assert _vector_names(index) == {"centroids-2"} and _generations(index, "centroids-2") == {2}
        assert _top1(index, (3, 50, 90, 99)) == _ids((3, 50, 90, 99))


@pytest.mark.parametrize("where", LOCATIONS)
def test_retraining_reads_and_rewrites_in_batches(where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "BATCH", 5)
    index = _create(tmp_path, where, prefetch=12)
    with index:
        index.client = Recorder(index.client)
        _add(index, 0, 48, per_source=48)  # trains generation 1 on a sample, re-encodes the 48 pages
        _add(index, 48, 48, per_source=48)  # generation 2
        rec = index.client
        assert _state(index)["codebooks"][0]["generation"] == 2
        assert rec.reads and max(rec.reads) <= 5 and rec.rewrites and max(rec.rewrites) <= 5
        assert sum(rec.rewrites) == 48 + 96  # every stored page once per generation, 5 at a time
        index.client = rec.inner


@pytest.mark.parametrize("where", LOCATIONS)
def test_a_reader_follows_the_writers_codebook(where: str, tmp_path: Path) -> None:
    index = _create(tmp_path, where, prefetch=12)
    with index:
        _add(index, 0, 60, per_source=60)
        reader = QdrantIndex(index.directory, read_manifest(index.directory), index.client, read_only=True)
        assert reader._first_stage(None, 5).vector == "centroids-1"
        assert _top1(reader, (3, 40)) == _ids((3, 40))
        before = reader._first_stage(None, 5)  # what a search read just before the writer's switch
        stale_manifest = reader.manifest
        _add(index, 60, 36, per_source=36)  # 96 pages: generation 2, generation 1's vector removed
        assert _vector_names(index) == {"centroids-2"}
        with pytest.raises(Exception):  # the old generation's vector is gone from the collection
            query.visual(reader.client, reader.collection, "multi", [_query(3)], 3, None, reader.options, before)
        assert reader._first_stage(None, 5).vector == "centroids-2"  # read from the manifest on the next search
        assert _top1(reader, (3, 40, 80)) == _ids((3, 40, 80))
        reader.manifest = stale_manifest  # a reader that read the manifest just before the switch:
        reader._seen = tuple((lambda s: (s.st_ino, s.st_mtime_ns, s.st_size))((index.directory / "manifest.json").stat()))
        assert reader._first_stage(None, 5).vector == "centroids-1"
        assert _top1(reader, (3, 40, 80)) == _ids((3, 40, 80))  # its search fails once, then runs on generation 2
        assert reader._first_stage(None, 5).vector == "centroids-2"
        reader.manifest = stale_manifest
        assert reader.refresh() >= 0 and reader._first_stage(None, 5).vector == "centroids-2"  # refresh re-reads it


@pytest.mark.parametrize("where", LOCATIONS)
def test_a_collection_made_before_a_vector_per_generation_searches_and_moves_on(where: str, tmp_path: Path) -> None:
    from qdrant_client import models

    from dse.backends.qdrant.schema import add_sparse_vector, drop_vector

    index = _create(tmp_path, where, prefetch=12)
    with index:
        _add(index, 0, 60, per_source=60)
        state = _state(index)
        book = dict(state["codebooks"][0])
        # the layout before: every generation in one sparse vector, `centroids`, records without "vector"
        add_sparse_vector(index.client, index.collection, "centroids", False)
        got, _ = index.client.scroll(index.collection, limit=100, with_payload=False, with_vectors=["centroids-1"])
        index.client.update_vectors(index.collection, points=[models.PointVectors(id=str(r.id), vector={
            "centroids": models.SparseVector(indices=list(r.vector["centroids-1"].indices),
                                             values=list(r.vector["centroids-1"].values))}) for r in got], wait=True)
        drop_vector(index.client, index.collection, "centroids-1")
        del book["vector"]
        index.update_store(centroids={"codebooks": [book], "tokens": state["tokens"], "pending": False})
        assert _vector_names(index) == {"centroids"} and index._first_stage(None, 5).vector == "centroids"
        assert _top1(index, (3, 40)) == _ids((3, 40))
        _add(index, 60, 36, per_source=36)  # 96 pages: generation 2 in its own vector; `centroids` removed
        assert _state(index)["codebooks"][0]["vector"] == "centroids-2" and _vector_names(index) == {"centroids-2"}
        assert _top1(index, (3, 40, 80)) == _ids((3, 40, 80))
