"""Checkpoints that run their own code: refused unless trust_remote_code, recorded, asked again at reopen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")

from dse import Retriever, load_encoder  # noqa: E402
from dse.cli.main import main  # noqa: E402
from dse.encoders.hub import ModelNotConfirmedError  # noqa: E402
from dse.encoders.remote_code import RemoteCodeRefusedError  # noqa: E402
from dse.testing.tiny import tiny_checkpoint  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"


def test_refused_without_the_opt_in() -> None:
    with pytest.raises(RemoteCodeRefusedError, match="--trust-remote-code"):
        load_encoder("tiny-jina-v4", device="cpu")
    with pytest.raises(RemoteCodeRefusedError):
        load_encoder("jina-v4", model=str(tiny_checkpoint("tiny-jina-v4")), device="cpu", trust_remote_code=False)


@pytest.mark.parametrize("name", ["tiny-jina-v4", "tiny-jina-v4-multi"])
def test_the_cards_calls_and_the_manifest_record(name: str) -> None:
    enc = load_encoder(name, device="cpu", trust_remote_code=True)
    described = enc.describe()
    assert described["identity"]["trust_remote_code"] is True
    assert "modeling_tiny_jina.py" in described["identity"]["files"]  # the code that runs is fingerprinted
    queries = enc.encode_queries(["revenue by segment", "a chart"])
    pages = enc.encode_pages([Image.new("RGB", (40, 60), c) for c in ("red", "blue", "white")])
    direct = enc.model.encode_text(texts=["revenue by segment"], task="retrieval", prompt_name="query",
                                   return_multivector=enc.kind == "multi")  # the card's own call
    if enc.kind == "single":
        assert queries.shape == (2, enc.dim) and pages.shape == (3, enc.dim)
        np.testing.assert_allclose(queries[0], direct[0].detach().numpy(), atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(pages, axis=1), 1, atol=1e-5)
    else:
        assert len(queries) == 2 and all(q.shape[1] == enc.dim for q in queries) and len(pages) == 3
        np.testing.assert_allclose(queries[0], direct[0].detach().numpy(), atol=1e-6)


def test_matryoshka_dim_truncates_then_normalises() -> None:
    full = load_encoder("tiny-jina-v4", device="cpu", trust_remote_code=True)
    small = load_encoder("tiny-jina-v4", device="cpu", trust_remote_code=True, dim=8)
    a, b = full.encode_queries(["q"]), small.encode_queries(["q"])
    np.testing.assert_allclose(b[0], a[0][:8] / np.linalg.norm(a[0][:8]), atol=1e-5)
    with pytest.raises(ValueError, match="dim"):
        load_encoder("tiny-jina-v4", device="cpu", trust_remote_code=True, dim=10_000)


def test_an_index_built_with_remote_code_asks_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = str(tmp_path / "idx")
    assert main(["index", str(CORPUS), "--index", index, "--encoder", "tiny-jina-v4", "--no-progress"]) == 2
    assert "--trust-remote-code" in capsys.readouterr().err
    assert main(["index", str(CORPUS), "--index", index, "--encoder", "tiny-jina-v4", "--trust-remote-code",
                 "--no-progress"]) == 0
    manifest = json.loads((Path(index) / "manifest.json").read_text())
    assert manifest["encoder"]["identity"]["trust_remote_code"] is True
    with Retriever.open(index) as r:
        assert r.search("sourdough starter", k=2, mode="text")  # text search runs no model
        with pytest.raises(ModelNotConfirmedError, match="trust_remote_code=True"):
            r.search("harbour timetable", k=2)
    capsys.readouterr()
    assert main(["search", "--index", index, "--mode", "visual", "harbour"]) != 0
    assert "--trust-remote-code" in capsys.readouterr().err
    assert main(["search", "--index", index, "--mode", "visual", "--trust-remote-code", "harbour", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) > 0
    with Retriever.open(index, trust_remote_code=True) as r:
        assert len(r.search("harbour timetable", k=2)) == 2
