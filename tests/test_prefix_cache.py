"""The text-query prefix cache of the Qwen2-VL recipes: the same vectors as the full forward."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("qwen_vl_utils")

from dse.encoders import load_encoder  # noqa: E402
from dse.encoders.qwen.dse_qwen2 import DSEQwen2Encoder  # noqa: E402
from dse.testing.tiny_dse import TINY_DSE_HIDDEN, build_tiny_dse  # noqa: E402

QUERIES = ["hello", "what was the revenue in the third quarter of 2023?", "table", ":: odd start", "", "Q3'23 10-K"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_dse(tmp_path_factory.mktemp("tiny-dse-prefix"), seed=0)


@pytest.fixture(scope="module")
def cached(tiny_dir: Path) -> DSEQwen2Encoder:
    enc = load_encoder("dse-qwen2", model=str(tiny_dir), dim=TINY_DSE_HIDDEN)
    assert isinstance(enc, DSEQwen2Encoder)
    return enc


@pytest.fixture(scope="module")
def full(tiny_dir: Path) -> DSEQwen2Encoder:
    enc = load_encoder("dse-qwen2", model=str(tiny_dir), dim=TINY_DSE_HIDDEN, prefix_cache=False)
    assert isinstance(enc, DSEQwen2Encoder)
    return enc


def test_the_prefix_holds_the_image_and_stops_before_the_query(cached: DSEQwen2Encoder) -> None:
    state = cached._prefix.state()
    assert state is not None
    ids = state["ids"][0]
    full_ids = cached.prepare_inputs([cached.query_message("revenue")])["input_ids"][0]
    assert torch.equal(full_ids[: len(ids)], ids)
    assert len(ids) < len(full_ids)
    assert bool(state["types"].any())  # the dummy image's tokens are in the cached part
    image_token = cached.model.config.image_token_id
    assert image_token in ids.tolist() and image_token not in full_ids[len(ids):].tolist()


def test_every_text_query_takes_the_cached_path(cached: DSEQwen2Encoder) -> None:
    for query in QUERIES:
        inputs = cached.prepare_inputs([cached.query_message(query)])
        assert cached._prefix.last_states(inputs) is not None, query
    page = cached.prepare_inputs([cached.page_message(Image.new("RGB", (56, 56), "white"))])
    assert cached._prefix.last_states(page) is None  # a page does not start with the query prefix


def test_cached_vectors_equal_the_full_forward(cached: DSEQwen2Encoder, full: DSEQwen2Encoder) -> None:
    want = full.encode_queries(QUERIES)  # (n, dim)
    batched = cached.encode_queries(QUERIES)  # one left-padded batch: [prefix, pads, query]
    singles = np.stack([cached.encode_queries([q])[0] for q in QUERIES])
    np.testing.assert_allclose(batched, want, atol=1e-5)
    np.testing.assert_allclose(singles, want, atol=1e-5)


def test_mixed_batches_keep_their_order(cached: DSEQwen2Encoder, full: DSEQwen2Encoder) -> None:
    picture = Image.new("RGB", (84, 56), (200, 30, 30))
    queries = ["revenue", picture, (picture, "this chart"), "table of contents"]
    np.testing.assert_allclose(cached.encode_queries(queries), full.encode_queries(queries), atol=1e-5)


def test_a_wrong_cache_changes_the_vectors(tiny_dir: Path, full: DSEQwen2Encoder) -> None:
    """The check is live: the cached keys are what the queries read."""
    enc = load_encoder("dse-qwen2", model=str(tiny_dir), dim=TINY_DSE_HIDDEN)
    state = enc._prefix.state()
    with torch.inference_mode():
        for layer in state["cache"].layers:
            layer.keys.mul_(1.5)
    diff = np.abs(enc.encode_queries(QUERIES[:2]) - full.encode_queries(QUERIES[:2])).max()
    assert diff > 1e-3


def test_shared_across_threads(cached: DSEQwen2Encoder, full: DSEQwen2Encoder) -> None:
    from concurrent.futures import ThreadPoolExecutor

    want = full.encode_queries(QUERIES)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda q: cached.encode_queries([q])[0], QUERIES * 3))
    np.testing.assert_allclose(np.stack(got), np.concatenate([want] * 3), atol=1e-5)


# ---- GME: a text-only prefix (the instruction), 1-D positions, right padding --------------------


@pytest.fixture(scope="module")
def gme_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from dse.testing.tiny_dse import build_tiny_gme

    directory = build_tiny_gme(tmp_path_factory.mktemp("tiny-gme-prefix"), seed=0)
    kwargs = {"model": str(directory), "min_image_tokens": 4, "max_image_tokens": 64}
    return load_encoder("gme-qwen2", **kwargs), load_encoder("gme-qwen2", prefix_cache=False, **kwargs)


def test_gme_text_queries_take_the_cache_and_equal_the_full_forward(gme_pair: tuple) -> None:
    from dse.encoders.queries import QueryParts

    cached, full = gme_pair
    for query in QUERIES:
        inputs = cached.prepare_inputs([(QueryParts(None, query), cached.instruction)])
        assert cached._prefix.last_states(inputs) is not None, query
    np.testing.assert_allclose(cached.encode_queries(QUERIES), full.encode_queries(QUERIES), atol=1e-5)
    singles = np.stack([cached.encode_queries([q])[0] for q in QUERIES])
    np.testing.assert_allclose(singles, full.encode_queries(QUERIES), atol=1e-5)
    picture = Image.new("RGB", (84, 56), (20, 90, 200))
    mixed = ["revenue", picture, (picture, "this chart")]
    np.testing.assert_allclose(cached.encode_queries(mixed), full.encode_queries(mixed), atol=1e-5)


def test_int8_keeps_the_prefix_computed_in_float(
    tiny_dir: Path, cached: DSEQwen2Encoder, full: DSEQwen2Encoder
) -> None:
    """dtype="int8": the shared prefix is encoded before the layers turn int8, so its keys are float32's."""
    enc = load_encoder("dse-qwen2", model=str(tiny_dir), dim=TINY_DSE_HIDDEN, dtype="int8")
    state = enc._prefix.state()
    want = cached._prefix.state()
    for got_layer, want_layer in zip(state["cache"].layers, want["cache"].layers):
        torch.testing.assert_close(got_layer.keys, want_layer.keys)
    assert any(type(m).__name__ == "PerTokenInt8Linear" for m in enc.model.modules())
    cos = (enc.encode_queries(QUERIES) * full.encode_queries(QUERIES)).sum(axis=1)
    assert cos.min() > 0.9


