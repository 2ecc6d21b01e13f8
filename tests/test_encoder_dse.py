"""DSE (Qwen2-VL) encoder on a tiny random checkpoint, checked against the model card's recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("qwen_vl_utils")

from dse.encoders import ModelLoadError, load_encoder  # noqa: E402
from dse.encoders.qwen.dse_qwen2 import DSEQwen2Encoder  # noqa: E402
from dse.prompts import DSE_PAGE_PROMPT  # noqa: E402
from dse.testing.tiny_dse import TINY_DSE_HIDDEN, build_tiny_dse  # noqa: E402

QUERIES = ["hello", "what was the revenue in the third quarter of 2023?", "table"]


def _page(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = 4 if mode == "RGBA" else 3
    pixels = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    return Image.fromarray(pixels, mode=mode)


PAGES = [_page(112, 168, 1), _page(200, 140, 2), _page(60, 60, 3)]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_dse(tmp_path_factory.mktemp("tiny-dse"), seed=0)


@pytest.fixture(scope="module")
def encoder(tiny_dir: Path) -> DSEQwen2Encoder:
    enc = load_encoder("dse-qwen2", model=str(tiny_dir), dim=TINY_DSE_HIDDEN)
    assert isinstance(enc, DSEQwen2Encoder)
    return enc


# ---- the model card's recipe, written out literally (not using DSEQwen2Encoder) ----------------


class Reference:
    """DSE as on the model card of MrLight/dse-qwen2-2b-mrl-v1 (see shared/notes/reference-recipes.md)."""

    def __init__(self, model_dir: str, max_pixels: int = 2560 * 28 * 28) -> None:
        from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

        # the card: min_pixels = 1*28*28, max_pixels = 2560*28*28, bf16 + flash attention on cuda:0
        # (fp32 on the CPU here)
        self.processor = AutoProcessor.from_pretrained(model_dir, min_pixels=1 * 28 * 28, max_pixels=max_pixels)
        self.model = Qwen2VLForConditionalGeneration.from_pretrained(model_dir).eval()
        self.processor.tokenizer.padding_side = "left"
        self.model.padding_side = "left"

    def _last_hidden(self, messages: list[Any]) -> np.ndarray:
        from qwen_vl_utils import process_vision_info

        texts = [
            self.processor.apply_chat_template(msg, tokenize=False, add_generation_prompt=True) + "<|endoftext|>"
            for msg in messages
        ]
        image_inputs, video_inputs = process_vision_info(messages)
        inputs = self.processor(
            text=texts, images=image_inputs, videos=video_inputs, padding="longest", return_tensors="pt"
        )
        cache_position = torch.arange(0, len(texts))
        inputs = self.model.prepare_inputs_for_generation(**inputs, cache_position=cache_position, use_cache=False)
        with torch.no_grad():
            output = self.model(**inputs, return_dict=True, output_hidden_states=True)
        return output.hidden_states[-1][:, -1].float().numpy()  # (batch, hidden), un-normalised

    def raw_queries(self, queries: list[str]) -> np.ndarray:
        messages = [
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "image": Image.new("RGB", (28, 28)), "resized_height": 1, "resized_width": 1},
                        {"type": "text", "text": f"Query: {query}"},
                    ],
                }
            ]
            for query in queries
        ]
        return self._last_hidden(messages)

    def raw_pages(self, pages: list[Image.Image]) -> np.ndarray:
        messages = [
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "image": page},
                        {"type": "text", "text": "What is shown in this image?"},
                    ],
                }
            ]
            for page in pages
        ]
        return self._last_hidden(messages)


def matryoshka(raw: np.ndarray, dim: int) -> np.ndarray:
    """The card's get_embedding: keep the first `dim` values, then L2-normalise."""
    reps = torch.from_numpy(raw)[:, :dim]
    return torch.nn.functional.normalize(reps, p=2, dim=-1).numpy()


@pytest.fixture(scope="module")
def reference(tiny_dir: Path) -> Reference:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the card's min_pixels/max_pixels kwargs
        return Reference(str(tiny_dir))


# ---- tests -----------------------------------------------------------------------------------


