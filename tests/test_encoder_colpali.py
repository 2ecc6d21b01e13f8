"""ColPali-family encoders on tiny random checkpoints: shapes, unpadding, and equality with colpali-engine."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("colpali_engine")

from PIL import Image  # noqa: E402

from dse.encoders.colpali.col import ColPaliEncoder, idefics3_tiles_per_side, score_maxsim  # noqa: E402
from dse.encoders.hub import ModelLoadError  # noqa: E402
from dse.encoders.registry import load_encoder  # noqa: E402
from dse.testing import tiny_colpali  # noqa: E402

BUILDERS = {
    "colqwen2": tiny_colpali.build_tiny_colqwen2,
    "colqwen2.5": tiny_colpali.build_tiny_colqwen2_5,
    "colpali": tiny_colpali.build_tiny_colpali,
    "colsmol": tiny_colpali.build_tiny_colsmol,
}
FAMILIES = list(BUILDERS)
QUERIES = ["revenue", "which section of the annual report shows the total revenue per year?"]


def _pages() -> list[Image.Image]:
    """Two deterministic pages of different sizes and aspect ratios."""
    rng = np.random.default_rng(0)
    tall = Image.fromarray(rng.integers(0, 255, (150, 90, 3), dtype=np.uint8))
    wide = Image.fromarray(rng.integers(0, 255, (40, 120, 3), dtype=np.uint8))
    return [tall, wide]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_colpali")
    return {name: build(root / name, seed=0) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module", params=FAMILIES)
def encoder(request: pytest.FixtureRequest, checkpoints: dict[str, Path]) -> ColPaliEncoder:
    enc = load_encoder(request.param, model=str(checkpoints[request.param]), device="cpu")
    assert isinstance(enc, ColPaliEncoder)
    return enc


def _raw(enc: ColPaliEncoder, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """colpali-engine's own padded output and attention mask for a processed batch."""
    with torch.no_grad():
        out = enc.model(**batch)  # (batch, seq, 128)
    return out, batch["attention_mask"].bool()


def test_registered_names_and_metadata(encoder: ColPaliEncoder) -> None:
    assert encoder.name == encoder.family
    assert encoder.kind == "multi" and encoder.input == "image" and encoder.dim == 128
    desc = encoder.describe()
    assert desc["options"] == {"max_visual_tokens": None}
    assert desc["model"] == encoder.model_id and desc["dim"] == 128


def test_output_types_and_shapes(encoder: ColPaliEncoder) -> None:
    for out in (encoder.encode_pages(_pages()), encoder.encode_queries(QUERIES)):
        assert isinstance(out, list) and len(out) == 2
        for v in out:
            assert isinstance(v, np.ndarray) and v.dtype == np.float32
            assert v.ndim == 2 and v.shape[1] == 128 and v.shape[0] > 0
            np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
            assert np.isfinite(v).all()
    assert encoder.encode_pages([]) == [] and encoder.encode_queries([]) == []


def test_no_padding_rows(encoder: ColPaliEncoder) -> None:
    pages = _pages()
    counts = encoder.processor.process_images(pages)["attention_mask"].sum(1).tolist()
    assert [v.shape[0] for v in encoder.encode_pages(pages)] == counts
    assert counts[0] != counts[1] or encoder.family == "colpali"  # colpali: fixed 448x448 -> same count
    q_counts = encoder.processor.process_queries(QUERIES)["attention_mask"].sum(1).tolist()
    assert [v.shape[0] for v in encoder.encode_queries(QUERIES)] == q_counts
    assert q_counts[0] < q_counts[1]


def test_batch_invariance(encoder: ColPaliEncoder) -> None:
    pages = _pages()
    together = encoder.encode_pages(pages)
    alone = [encoder.encode_pages([p])[0] for p in pages]
    for a, b in zip(together, alone):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5)
    q_together = encoder.encode_queries(QUERIES)
    for q, a in zip(QUERIES, q_together):
        np.testing.assert_allclose(a, encoder.encode_queries([q])[0], atol=1e-5)


