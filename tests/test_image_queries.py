"""Image and (image, text) queries: the encoders' recipes, the Retriever and `dse search --image`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("qwen_vl_utils")

from dse.cli.main import main  # noqa: E402
from dse.encoders import load_encoder  # noqa: E402
from dse.encoders.queries import check_image_queries, query_parts  # noqa: E402
from dse.retrieve.retriever import Retriever  # noqa: E402


def _image(seed: int, size: tuple[int, int] = (140, 196)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pictures")
    for i in range(4):
        _image(10 + i).save(folder / f"slide{i}.png")
    return folder


@pytest.fixture(scope="module")
def dse_encoder() -> Any:
    return load_encoder("tiny-dse")


@pytest.fixture(scope="module")
def dse_index(tmp_path_factory: pytest.TempPathFactory, pictures: Path, dse_encoder: Any) -> Path:
    directory = tmp_path_factory.mktemp("idx") / "dse"
    with Retriever.create(directory, dse_encoder) as r:
        r.add([pictures], workers=0)
    return directory


def test_query_parts() -> None:
    img = _image(0)
    assert query_parts("q").kind == "text" and query_parts(img).kind == "image"
    assert query_parts((img, "q")).kind == "mixed" and query_parts((img, "q")).text == "q"
    for bad in (42, (img,), ("q", img), None):
        with pytest.raises(TypeError, match="a query is a str, a PIL image or an"):
            query_parts(bad)


def test_dse_image_query_is_the_cards_page_recipe(dse_encoder: Any) -> None:
    img = _image(1)
    np.testing.assert_allclose(dse_encoder.encode_queries([img]), dse_encoder.encode_pages([img]), atol=1e-6)


def test_dse_mixed_query_puts_the_picture_in_the_dummy_images_place(dse_encoder: Any) -> None:
    img = _image(2)
    text = dse_encoder.chat_text(dse_encoder.query_message((img, "revenue")))
    assert text.endswith("<|vision_start|><|image_pad|><|vision_end|>Query: revenue<|im_end|>\n"
                         "<|im_start|>assistant\n<|endoftext|>")
    assert dse_encoder.query_message((img, "revenue"))[0]["content"][0] == {"type": "image", "image": img}
    mixed, alone, picture = dse_encoder.encode_queries([(img, "revenue"), "revenue", img])
    assert not np.allclose(mixed, alone, atol=1e-3) and not np.allclose(mixed, picture, atol=1e-3)
    # batched with text queries, each row is what it is alone
    np.testing.assert_allclose(dse_encoder.encode_queries([(img, "revenue")])[0], mixed, atol=1e-5)
    with pytest.raises(TypeError, match=r"queries\[1\]"):
        dse_encoder.encode_queries(["ok", 3.5])


def test_retriever_image_search_finds_the_page(dse_index: Path, pictures: Path) -> None:
    with Retriever.open(dse_index) as r:
        with Image.open(pictures / "slide2.png") as im:
            query = im.convert("RGB")
        hits = r.search(query, k=3)
        assert Path(hits[0].source).name == "slide2.png" and hits[0].score > 0.99
        mixed = r.search((query, "slide"), k=2)
        assert len(mixed) == 2
        # hybrid: the visual side takes the picture and the text, BM25 the text
        assert len(r.search((query, "slide"), k=2, mode="hybrid")) >= 1
        with pytest.raises(ValueError, match="needs mode='visual'"):
            r.search(query, k=2, mode="text")
        with pytest.raises(TypeError, match="list of queries"):
            r.search_many(query)  # type: ignore[arg-type]


def test_image_queries_bypass_the_text_query_encoder(dse_index: Path, pictures: Path) -> None:
    with Retriever.open(dse_index) as r:
        r.query_encoder = lambda queries: (_ for _ in ()).throw(AssertionError("text batcher used"))
        with Image.open(pictures / "slide0.png") as im:
            assert r.search(im.convert("RGB"), k=1)


def test_text_only_encoders_give_a_clear_error(tmp_path: Path, pictures: Path) -> None:
    colqwen = load_encoder("tiny-colqwen2")
    with pytest.raises(TypeError, match="takes text queries only.*dse-qwen2, gme-qwen2, qwen3-vl-embedding"):
        check_image_queries(colqwen, [_image(3)])
    check_image_queries(colqwen, ["text is fine"])
    with Retriever.create(tmp_path / "col", colqwen) as r:
        r.add([pictures / "slide0.png"], workers=0)
        with pytest.raises(TypeError, match="takes text queries only"):
            r.search(_image(3), k=1)
    with Retriever.create(tmp_path / "bm25", load_encoder("bm25")) as r:
        r.add([pictures / "slide0.png"], workers=0)
        with pytest.raises(ValueError, match="needs mode='visual'"):
            r.search(_image(3), k=1)


@pytest.mark.parametrize("name", ["tiny-gme", "tiny-qwen3-vl-embedding"])
def test_unified_encoders_search_by_picture(tmp_path: Path, pictures: Path, name: str) -> None:
    with Retriever.create(tmp_path / name, load_encoder(name)) as r:
        r.add([pictures], workers=0)
        with Image.open(pictures / "slide1.png") as im:
            query = im.convert("RGB")
        assert len(r.search(query, k=4)) == 4
        assert len(r.search((query, "slide"), k=2)) == 2
        assert len(r.search("slide", k=2)) == 2


def test_cli_search_image(dse_index: Path, pictures: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "--index", str(dse_index), "--image", str(pictures / "slide3.png"), "-k", "2"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "slide3.png" in first
    assert main(["search", "--index", str(dse_index), "--image", str(pictures / "slide3.png"), "slide", "--json"]) == 0
    assert '"page_id"' in capsys.readouterr().out
    assert main(["search", "--index", str(dse_index), "--image", str(pictures / "missing.png")]) != 0
    assert "cannot read the image" in capsys.readouterr().err
    assert main(["search", "--index", str(dse_index), "--image", str(pictures / "slide3.png"), "--mode", "text"]) != 0
    assert "needs mode='visual'" in capsys.readouterr().err


def test_the_server_searches_by_picture(dse_index: Path, pictures: Path, tmp_path: Path) -> None:
    """POST /v1/search {"image": base64} ranks as Retriever.search(image); dse.Client sends pictures too."""
    import base64
    import json
    import urllib.error
    import urllib.request

    from dse import Client
    from dse.testing.server import serve_index

    def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(f"{url}/v1/search", json.dumps(body).encode(), {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    raw = (pictures / "slide2.png").read_bytes()
    with Image.open(pictures / "slide2.png") as im:
        query = im.convert("RGB")
    with Retriever.open(dse_index) as r:
        want = [h.page_id for h in r.search(query, k=3)]
        want_mixed = [h.page_id for h in r.search((query, "slide"), k=3)]
    with serve_index(dse_index, args=["--threads", "1"]) as url:  # torch on one thread: the same ranking
        status, out = post(url, {"image": base64.b64encode(raw).decode(), "k": 3})
        assert status == 200 and [h["page_id"] for h in out["hits"]] == want
        status, out = post(url, {"image": base64.b64encode(raw).decode(), "query": "slide", "k": 3})
        assert status == 200 and [h["page_id"] for h in out["hits"]] == want_mixed
        client = Client(url)
        assert [h.page_id for h in client.search(query, k=3)] == want
        assert [h.page_id for h in client.search((query, "slide"), k=3)] == want_mixed
        for body, status_wanted, says in (
            ({"image": "not base64!"}, 422, "base64"),
            ({"image": base64.b64encode(b"not a picture").decode()}, 422, "picture"),
            ({"image": base64.b64encode(raw).decode(), "queries": ["a"]}, 422, "one query"),
            ({"image": base64.b64encode(raw).decode(), "mode": "text"}, 422, "visual"),
        ):
            status, out = post(url, body)
            assert status == status_wanted and says in out["detail"], out
    text_index = tmp_path / "bm25"
    with Retriever.create(text_index, load_encoder("bm25")) as r:
        r.add([Path(__file__).resolve().parents[1] / "examples" / "corpus"], workers=0)
    with serve_index(text_index) as url:
        status, out = post(url, {"image": base64.b64encode(raw).decode()})
        assert status == 422 and "text" in out["detail"], out
