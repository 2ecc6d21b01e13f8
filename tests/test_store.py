"""The index directory: manifest, catalogue, commit point, reopen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dse.backends.records import NewPage
from dse.retrieve.encoder_check import check_encoder
from dse.storage.catalogue import Catalogue
from dse.storage.manifest import (
    EncoderMismatchError,
    IndexFormatError,
    Manifest,
    read_manifest,
    write_manifest,
)
from dse.storage.page_index import PageIndex

ENC = {"name": "fake", "kind": "single", "input": "image", "model": "m", "revision": None,
       "prompt_version": "1", "dim": 4, "options": {"dim": 4}}


def _pages(prefix: str, n: int) -> list[NewPage]:
    return [NewPage(f"{prefix}-p{i}", i, f"text {prefix} {i}", None, {"kind": "pdf"}) for i in range(1, n + 1)]


def test_manifest_roundtrip_and_version(tmp_path: Path) -> None:
    m = Manifest(encoder=ENC, engine={"hnsw": False}, pages=3, sources=1, dse_version="0.1.0")
    write_manifest(tmp_path, m)
    assert read_manifest(tmp_path) == m
    data = json.loads((tmp_path / "manifest.json").read_text())
    data["format_version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(IndexFormatError, match="format version 99"):
        read_manifest(tmp_path)
    with pytest.raises(IndexFormatError, match="not a dse index"):
        read_manifest(tmp_path / "nope")


def test_manifest_encoder_check_names_the_difference() -> None:
    m = Manifest(encoder=ENC)
    check_encoder(m, dict(ENC, revision="abc"))  # revision alone does not change the vectors' space
    with pytest.raises(EncoderMismatchError, match="dim: index has 4, encoder has 8"):
        check_encoder(m, dict(ENC, dim=8, options={"dim": 8}))
    with pytest.raises(EncoderMismatchError, match="prompt_version"):
        check_encoder(m, dict(ENC, prompt_version="2"))


def test_catalogue_commit_is_all_or_nothing(tmp_path: Path) -> None:
    cat = Catalogue(tmp_path)
    assert cat.commit_source("a.pdf", "d1", "pdf", _pages("a", 3)) == [0, 1, 2]
    # a duplicate page id makes the whole source fail, with nothing half-written
    bad = _pages("b", 2) + [NewPage("a-p1", 9, "", None, {})]
    with pytest.raises(Exception):
        cat.commit_source("b.pdf", "d2", "pdf", bad)
    assert len(cat) == 3 and cat.num_sources() == 1 and not cat.has_digest("d2")
    assert cat.commit_source("c.pdf", "d3", "pdf", _pages("c", 2)) == [3, 4]
    recs = cat.pages([4, 0])
    assert [(r.source, r.page, r.row) for r in recs] == [("c.pdf", 2, 4), ("a.pdf", 1, 0)]
    assert cat.page("c-p1").text == "text c 1"
    with pytest.raises(KeyError, match="no page"):
        cat.page("zzz")
    with pytest.raises(KeyError):
        cat.pages([99])
    cat.close()


def test_page_index_commit_reopen_and_interrupted_add(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((5, 4)).astype(np.float32)  # (pages, dim)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = PageIndex.create(tmp_path / "idx", ENC)
    img = Image.new("RGB", (40, 60), "red")
    pages = [NewPage(p.page_id, p.page, p.text, index.store_image(p.page_id, img), {}) for p in _pages("a", 3)]
    index.add_source("a.pdf", "d1", "pdf", pages, vecs[:3])
    assert index.manifest.pages == 3 and index.manifest.sources == 1
    assert index.page_image("a-p2").size == (40, 60)

    # an add interrupted after the vectors were written but before the catalogue commit
    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    index.catalogue.commit_sources = crash  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        index.add_source("b.pdf", "d2", "pdf", _pages("b", 2), vecs[3:])
    assert len(index.engine) == 3  # uncommitted rows dropped from memory too
    index.close()

    reopened = PageIndex.open(tmp_path / "idx")
    assert len(reopened) == 3 and len(reopened.engine) == 3
    reopened.add_source("b.pdf", "d2", "pdf", _pages("b", 2), vecs[3:])
    hits = reopened.search(vecs[3:4], k=5)[0]
    assert hits[0].record.page_id == "b-p1"
    np.testing.assert_allclose([h.score for h in hits], np.sort(vecs @ vecs[3])[::-1], rtol=1e-5)
    assert reopened.manifest.pages == 5 and reopened.manifest.sources == 2
    reopened.close()
    with pytest.raises(FileExistsError):
        PageIndex.create(tmp_path / "idx", ENC)
