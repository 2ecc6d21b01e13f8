"""Similarity maps over a tiny-colqwen2 index: patch layout, the PNG written by the CLI, clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from dse import Retriever, load_encoder
from dse.cli.main import main
from dse.retrieve.explain import explain


@pytest.fixture(scope="module")
def colqwen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Retriever]:
    from tests.conftest import EXAMPLES

    directory = tmp_path_factory.mktemp("explain") / "idx"
    with Retriever.create(directory, load_encoder("tiny-colqwen2", max_visual_tokens=64)) as r:
        r.add([EXAMPLES / "harbour-line-timetable.png", EXAMPLES / "sourdough-baking.pdf"])
        yield r


def test_map_covers_the_page_grid_and_matches_the_patch_vectors(colqwen: Retriever) -> None:
    hit = colqwen.search("first train to the lighthouse", k=1)[0]
    m = explain(colqwen, "first train to the lighthouse", hit.page_id, aggregate="max")
    page = colqwen.page_image(hit.page_id)
    rows, cols = m.heat.shape
    assert m.page.size == page.size and rows * cols <= 64
    assert (cols > rows) == (page.size[0] > page.size[1])  # the grid follows the page's orientation
    # oracle: the image-token vectors the encoder gives for the page, in row-major patch order
    enc = colqwen.encoder
    q = enc.encode_queries(["first train to the lighthouse"])[0]  # (q_tokens, dim)
    batch = enc.processor.process_images([page])
    tokens = enc.encode_pages([page])[0][enc.processor.get_image_mask(batch)[0].numpy()]  # (rows * cols, dim)
    want = (q @ tokens.T).max(axis=0).reshape(rows, cols)  # (rows, cols)
    np.testing.assert_allclose(m.heat, want, rtol=1e-4, atol=1e-4)


def test_cli_writes_a_page_sized_png_that_depends_on_the_query(
    colqwen: Retriever, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page_id = colqwen.search("timetable", k=1)[0].page_id
    size = colqwen.page_image(page_id).size
    outputs = []
    for i, query in enumerate(["when does the train leave central", "bake the bread at high heat"]):
        out = tmp_path / f"map{i}.png"
        assert main(["search", "--index", str(colqwen.index.directory), "--explain", page_id,
                     "--out", str(out), query]) == 0
        assert capsys.readouterr().out.strip() == str(out)
        with Image.open(out) as img:
            assert img.format == "PNG" and img.size == size
            outputs.append(np.asarray(img.convert("RGB"), dtype=np.int16))  # (h, w, 3)
    assert np.abs(outputs[0] - outputs[1]).mean() > 1.0  # the heat moved with the query


def test_clear_errors(colqwen: Retriever, tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(KeyError, match="no page 'nope'"):
        explain(colqwen, "q", "nope")
    with pytest.raises(ValueError, match="unknown aggregate 'mean'"):
        explain(colqwen, "q", colqwen.search("q", k=1)[0].page_id, aggregate="mean")
    with Retriever.create(tmp_path / "bm25", load_encoder("bm25")) as r:
        r.add(corpus / "harbour-line-timetable.png")
        page_id = r.index.catalogue.pages([0])[0].page_id
    code = main(["search", "--index", str(tmp_path / "bm25"), "--explain", page_id, "--out",
                 str(tmp_path / "m.png"), "harbour"])
    assert code == 2 and "similarity maps need a multi-vector index" in capsys.readouterr().err
    assert main(["search", "--index", str(tmp_path / "bm25"), "--explain", page_id, "harbour"]) == 2
    assert "needs a QUERY and --out PNG" in capsys.readouterr().err