def test_shapes_dtype_and_unit_norms(encoder: DSEQwen2Encoder) -> None:
    q = encoder.encode_queries(QUERIES)
    p = encoder.encode_pages(PAGES)
    assert q.shape == (3, TINY_DSE_HIDDEN) and p.shape == (3, TINY_DSE_HIDDEN)
    assert q.dtype == np.float32 and p.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
    assert encoder.encode_queries([]).shape == (0, TINY_DSE_HIDDEN)
    assert encoder.kind == "single" and encoder.input == "image" and encoder.dim == TINY_DSE_HIDDEN


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_vectors_equal_the_model_card_recipe(encoder: DSEQwen2Encoder, reference: Reference) -> None:
    """THE KEY TEST: same vectors as the card's code, for a batch of queries and of mixed-size pages."""
    np.testing.assert_allclose(
        encoder.encode_queries(QUERIES), matryoshka(reference.raw_queries(QUERIES), TINY_DSE_HIDDEN), atol=1e-5
    )
    np.testing.assert_allclose(
        encoder.encode_pages(PAGES), matryoshka(reference.raw_pages(PAGES), TINY_DSE_HIDDEN), atol=1e-5
    )


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_matryoshka_truncates_then_normalises(tiny_dir: Path, reference: Reference) -> None:
    enc16 = load_encoder("dse-qwen2", model=str(tiny_dir), dim=16)
    q = enc16.encode_queries(QUERIES)
    p = enc16.encode_pages(PAGES[:2])
    assert q.shape == (3, 16) and p.shape == (2, 16)
    raw_q, raw_p = reference.raw_queries(QUERIES), reference.raw_pages(PAGES[:2])
    np.testing.assert_allclose(q, matryoshka(raw_q, 16), atol=1e-5)
    np.testing.assert_allclose(p, matryoshka(raw_p, 16), atol=1e-5)
    # truncating the normalised full vector is not the same thing
    assert not np.allclose(q, matryoshka(raw_q, TINY_DSE_HIDDEN)[:, :16], atol=1e-3)
    assert enc16.options()["dim"] == 16


def test_batch_invariance(encoder: DSEQwen2Encoder) -> None:
    together = encoder.encode_pages(PAGES[:2])
    apart = np.concatenate([encoder.encode_pages([PAGES[0]]), encoder.encode_pages([PAGES[1]])])
    np.testing.assert_allclose(together, apart, atol=1e-5)
    together = encoder.encode_queries(QUERIES[:2])
    apart = np.concatenate([encoder.encode_queries([QUERIES[0]]), encoder.encode_queries([QUERIES[1]])])
    np.testing.assert_allclose(together, apart, atol=1e-5)


def test_exact_text_fed_to_the_model(encoder: DSEQwen2Encoder) -> None:
    query_text = encoder.chat_text(encoder.query_message("hello"))
    assert query_text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Query: hello<|im_end|>\n"
        "<|im_start|>assistant\n<|endoftext|>"
    )
    page_text = encoder.chat_text(encoder.page_message(PAGES[0]))
    assert page_text.endswith(
        f"<|vision_start|><|image_pad|><|vision_end|>{DSE_PAGE_PROMPT}<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"
    )
    # the token ids actually fed: left padded, so every row ends with <|endoftext|>
    tok = encoder.processor.tokenizer
    inputs = encoder.prepare_inputs([encoder.query_message("hello"), encoder.page_message(PAGES[0])])
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    assert inputs["input_ids"][:, -1].tolist() == [eot, eot]
    assert inputs["attention_mask"][0, 0] == 0 and inputs["attention_mask"][1, 0] == 1  # query row is padded left
    query_ids = inputs["input_ids"][0][inputs["attention_mask"][0].bool()]
    decoded = tok.decode(query_ids)
    assert "Query: hello" in decoded and decoded.endswith("<|im_start|>assistant\n<|endoftext|>")
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
    assert int((query_ids == image_pad).sum()) == 4  # the 1x1 request becomes qwen_vl_utils' 56x56 minimum
    assert DSE_PAGE_PROMPT in tok.decode(inputs["input_ids"][1])


def test_page_modes_are_converted_to_rgb(encoder: DSEQwen2Encoder) -> None:
    gray = PAGES[0].convert("L")
    np.testing.assert_allclose(
        encoder.encode_pages([gray]), encoder.encode_pages([gray.convert("RGB")]), atol=1e-6
    )
    rgba = _page(84, 84, 7, mode="RGBA")
    assert encoder.encode_pages([rgba]).shape == (1, TINY_DSE_HIDDEN)
    assert encoder.page_message(rgba)[0]["content"][0]["image"].mode == "RGB"
    with pytest.raises(TypeError, match="page 1"):
        encoder.encode_pages([PAGES[0], "not an image"])