def test_batch_size_does_not_change_vectors(checkpoints: dict[str, Path]) -> None:
    small = load_encoder("colqwen2", model=str(checkpoints["colqwen2"]), device="cpu", batch_size=1)
    big = load_encoder("colqwen2", model=str(checkpoints["colqwen2"]), device="cpu", batch_size=8)
    for a, b in zip(small.encode_pages(_pages() * 2), big.encode_pages(_pages() * 2)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_queries_keep_prefix_and_augmentation_tokens(encoder: ColPaliEncoder) -> None:
    processor = encoder.processor
    batch = processor.process_queries(["revenue"])
    text = processor.tokenizer.decode(batch["input_ids"][0][batch["attention_mask"][0].bool()])
    assert text.count(processor.query_augmentation_token) >= 10
    assert encoder.encode_queries(["revenue"])[0].shape[0] == int(batch["attention_mask"].sum())


def test_equal_to_colpali_engine(encoder: ColPaliEncoder) -> None:
    """THE reference check: per item, our vectors are colpali-engine's unpadded output; scores agree."""
    processor, pages = encoder.processor, _pages()
    ours_p, ours_q = encoder.encode_pages(pages), encoder.encode_queries(QUERIES)
    raw_p, mask_p = _raw(encoder, processor.process_images(pages))
    for i, v in enumerate(ours_p):
        np.testing.assert_allclose(v, raw_p[i][mask_p[i]].numpy(), atol=1e-5)
    # each query alone through colpali-engine (no padding, so no ambiguity)
    alone_q = [_raw(encoder, processor.process_queries([q]))[0][0] for q in QUERIES]  # [(seq_i, 128)]
    for v, raw in zip(ours_q, alone_q):
        np.testing.assert_allclose(v, raw.numpy(), atol=1e-5)
    raw_q, mask_q = _raw(encoder, processor.process_queries(QUERIES))
    if encoder.family != "colpali":  # see FamilySpec.bidirectional_queries: padded PaliGemma batches differ
        for i, v in enumerate(ours_q):
            np.testing.assert_allclose(v, raw_q[i][mask_q[i]].numpy(), atol=1e-5)
    else:
        raw_q = torch.nn.utils.rnn.pad_sequence(alone_q, batch_first=True)  # (2, seq, 128)
    # colpali-engine zeroes padded rows, but with left padding under SDPA PaliGemma/Llama emit NaN
    # there first (NaN * 0 = NaN); its padded tensors are cleaned the way the model intends.
    reference = processor.score_multi_vector(torch.nan_to_num(raw_q), torch.nan_to_num(raw_p), device="cpu")
    scores = processor.score_multi_vector([torch.from_numpy(q) for q in ours_q],
                                          [torch.from_numpy(p) for p in ours_p], device="cpu")
    np.testing.assert_allclose(scores.numpy(), reference.numpy(), rtol=1e-5, atol=1e-4)
    mine = np.array([[score_maxsim(q, p) for p in ours_p] for q in ours_q])
    np.testing.assert_allclose(mine, scores.numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("family", ["colqwen2", "colqwen2.5"])
def test_qwen_visual_token_budget(family: str, checkpoints: dict[str, Path]) -> None:
    path = str(checkpoints[family])
    default = load_encoder(family, model=path, device="cpu")
    capped = load_encoder(family, model=path, device="cpu", max_visual_tokens=8)
    assert capped.options()["max_visual_tokens"] == 8
    assert capped.processor.image_processor.size["longest_edge"] == 8 * 28 * 28
    pages = _pages()
    big, small = default.encode_pages(pages), capped.encode_pages(pages)
    assert small[0].shape[0] < big[0].shape[0]
    batch = capped.processor.process_images(pages[:1])
    n_image = int((batch["input_ids"] == capped.processor.image_token_id).sum())
    assert 0 < n_image <= 8


def test_colsmol_visual_token_budget(checkpoints: dict[str, Path]) -> None:
    path = str(checkpoints["colsmol"])
    seq = 4  # tiny colsmol: 4 tokens per view
    assert idefics3_tiles_per_side(4, seq) == 1 and idefics3_tiles_per_side(19, seq) == 1
    assert idefics3_tiles_per_side(20, seq) == 2 and idefics3_tiles_per_side(40, seq) == 3
    with pytest.raises(ValueError, match="below one image view"):
        idefics3_tiles_per_side(3, seq)
    default = load_encoder("colsmol", model=path, device="cpu")
    capped = load_encoder("colsmol", model=path, device="cpu", max_visual_tokens=4)
    pages = _pages()
    assert capped.encode_pages(pages)[0].shape[0] < default.encode_pages(pages)[0].shape[0]
    batch = capped.processor.process_images(pages[:1])
    assert int((batch["input_ids"] == capped.processor.image_token_id).sum()) == 4


def test_colpali_refuses_a_visual_token_budget(checkpoints: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="fixed"):
        load_encoder("colpali", model=str(checkpoints["colpali"]), max_visual_tokens=64)


def test_bad_inputs_are_named(encoder: ColPaliEncoder) -> None:
    with pytest.raises(TypeError, match=r"pages\[1\]"):
        encoder.encode_pages([_pages()[0], "page.png"])
    with pytest.raises(TypeError, match=r"queries\[0\]"):
        encoder.encode_queries([3])


def test_missing_hub_id_gives_model_load_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match="nobody/no-such-colqwen2"):
        load_encoder("colqwen2", model="nobody/no-such-colqwen2")
    with pytest.raises(ModelLoadError, match="local directory"):
        load_encoder("colsmol", model=str(tmp_path))


def test_tiny_checkpoints_are_deterministic(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    def digest(path: Path) -> str:
        return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()

    again = tiny_colpali.build_tiny_colqwen2(tmp_path / "again", seed=0)
    other = tiny_colpali.build_tiny_colqwen2(tmp_path / "other", seed=1)
    assert digest(again) == digest(checkpoints["colqwen2"]) != digest(other)
    assert (again / "tokenizer.json").read_text() == (checkpoints["colqwen2"] / "tokenizer.json").read_text()
