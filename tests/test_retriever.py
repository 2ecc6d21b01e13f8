"""The retriever end to end: ingest -> encoder -> index -> search, on the example corpus."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import dse
from dse import EncoderMismatchError, Retriever, load_encoder

EXAMPLE_PAGES = 11  # 3 + 3 + 2 + 2 PDF pages and one PNG
EXAMPLE_SOURCES = 5


def test_bm25_finds_the_right_page(tmp_path: Path, corpus: Path) -> None:
    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as r:
        report = r.add(corpus)
        assert report.pages == EXAMPLE_PAGES and len(report.added) == EXAMPLE_SOURCES
        assert not report.failures and report.ok
        top = r.search("how do I wire the inverter", k=3)[0]
        assert (Path(top.source).name, top.page, top.rank) == ("solar-installation-guide.pdf", 3, 1)
        top = r.search("revenue by segment", k=1)[0]
        assert (Path(top.source).name, top.page) == ("acme-q3-2025-report.pdf", 2)
        assert "Cloud services" in r.page_text(top.page_id)
        assert r.page_image(top.page_id).size[0] > 100


def test_readd_skips_append_adds_and_moved_index_reopens(tmp_path: Path, corpus: Path) -> None:
    extra = tmp_path / "more"
    extra.mkdir()
    shutil.move(str(corpus / "bird-field-guide.pdf"), extra / "birds.pdf")
    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as r:
        first = r.add(corpus)
        again = r.add(corpus)
        assert again.pages == 0 and len(again.skipped) == len(first.added)
        assert r.add(extra).pages == 2
        assert len(r) == EXAMPLE_PAGES
    moved = tmp_path / "elsewhere" / "idx"
    shutil.move(str(tmp_path / "idx"), moved)
    with Retriever.open(moved) as r:
        assert r.info()["pages"] == EXAMPLE_PAGES and r.info()["sources"] == EXAMPLE_SOURCES
        hit = r.search("peregrine falcon", k=1)[0]
        assert Path(hit.source).name == "birds.pdf" and hit.page == 1


def test_bad_files_do_not_stop_the_batch(tmp_path: Path, corpus: Path) -> None:
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (corpus / "empty.pdf").write_bytes(b"")
    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as r:
        report = r.add([corpus, tmp_path / "missing.pdf"])
    failed = {Path(f.source).name for f in report.failures}
    assert failed == {"broken.pdf", "empty.pdf", "missing.pdf"}
    assert all(Path(f.source).name in f.error for f in report.failures)
    assert report.pages == EXAMPLE_PAGES and report.ok


def test_bm25_returns_only_matching_pages(tmp_path: Path, corpus: Path) -> None:
    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as r:
        r.add(corpus)
        hits = r.search("sourdough starter", k=10)
        assert hits and {Path(h.source).name for h in hits} == {"sourdough-baking.pdf"}
        assert r.search("zzzqqq", k=5) == []


def test_only_bad_files_is_not_ok(tmp_path: Path) -> None:
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"garbage")
    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as r:
        report = r.add(bad)
    assert not report.ok and report.pages == 0


def test_interrupted_add_keeps_committed_sources(tmp_path: Path, corpus: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from dse.storage.catalogue import Catalogue

    real = Catalogue.commit_sources
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the run
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Catalogue, "commit_sources", flaky)
    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as r:
        with pytest.raises(KeyboardInterrupt):
            r.add(corpus, commit_pages=1)  # one source per commit
    monkeypatch.setattr(Catalogue, "commit_sources", real)
    with Retriever.open(tmp_path / "idx") as r:
        assert r.info()["sources"] == 2
        report = r.add(corpus)
        assert len(report.skipped) == 2 and len(report.added) == EXAMPLE_SOURCES - 2
        assert len(r) == EXAMPLE_PAGES
        ids = [rec.page_id for rec in r.index.catalogue.pages(range(len(r)))]
        assert len(ids) == len(set(ids))


def test_wrong_encoder_is_a_clear_error(tmp_path: Path, corpus: Path) -> None:
    Retriever.create(tmp_path / "idx", load_encoder("bm25")).close()
    with pytest.raises(EncoderMismatchError, match="another encoder"):
        Retriever.open(tmp_path / "idx", load_encoder("tiny-dse"))


@pytest.mark.parametrize("name", ["tiny-dse", "tiny-colqwen2"])
def test_visual_encoders_end_to_end_match_brute_force(tmp_path: Path, corpus: Path, name: str) -> None:
    encoder = load_encoder(name, batch_size=3)
    with Retriever.create(tmp_path / "idx", encoder) as r:
        report = r.add(corpus, dpi=40)
        assert report.pages == EXAMPLE_PAGES, report.failures
        hits = r.search("wiring the inverter", k=EXAMPLE_PAGES)
    q = encoder.encode_queries(["wiring the inverter"])
    with Retriever.open(tmp_path / "idx") as reopened:  # encoder rebuilt from the manifest
        images = [reopened.index.page_image(h.page_id) for h in hits]
        assert [h.page_id for h in reopened.search("wiring the inverter", k=EXAMPLE_PAGES)] == [
            h.page_id for h in hits]
    assert len(hits) == EXAMPLE_PAGES and [h.rank for h in hits] == list(range(1, EXAMPLE_PAGES + 1))
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(img.size[0] > 0 for img in images)
    if encoder.kind == "single":
        assert q.shape == (1, encoder.dim)  # (queries, dim)


def test_public_api_is_importable() -> None:
    assert {"Retriever", "Hit", "load_encoder", "list_encoders"} <= set(dse.__all__)
    names = set(dse.list_encoders())
    assert {"dse-qwen2", "colpali", "colqwen2", "colqwen2.5", "colsmol", "bm25", "tiny-dse",
            "tiny-colqwen2", "tiny-colqwen2.5", "tiny-colpali", "tiny-colsmol"} <= names


def test_unknown_encoder_and_option_errors() -> None:
    with pytest.raises(KeyError, match="registered"):
        load_encoder("nope")
    with pytest.raises(ValueError, match="does not take"):
        load_encoder("bm25", dim=3)


def test_hnsw_only_for_single_vectors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="single-vector"):
        Retriever.create(tmp_path / "idx", load_encoder("bm25"), hnsw=True)


def test_single_vector_scores_are_dot_products(tmp_path: Path, corpus: Path) -> None:
    encoder = load_encoder("tiny-dse")
    pdf = corpus / "acme-q3-2025-report.pdf"
    with Retriever.create(tmp_path / "idx", encoder, hnsw=False) as r:
        r.add(pdf, dpi=40)
        hits = r.search("free cash flow", k=3)
        images = [r.page_image(h.page_id) for h in hits]
    import ingest

    pages = {p.page_id: p.image for p in ingest.render(pdf, dpi=40)}
    vecs = encoder.encode_pages([pages[h.page_id] for h in hits])  # (3, dim)
    q = encoder.encode_queries(["free cash flow"])[0]  # (dim,)
    np.testing.assert_allclose([h.score for h in hits], vecs @ q, rtol=1e-4, atol=1e-5)
    assert len(images) == 3


def test_visual_index_keeps_a_text_side(tmp_path: Path, corpus: Path) -> None:
    with Retriever.create(tmp_path / "idx", load_encoder("tiny-dse")) as r:
        r.add(corpus, dpi=30)
        top = r.search_text("torque wrench", k=3)
        assert [(Path(h.source).name, h.page) for h in top] == [("solar-installation-guide.pdf", 2)]
    with Retriever.open(tmp_path / "idx") as r:  # reopened: the text side is there too
        assert r.search_text("sourdough starter", k=1)[0].page == 1
        assert len(r.index.text_engine) == EXAMPLE_PAGES
