"""Retraining the quantized engine's IVF centroids as the index grows: recall, the doubling rule,
crash safety, readers, old indexes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dse.engines.files import save_npy
from dse.engines.ivf import lists as ivf
from dse.engines.ivf import state as ivf_state
from dse.engines.quantized.engine import QuantizedFlatEngine
from tests.test_single_ivf import DIM, LISTS, same, unit

KNOBS = {"n_candidates": 64, "n_lists": LISTS, "n_probe": 2}
N = 3200


@pytest.fixture(scope="module")
def drifting() -> tuple[np.ndarray, np.ndarray]:
    """3,200 rows of 64 topics, each topic's rows together (documents in order), so the first 700 rows
    (the first training) hold 14 topics; 40 queries near rows of every part."""
    rng = np.random.default_rng(21)
    topics = unit(rng.standard_normal((64, DIM)))
    rows = unit(topics[np.arange(N) * 64 // N] + 0.5 * rng.standard_normal((N, DIM)) / np.sqrt(DIM))
    picked = rng.choice(N, 40, replace=False)
    queries = unit(rows[picked] + 0.5 * rng.standard_normal((40, DIM)) / np.sqrt(DIM))
    return rows, queries


def oracle(rows: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Brute-force top-k rows by inner product: int64 (nq, k)."""
    return np.argsort(-(queries @ rows.T), axis=1, kind="stable")[:, :k]


def recall(got: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(e)) / len(e) for g, e in zip(got, exact)]))


def grown(rows: np.ndarray, directory: Path | None = None, **options: object) -> QuantizedFlatEngine:
    e = QuantizedFlatEngine(**{**KNOBS, **options})
    for a in (0, 700, 1400, 2100, 2800):  # trains at 700; retrains at 1400 and 2800
        e.add(rows[a : a + 700])
        if directory is not None:
            e.save(directory)
    return e


def test_retraining_lifts_recall_on_a_drifting_corpus(drifting) -> None:  # noqa: ANN001
    rows, queries = drifting
    exact = oracle(rows, queries)
    fixed, retrained = grown(rows, retrain=False), grown(rows)
    assert fixed.options()["retrain"] is False and retrained.options()["retrain"] is True
    low, high = recall(fixed.search(queries, 10)[1], exact), recall(retrained.search(queries, 10)[1], exact)
    assert high >= 0.9 and high >= low + 0.15, (low, high)
    every = recall(retrained.search(queries, 10, n_probe=LISTS, n_candidates=0)[1], exact)
    assert every == 1.0  # probing every list, rescoring every row: the oracle


def test_centroids_are_retrained_at_each_doubling(drifting) -> None:  # noqa: ANN001
    rows, _ = drifting
    e = QuantizedFlatEngine(**KNOBS)
    e.add(rows[:700])
    first = e.centroids
    assert e._lists.trained == 700
    e.add(rows[700:1399])
    assert e.centroids is first  # 1,399 < 2 * 700
    e.add(rows[1399:1400])
    assert e.centroids is not first and e._lists.trained == 1400
    np.testing.assert_array_equal(e._lists.all_labels(), ivf.assign(rows[:1400], e.centroids))
    e.add(rows[1400:2799])
    second = e.centroids
    e.add(rows[2799:2800])
    assert e.centroids is not second and e._lists.trained == 2800
    once = QuantizedFlatEngine(**KNOBS, retrain=False)
    once.add(rows[:700])
    kept = once.centroids
    once.add(rows[700:])
    assert once.centroids is kept and once._lists.trained == 700


def test_saves_switch_once_and_the_next_save_removes_the_old_files(tmp_path: Path, drifting) -> None:  # noqa: ANN001
    rows, queries = drifting
    e = QuantizedFlatEngine(**KNOBS)
    for a in (0, 700, 1400, 2100):  # the last add reaches 2,800: retrains, its save switches
        e.add(rows[a : a + 700])
        e.save(tmp_path)
    tag = ivf_state.fingerprint(e.centroids)
    saved, trained = ivf_state.load_centroids(tmp_path, LISTS, DIM)
    assert ivf_state.fingerprint(saved) == tag and trained == 2800
    tags = {p.name.split(".lists-")[1] for p in tmp_path.glob("*.lists-*")}
    assert len(tags) == 2 and f"{tag}.npy" in tags  # the previous centroids' lists stay until the next save
    e.add(rows[2800:])
    e.save(tmp_path)
    assert {p.name for p in tmp_path.glob("*.lists-*")} == {ivf_state.lists_path(tmp_path, i, tag).name
                                                            for i in range(1, 6)}
    loaded = QuantizedFlatEngine.load(tmp_path, rows=N, **e.options())
    np.testing.assert_array_equal(loaded.centroids, e.centroids)
    assert all(shard.listed for shard in loaded._lists._shards)
    same(loaded.search(queries, 10), e.search(queries, 10))


