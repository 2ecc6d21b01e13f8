"""What holds for a hybrid search on a Qdrant-backed index, which has no read snapshots.

The write epoch (`dse.backends.qdrant.epoch`) is odd while a dse write changes points; a hybrid
search whose two sides straddle a write sees the epoch move and is re-run, so both sides rank
one state. A writer killed mid-write leaves the epoch odd with no lock held: readers go on.
"""

from __future__ import annotations

import numpy as np
import pytest

from dse.backends import NewPage, NewSource, backend_class
from dse.retrieve.first_stage import first_stage

pytest.importorskip("qdrant_client")
DIM = 8
ENCODER = {"name": "t", "kind": "single", "model": "random", "dim": DIM, "prompt_version": "1", "options": {}}


def _source(i: int, text: str) -> tuple[NewSource, np.ndarray]:
    v = np.random.default_rng(i).standard_normal((1, DIM)).astype(np.float32)
    page = NewPage(f"{i:016x}-p00001", 1, text, None, {})
    return NewSource(f"/docs/s{i}.pdf", f"d{i}", "pdf", (page,)), v / np.linalg.norm(v)


def _index(tmp_path, cls=None):
    cls = cls or backend_class("qdrant")
    index = cls.create(tmp_path / "idx", ENCODER, {"qdrant": str(tmp_path / "q")}, image_size=0)
    for i in range(3):
        index.add_sources(*map(lambda x: [x], _source(i, f"falcon page {i}")))
    return index


def test_epoch_is_odd_during_a_write_and_moves_by_two(tmp_path) -> None:
    with _index(tmp_path) as index:
        before = index.view()
        assert before.epoch == 6 and index.unchanged(before)  # 3 adds, 2 steps each
        with index._write_lock():
            during = index.view()
            assert during.epoch == 7 and not index.unchanged(during)  # a writer holds the lock
            assert not index.unchanged(before)
        assert index.view().epoch == 8 and not index.unchanged(during)


def test_a_writer_killed_mid_write_does_not_stall_readers(tmp_path) -> None:
    from dse.backends.qdrant.epoch import _bumped

    with _index(tmp_path) as index:
        _bumped(index.directory)  # the first half of a write, then the writer is gone (no lock held)
        view = index.view()
        assert view.epoch % 2 == 1 and index.unchanged(view)


def test_hybrid_rerun_when_a_write_lands_between_its_two_sides(tmp_path) -> None:
    """A real add lands after the visual side (the worst moment): the pair is re-run on the new state."""
    base = backend_class("qdrant")
    calls: list[int] = []

    class WriteBetweenSides(base):  # the real backend; its first visual search is followed by a real write
        def search(self, queries, k, where=None, view=None):
            out = super().search(queries, k, where, view)
            calls.append(len(self))
            if len(calls) == 1:
                src, vec = _source(9, "falcon falcon falcon nest")
                self.add_sources([src], [vec])
            return out

    index = _index(tmp_path, WriteBetweenSides)
    with index:
        query = np.random.default_rng(9).standard_normal((1, DIM)).astype(np.float32)
        hits = first_stage(index, lambda qs: query, ["falcon nest"], 4, "hybrid", "rrf", 60.0, 0.5)[0]
        assert calls == [3, 4]  # the visual side ran again, on the state the text side saw
        assert hits[0].page_id == f"{9:016x}-p00001"  # top on both sides of the new state
        visual = [h.record.page_id for h in base.search(index, query, 4)[0]]
        assert visual[0] == f"{9:016x}-p00001" and len(visual) == 4
