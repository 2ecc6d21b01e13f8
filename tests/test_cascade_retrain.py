"""Retraining the cascade's token codebook as the index grows: re-encoding, crash safety, readers, old indexes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dse.engines.cascade import retrain as cascade_retrain
from dse.engines.cascade import tokens as cascade_tokens
from dse.engines.cascade.engine import CascadeEngine
from dse.engines.files import committed_shards
from tests.test_cascade import oracle
from tests.test_cascade_tokens import DIM, noise, recall, unit

EXHAUSTIVE = {"n_probe": 0, "n_coarse": 0, "n_candidates": 0}


@pytest.fixture(scope="module")
def templated() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """1,200 pages of 60 templates, each its template's 20 tokens (noisy) + 4 of its own; each template's
    pages are together (documents), so the first 300 pages hold 15 of the 60 templates."""
    rng = np.random.default_rng(11)
    templates = [unit(rng.standard_normal((20, DIM))) for _ in range(60)]
    pages, owns = [], []
    for i in range(1200):
        own = unit(rng.standard_normal((4, DIM)))  # (4, DIM)
        owns.append(own)
        pages.append(unit(np.concatenate([templates[i // 20] + noise(rng, 20, 0.1), own])))  # (24, DIM)
    queries = []
    for t in rng.choice(1200, 24, replace=False):
        picked = np.concatenate([templates[t // 20][:3], owns[t][:3]])  # (6, DIM)
        queries.append(unit(0.6 * picked + noise(rng, 6, 0.6)))
    return pages, queries


def keys(engine: CascadeEngine) -> set[str]:
    return {seg.tok.codebook.key for seg in engine._segments}


def test_due_at_each_doubling() -> None:
    m = cascade_tokens.MIN_PAGES
    assert not cascade_retrain.due(0, m - 1) and cascade_retrain.due(0, m) and cascade_retrain.due(m - 1, m)
    assert cascade_retrain.due(m, 2 * m) and not cascade_retrain.due(2 * m, 3 * m) and cascade_retrain.due(3 * m, 4 * m)
    assert not cascade_retrain.due(4 * m, 7 * m) and cascade_retrain.due(7 * m, 8 * m)
    crossings = sum(cascade_retrain.due(a, a + 1024) for a in range(0, 100 * 1024, 1024))
    assert crossings == 1 + int(np.log2(100 * 1024 / m)) - int(np.log2(1024 / m))  # about log2(growth) retrains


def test_growing_index_ends_on_one_codebook_and_removes_the_old_files(tmp_path: Path, templated) -> None:  # noqa: ANN001
    pages, queries = templated
    engine = CascadeEngine()
    for a in range(0, 1200, 300):  # 300 (trains), 600 (crosses 512: retrains), 900, 1200 (crosses 1024)
        engine.add(pages[a : a + 300])
        engine.save(tmp_path)
        assert len(keys(engine)) == 1 and all(seg.tok.res is not None for seg in engine._segments)
    assert len(keys(engine)) == 1
    (key,) = keys(engine)
    books = {p.name for p in tmp_path.glob("tokens-*.npy")}
    assert f"tokens-{key}.npy" in books and len(books) == 2  # the previous codebook stays until the next save
    engine.add(pages[:10])
    engine.save(tmp_path)
    assert {p.name for p in tmp_path.glob("tokens-*.npy")} == {f"tokens-{key}.npy"}
    for number in committed_shards(tmp_path, engine.marker):  # each shard keeps one set of lists: its ref's
        ref, keyed = cascade_tokens.shard_key(tmp_path, number)
        assert ref == key and keyed == (number <= 3)  # shards 1-3 re-encoded, 4-5 written on this codebook
        names = {p.name[len("shard-000000"):] for p in tmp_path.glob(f"shard-{number:06d}.tok*")}
        assert names == {cascade_tokens.FILES[0], *cascade_tokens.names(key if keyed else None)}
    loaded = CascadeEngine.load(tmp_path, rows=1210, **engine.options())
    assert keys(loaded) == {key} and loaded.knobs()["stage"] == "residual"
    for a, b in zip(engine.search(queries, 10), loaded.search(queries, 10)):
        np.testing.assert_array_equal(a, b)
    data = pages + pages[:10]
    exact = oracle(queries, data)
    assert recall(loaded.search(queries, 10, **EXHAUSTIVE)[1], exact) == 1.0
    assert recall(loaded.search(queries, 10, n_shortlist=64)[1], exact) >= 0.9


def test_retraining_lifts_the_recall_of_later_documents(templated) -> None:  # noqa: ANN001
    pages, queries = templated
    exact = oracle(queries, pages)
    got = {}
    for name, grow in (("first-add codebook", False), ("retrained", True)):
        engine = CascadeEngine()
        if not grow:  # the codebook of the first 300 pages, kept: what the engine did before retraining
            engine.add(pages[:300])
            book = engine._codebook
            engine._like = engine._segments[0].tok.res
            for a in range(300, 1200, 300):
                from dse.engines.cascade.encode import encode_pages

                engine._append(encode_pages(pages[a : a + 300], DIM, 1, 32, "float16", True, book, 2, engine._like))
        else:
            for a in range(0, 1200, 300):
                engine.add(pages[a : a + 300])
        got[name] = recall(engine.search(queries, 10, n_probe=2, n_shortlist=20)[1], exact)
    assert got["retrained"] >= 0.9 and got["retrained"] >= got["first-add codebook"] + 0.15, got  # 0.95, 0.64


def test_a_crash_during_reencoding_leaves_a_searchable_index_the_next_save_finishes(
    tmp_path: Path, templated, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    from dse.engines import files

    pages, queries = templated
    engine = CascadeEngine()
    engine.add(pages[:300])
    engine.save(tmp_path)
    engine.add(pages[300:600])  # crosses 512: retrains; the save re-encodes shard 1
    real, writes = files.save_npy, []

    def dying(path: Path, array: np.ndarray) -> None:
        writes.append(Path(path).name)
        if Path(path).name == "shard-000001.tok-ref.npy":
            raise OSError("killed")  # after shard 1's new files, before its ref switches
        real(path, array)

    monkeypatch.setattr(files, "save_npy", dying)
    monkeypatch.setattr(cascade_tokens, "save_npy", dying)
    with pytest.raises(OSError, match="killed"):
        engine.save(tmp_path)
    monkeypatch.undo()
    assert any(".tok-" in w and "shard-000001" in w and "ref" not in w for w in writes)
    opened = CascadeEngine.load(tmp_path, rows=600, **engine.options())
    assert len(keys(opened)) == 2  # shard 1 still on the first codebook, its half-written new files ignored
    exact = oracle(queries, pages[:600])
    assert recall(opened.search(queries, 10, **EXHAUSTIVE)[1], exact) == 1.0
    assert opened.search(queries, 10)[1].shape == (len(queries), 10)
    opened.add(pages[600:610])
    opened.save(tmp_path)  # finishes the job
    assert len(keys(opened)) == 1
    again = CascadeEngine.load(tmp_path, rows=610, **engine.options())
    assert keys(again) == keys(opened)
    assert recall(again.search(queries, 10, **EXHAUSTIVE)[1], oracle(queries, pages[:610])) == 1.0


def test_a_reader_opened_before_the_switch_keeps_searching(tmp_path: Path, templated) -> None:  # noqa: ANN001
    pages, queries = templated
    writer = CascadeEngine()
    writer.add(pages[:300])
    writer.save(tmp_path)
    reader = CascadeEngine.load(tmp_path, rows=300, **writer.options())
    before = reader.search(queries, 10)
    writer.add(pages[300:600])
    writer.save(tmp_path)  # re-encodes shard 1 with the new codebook
    writer.add(pages[600:610])
    writer.save(tmp_path)  # removes shard 1's first lists
    for a, b in zip(before, reader.search(queries, 10)):  # its memory maps outlive the files
        np.testing.assert_array_equal(a, b)
    reader.extend(610)  # the new shards, and shard 1's re-encoded lists (its ref names the new codebook)
    fresh = CascadeEngine.load(tmp_path, rows=610, **writer.options())
    assert len(keys(fresh)) == 1 and keys(reader) == keys(fresh)
    exact = oracle(queries, pages[:610])
    assert recall(reader.search(queries, 10, **EXHAUSTIVE)[1], exact) == 1.0
    for a, b in zip(fresh.search(queries, 10), reader.search(queries, 10)):
        np.testing.assert_array_equal(a, b)


def test_an_old_index_gets_residual_lists_on_its_next_save(tmp_path: Path, templated) -> None:  # noqa: ANN001
    pages, queries = templated
    old = CascadeEngine(residual_bits=0)
    old.add(pages[:300])
    old.save(tmp_path)
    opened = CascadeEngine.load(tmp_path, rows=300, **{**old.options(), "residual_bits": 2})
    assert opened.knobs()["stage"] == "tokens"
    opened.add(pages[300:320])
    opened.save(tmp_path)
    assert opened.knobs()["stage"] == "residual" and len(keys(opened)) == 1
    exact = oracle(queries, pages[:320])
    assert recall(opened.search(queries, 10, **EXHAUSTIVE)[1], exact) == 1.0


def test_small_adds_train_a_codebook_once_the_index_is_large_enough(tmp_path: Path, templated) -> None:  # noqa: ANN001
    pages, _ = templated
    engine = CascadeEngine()
    for a in range(0, 300, 100):  # no add reaches MIN_PAGES alone
        engine.add(pages[a : a + 100])
        engine.save(tmp_path)
    assert engine._codebook is not None and all(seg.tok is not None for seg in engine._segments)
    assert len(keys(engine)) == 1 and len(committed_shards(tmp_path, engine.marker)) == 3