# ---- Qwen3-VL-Embedding: the system turn with the instruction, right padding ----------------------


def test_qwen3vl_text_queries_take_the_cache_and_equal_the_full_forward(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from dse.testing.tiny_qwen3vl import build_tiny_qwen3vl_embedding

    directory = str(build_tiny_qwen3vl_embedding(tmp_path_factory.mktemp("tiny-q3-prefix"), seed=0))
    cached = load_encoder("qwen3-vl-embedding", model=directory)
    full = load_encoder("qwen3-vl-embedding", model=directory, prefix_cache=False)
    for query in QUERIES:
        inputs = cached.prepare_inputs([cached.query_conversation(query)])
        assert cached._prefix.last_states(inputs) is not None, query
    np.testing.assert_allclose(cached.encode_queries(QUERIES), full.encode_queries(QUERIES), atol=1e-5)
    singles = np.stack([cached.encode_queries([q])[0] for q in QUERIES])
    np.testing.assert_allclose(singles, full.encode_queries(QUERIES), atol=1e-5)
    picture = Image.new("RGB", (96, 64), (20, 90, 200))
    mixed = ["revenue", picture, (picture, "this chart")]
    np.testing.assert_allclose(cached.encode_queries(mixed), full.encode_queries(mixed), atol=1e-5)
