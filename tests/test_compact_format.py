"""The format gate of compacted indexes: version 2 once `dse compact` switched generations, 1 before.

A dse older than compaction reads only version 1 and would read a compacted index's first
generation (`vectors/`, `text/`), so compaction writes version 2; this dse reads both and says
to upgrade for a newer one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dse.storage.manifest import COMPACTED_FORMAT_VERSION, FORMAT_VERSION, IndexFormatError, read_manifest
from dse.storage.page_index import PageIndex
from tests.test_compact import Corpus, build, encoder, hits


def _format(directory: Path) -> int:
    """The format version as written in the manifest file (what an older dse checks)."""
    return json.loads((directory / "manifest.json").read_text(encoding="utf-8"))["format_version"]


def test_uncompacted_index_stays_version_1(tmp_path: Path) -> None:
    corpus = Corpus("single")
    PageIndex.create(tmp_path / "new", encoder("single")).close()
    assert _format(tmp_path / "new") == FORMAT_VERSION == 1
    index = build(tmp_path / "idx", corpus, None, n=6)  # adds, updates, deletes: still generation 0
    assert _format(tmp_path / "idx") == 1 and index.view().generation == 0
    clean = PageIndex.create(tmp_path / "clean", encoder("single"), image_size=0)
    src, vec = corpus.source(50)
    clean.add_sources([src], [vec])
    assert not clean.compact().compacted  # nothing to reclaim: no switch, no new format
    assert _format(tmp_path / "clean") == 1


def test_compacted_index_is_version_2_opens_and_stays_2(tmp_path: Path) -> None:
    corpus = Corpus("multi")
    directory = tmp_path / "idx"
    index = build(directory, corpus, None)
    stale = PageIndex.open(directory)  # a writer opened before the compaction: its manifest says 1
    before = hits(index, corpus.queries())
    assert _format(directory) == 1
    assert index.compact().compacted
    assert _format(directory) == COMPACTED_FORMAT_VERSION == 2 and index.manifest.format_version == 2
    with PageIndex.open(directory) as reopened:
        assert reopened.manifest.format_version == 2 and reopened.view().generation == 1
        assert hits(reopened, corpus.queries()) == before
    src, vec = corpus.source(200)
    stale.add_sources([src], [vec])  # writes the counts: the format follows the catalogue, not its old copy
    stale.delete(sources=[src.path])
    assert _format(directory) == 2 and stale.manifest.format_version == 2
    with PageIndex.open(directory, read_only=True) as reader:
        assert reader.manifest.format_version == 2 and reader.view().generation == 1
        assert all(hits(reader, corpus.queries()))


def test_a_compaction_that_fails_before_its_switch_leaves_version_1(tmp_path: Path) -> None:
    corpus = Corpus("single")
    index = build(tmp_path / "idx", corpus, None, n=9)
    before = hits(index, corpus.queries())

    def fail(stage: str) -> None:
        if stage == "marked":
            assert _format(tmp_path / "idx") == 2  # written before the catalogue names generation 1
            raise OSError("disk full (simulated by the progress callback)")

    with pytest.raises(OSError, match="disk full"):
        index.compact(fail)
    assert _format(tmp_path / "idx") == 1 and index.view().generation == 0
    with PageIndex.open(tmp_path / "idx") as reopened:
        assert hits(reopened, corpus.queries()) == before


def test_a_newer_format_asks_to_upgrade(tmp_path: Path) -> None:
    corpus = Corpus("single")
    directory = tmp_path / "idx"
    build(directory, corpus, None, n=3).close()
    data = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    (directory / "manifest.json").write_text(json.dumps({**data, "format_version": 3}), encoding="utf-8")
    for opening in (lambda: read_manifest(directory), lambda: PageIndex.open(directory)):
        with pytest.raises(IndexFormatError) as info:
            opening()
        message = str(info.value)
        assert str(directory) in message and "version 3" in message and "versions 1 and 2" in message
        assert "upgrade dse" in message
    (directory / "manifest.json").write_text(json.dumps({**data, "format_version": "two"}), encoding="utf-8")
    with pytest.raises(IndexFormatError, match="format version 'two'; this dse reads versions 1 and 2") as info:
        read_manifest(directory)
    assert "upgrade" not in str(info.value)
