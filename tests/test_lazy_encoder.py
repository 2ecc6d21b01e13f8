"""An index opened without an encoder loads the model only when queries or pages are embedded."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dse import EncoderMismatchError, Retriever, load_encoder
from dse.cli.main import main
from dse.encoders import registry

PDFS = ("acme-q3-2025-report.pdf", "sourdough-baking.pdf")


@pytest.fixture()
def visual_index(tmp_path: Path, corpus: Path) -> Path:
    """A tiny-dse index of two PDFs of the example corpus."""
    idx = tmp_path / "idx"
    with Retriever.create(idx, load_encoder("tiny-dse", batch_size=6)) as r:
        report = r.add([corpus / name for name in PDFS], dpi=40, workers=0)
    assert len(report.added) == 2, report.failures
    return idx


@pytest.fixture()
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make building any encoder fail."""

    def refuse(name: str, **options: Any) -> Any:
        raise AssertionError(f"encoder {name!r} was loaded")

    monkeypatch.setattr(registry, "load_encoder", refuse)


def test_text_search_delete_sync_info_never_load_the_model(
    visual_index: Path, corpus: Path, no_model: None
) -> None:
    with Retriever.open(visual_index, batch_size=2) as r:
        hits = r.search("sourdough starter", k=3, mode="text")
        assert hits and {Path(h.source).name for h in hits} == {"sourdough-baking.pdf"}
        assert [h.page_id for h in r.search_text("sourdough starter", k=3)] == [h.page_id for h in hits]
        assert r.search_many(["revenue by segment"], k=1, mode="text", where={"kind": "pdf"})[0]
        info = r.info()
        assert info["pages"] == len(r) and info["encoder"]["name"] == "tiny-dse"
        report = r.delete(sources=[hits[0].source])
        assert report.sources == 1 and report.pages >= len(hits)
        assert r.search("sourdough starter", k=3, mode="text") == []
        (corpus / PDFS[0]).unlink()
        assert r.sync([corpus]).sources == 1 and len(r) == 0
        with pytest.raises(AssertionError, match="'tiny-dse' was loaded"):
            r.search("revenue", k=1)  # the visual side does need it


def test_cli_text_search_does_not_load_the_model(
    visual_index: Path, no_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["search", "--index", str(visual_index), "--mode", "text", "sourdough starter", "-k", "2", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert {Path(h["source"]).name for h in json.loads(out)} == {"sourdough-baking.pdf"}
    with pytest.raises(AssertionError, match="'tiny-dse' was loaded"):
        main(["search", "--index", str(visual_index), "--mode", "visual", "revenue"])


def test_encoder_loads_once_on_first_visual_search_even_from_threads(
    visual_index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = registry.load_encoder
    loads: list[str] = []

    def counting(name: str, **options: Any) -> Any:
        loads.append(name)
        time.sleep(0.05)  # widen the window in which a second thread could start a second load
        return real(name, **options)

    monkeypatch.setattr(registry, "load_encoder", counting)
    with Retriever.open(visual_index) as r:
        assert r.search("revenue by segment", k=4, mode="text") and loads == []  # opening loads nothing
        # the catalogue is per thread, the encoder is shared: threads asking for it build it once
        encoders: list[Any] = []
        threads = [threading.Thread(target=lambda: encoders.append(r.encoder)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert loads.count("tiny-dse") == 1 and len(encoders) == 4
        assert all(e is encoders[0] for e in encoders) and encoders[0].name == "tiny-dse"
        assert len(r.search("revenue by segment", k=4)) == 4
        assert len(r.search("revenue by segment", k=4, mode="hybrid")) == 4
        assert loads.count("tiny-dse") == 1


def test_open_checks_options_from_the_manifest_alone(tmp_path: Path, visual_index: Path, no_model: None) -> None:
    with pytest.raises(EncoderMismatchError, match="dim: index has"):
        Retriever.open(visual_index, dim=8)  # would change the vectors
    text_idx = tmp_path / "bm25"
    Retriever.create(text_idx, load_encoder("bm25")).close()  # dse.load_encoder: not the patched name
    with pytest.raises(ValueError, match="does not take option"):
        Retriever.open(text_idx, batch_size=3)
    manifest = json.loads((visual_index / "manifest.json").read_text())
    manifest["encoder"]["name"] = "no-such-encoder"
    (visual_index / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(KeyError, match="unknown encoder 'no-such-encoder'"):
        Retriever.open(visual_index)


def test_encoder_options_need_encoder_none(tmp_path: Path) -> None:
    with Retriever.create(tmp_path / "idx", load_encoder("bm25")) as r, pytest.raises(TypeError, match="encoder=None"):
        Retriever(load_encoder("bm25"), r.index, device="cpu")