def test_max_pixels_changes_the_number_of_visual_tokens(tiny_dir: Path, encoder: DSEQwen2Encoder) -> None:
    small = load_encoder("dse-qwen2", model=str(tiny_dir), dim=TINY_DSE_HIDDEN, max_pixels=4 * 28 * 28)
    page = _page(280, 280, 5)
    image_pad = encoder.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")

    def visual_tokens(enc: DSEQwen2Encoder) -> int:
        return int((enc.prepare_inputs([enc.page_message(page)])["input_ids"] == image_pad).sum())

    assert visual_tokens(encoder) == 100  # 280x280 -> 20x20 patches -> 10x10 merged tokens
    assert visual_tokens(small) == 4
    assert small.options()["max_pixels"] == 4 * 28 * 28
    assert not np.allclose(small.encode_pages([page]), encoder.encode_pages([page]), atol=1e-4)


def test_options_and_describe(encoder: DSEQwen2Encoder, tiny_dir: Path) -> None:
    assert encoder.options() == {
        "dim": TINY_DSE_HIDDEN, "max_pixels": 2560 * 28 * 28, "min_pixels": 28 * 28
    }
    info = encoder.describe()
    assert info["name"] == "dse-qwen2" and info["model"] == str(tiny_dir) and info["dim"] == TINY_DSE_HIDDEN
    assert info["revision"] is None  # a local directory has no commit hash


def test_run_batched_halves_on_oom(encoder: DSEQwen2Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = encoder.encode_queries(QUERIES)
    real_model = encoder.model
    seen: list[int] = []

    def flaky(**inputs: Any) -> Any:
        seen.append(int(inputs["input_ids"].shape[0]))
        if inputs["input_ids"].shape[0] > 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_model(**inputs)

    monkeypatch.setattr(encoder, "model", flaky)
    monkeypatch.setattr(encoder, "_prefix", None)  # the full forward (the prefix cache bypasses `model`)
    monkeypatch.setattr(encoder, "batch_size", 4)
    got = encoder.encode_queries(QUERIES)
    assert seen == [3, 2, 1, 1, 1]
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("dim", [0, -3, TINY_DSE_HIDDEN + 1])
def test_bad_dim_raises(tiny_dir: Path, dim: int) -> None:
    with pytest.raises(ValueError, match="dim"):
        load_encoder("dse-qwen2", model=str(tiny_dir), dim=dim)


def test_missing_hub_id_gives_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError) as info:
        load_encoder("dse-qwen2", model="no-such-org/no-such-dse-model")
    message = str(info.value)
    assert "no-such-org/no-such-dse-model" in message
    # the hint: download on a machine with network into a local directory and pass that directory
    assert "--local-dir DIR" in message and "model=DIR" in message


def test_tiny_checkpoint_is_deterministic(tmp_path: Path, tiny_dir: Path) -> None:
    again = build_tiny_dse(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (tiny_dir / name).read_bytes(), name
    other = build_tiny_dse(tmp_path / "other", seed=1)
    assert (other / "model.safetensors").read_bytes() != (tiny_dir / "model.safetensors").read_bytes()


def _legacy_layout(src: Path, dst: Path) -> Path:
    """A copy of the checkpoint with the processor files laid out like the hub's Qwen2-VL/DSE repos."""
    import json
    import shutil

    shutil.copytree(src, dst)
    processor = json.loads((dst / "processor_config.json").read_text())
    image = processor.pop("image_processor")
    processor.pop("video_processor", None)
    image.pop("size", None)
    image.update({"min_pixels": 3136, "max_pixels": 12845056})  # Qwen2-VL's shipped defaults
    (dst / "preprocessor_config.json").write_text(json.dumps(image))
    (dst / "processor_config.json").write_text(json.dumps(processor))
    return dst


def test_pixel_budget_overrides_legacy_preprocessor_config(tiny_dir: Path, tmp_path: Path) -> None:
    """The hub checkpoint's preprocessor_config.json has min_pixels/max_pixels keys: ours must win."""
    legacy = _legacy_layout(tiny_dir, tmp_path / "legacy")
    enc = load_encoder("dse-qwen2", model=str(legacy), dim=TINY_DSE_HIDDEN, max_pixels=4 * 28 * 28)
    modern = load_encoder("dse-qwen2", model=str(tiny_dir), dim=TINY_DSE_HIDDEN, max_pixels=4 * 28 * 28)
    page = _page(280, 280, 5)
    image_pad = enc.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((enc.prepare_inputs([enc.page_message(page)])["input_ids"] == image_pad).sum()) == 4
    np.testing.assert_allclose(enc.encode_pages([page]), modern.encode_pages([page]), atol=1e-6)