def test_a_crash_before_the_switch_leaves_a_searchable_index_the_next_save_heals(
    tmp_path: Path, drifting, monkeypatch  # noqa: ANN001
) -> None:
    rows, queries = drifting
    e = QuantizedFlatEngine(**KNOBS)
    e.add(rows[:700])
    e.save(tmp_path)
    old = e.centroids
    e.add(rows[700:1400])  # retrains in memory

    def crash(*_: object) -> None:
        raise OSError("killed before the switch")

    monkeypatch.setattr(ivf_state, "save_centroids", crash)
    with pytest.raises(OSError, match="before the switch"):
        e.save(tmp_path)  # new list files and the new shard written, the switch not
    monkeypatch.undo()
    new_tag = ivf_state.fingerprint(e.centroids)
    assert ivf_state.lists_path(tmp_path, 1, new_tag).exists()
    opened = QuantizedFlatEngine.load(tmp_path, rows=1400, **KNOBS)
    np.testing.assert_array_equal(opened.centroids, old)  # the old centroids, the new shard re-assigned
    plain = QuantizedFlatEngine(n_candidates=64)
    plain.add(rows[:1400])
    same(opened.search(queries, 10, n_probe=LISTS), plain.search(queries, 10))
    exact = oracle(rows[:1400], queries)
    np.testing.assert_array_equal(opened.search(queries, 10, n_probe=LISTS, n_candidates=0)[1], exact)
    opened.save(tmp_path)  # no new rows: retrains (due), writes the lists, switches
    saved, trained = ivf_state.load_centroids(tmp_path, LISTS, DIM)
    assert trained == 1400 and ivf_state.fingerprint(saved) == ivf_state.fingerprint(opened.centroids)
    np.testing.assert_array_equal(saved, e.centroids)  # the same seeded sample: the same centroids
    healed = QuantizedFlatEngine.load(tmp_path, rows=1400, **KNOBS)
    assert all(shard.listed for shard in healed._lists._shards)  # every list file read, none re-assigned
    same(healed.search(queries, 10), e.search(queries, 10))


def test_a_reader_opened_before_the_switch_keeps_searching_and_follows(tmp_path: Path, drifting) -> None:  # noqa: ANN001
    rows, queries = drifting
    writer = QuantizedFlatEngine(**KNOBS)
    writer.add(rows[:1000])
    writer.save(tmp_path)
    reader = QuantizedFlatEngine.load(tmp_path, rows=1000, **KNOBS)
    before = reader.search(queries, 10)
    writer.add(rows[1000:2000])  # crosses 1,400: retrains
    writer.save(tmp_path)
    writer.add(rows[2000:2100])
    writer.save(tmp_path)  # removes the old centroids' list files
    assert not ivf_state.lists_path(tmp_path, 1, ivf_state.fingerprint(reader.centroids)).exists()
    same(reader.search(queries, 10), before)
    reader.extend(2100)
    np.testing.assert_array_equal(reader.centroids, writer.centroids)
    assert all(shard.listed for shard in reader._lists._shards)
    same(reader.search(queries, 10), writer.search(queries, 10))


def test_an_old_index_opens_as_before_and_retrains_when_it_doubles(tmp_path: Path, drifting) -> None:  # noqa: ANN001
    rows, queries = drifting
    e = QuantizedFlatEngine(**KNOBS, retrain=False)
    e.add(rows[:700])
    e.save(tmp_path)
    (tmp_path / ivf_state.CENTROIDS_FILE).unlink()  # as saved before retraining existed: centroids only
    save_npy(tmp_path / ivf_state.LEGACY_CENTROIDS_FILE, e.centroids)
    options = {k: v for k, v in e.options().items() if k != "retrain"}  # an old manifest
    old = QuantizedFlatEngine.load(tmp_path, rows=700, **options)
    np.testing.assert_array_equal(old.centroids, e.centroids)
    assert all(shard.listed for shard in old._lists._shards) and old._lists.trained == 40 * LISTS
    same(old.search(queries, 10), e.search(queries, 10))
    old.add(rows[700:1200])  # below 2 * 640 rows: the old centroids, the old file
    old.save(tmp_path)
    assert (tmp_path / ivf_state.LEGACY_CENTROIDS_FILE).exists() and not (tmp_path / ivf_state.CENTROIDS_FILE).exists()
    old.add(rows[1200:1300])  # reaches 1,280: retrains, switches to the new file
    old.save(tmp_path)
    assert old._lists.trained == 1300 and (tmp_path / ivf_state.CENTROIDS_FILE).exists()
    old.add(rows[1300:1310])
    old.save(tmp_path)  # the next save removes the old file
    assert not (tmp_path / ivf_state.LEGACY_CENTROIDS_FILE).exists()
    again = QuantizedFlatEngine.load(tmp_path, rows=1310, **options)
    same(again.search(queries, 10), old.search(queries, 10))
