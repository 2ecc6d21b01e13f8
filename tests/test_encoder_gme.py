"""gme-qwen2 on a tiny random checkpoint, checked against the card's gme_inference.py (GmeQwen2VL)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from dse.encoders import load_encoder  # noqa: E402
from dse.encoders.qwen.gme_qwen2 import GMEQwen2Encoder  # noqa: E402
from dse.testing.tiny_dse import TINY_DSE_HIDDEN, build_tiny_gme  # noqa: E402

QUERIES = ["hello", "what was the revenue in the third quarter of 2023?", "table"]
INSTRUCTION = "Find a screenshot that relevant to the user's question."


def _page(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = 4 if mode == "RGBA" else 3
    return Image.fromarray(rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8), mode=mode)


PAGES = [_page(112, 168, 1), _page(200, 140, 2), _page(60, 60, 3)]


# ---- the card's gme_inference.py (GmeQwen2VL), transcribed -----------------------------------
# It pins transformers < 4.52. The one change: module paths of transformers 5, where
# Qwen2VLForConditionalGeneration.model is Qwen2VLModel holding .visual and .language_model
# (before: .visual on the outer model and the text decoder as .model), and the vision tower
# returns its merged tokens as `pooler_output`. Images are PIL (no URL/path loading).


def round_by_factor(number: int, factor: int) -> int:
    return round(number / factor) * factor


def ceil_by_factor(number: int, factor: int) -> int:
    return math.ceil(number / factor) * factor


def floor_by_factor(number: int, factor: int) -> int:
    return math.floor(number / factor) * factor


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 4 * 28 * 28,
                 max_pixels: int = 16384 * 28 * 28) -> tuple[int, int]:
    h_bar = max(factor, round_by_factor(height, factor))
    w_bar = max(factor, round_by_factor(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = floor_by_factor(height / beta, factor)
        w_bar = floor_by_factor(width / beta, factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = ceil_by_factor(height * beta, factor)
        w_bar = ceil_by_factor(width * beta, factor)
    if max(h_bar, w_bar) / min(h_bar, w_bar) > 200:
        if h_bar > w_bar:
            h_bar = w_bar * 200
        else:
            w_bar = h_bar * 200
    return h_bar, w_bar


def fetch_image(image: Image.Image) -> Image.Image:
    image = image.convert("RGB")
    width, height = image.size
    resized_height, resized_width = smart_resize(height, width)
    return image.resize((resized_width, resized_height))


class GmeQwen2VL:
    def __init__(self, model_name: str, min_image_tokens: int = 256, max_image_tokens: int = 1280,
                 max_length: int = 1800) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.base = AutoModelForImageTextToText.from_pretrained(model_name)  # card: AutoModelForVision2Seq, fp16
        self.base.eval()
        self.normalize = True
        min_pixels = min_image_tokens * 28 * 28
        max_pixels = max_image_tokens * 28 * 28
        self.max_length = max_length
        self.processor = AutoProcessor.from_pretrained(model_name, min_pixels=min_pixels, max_pixels=max_pixels)
        self.processor.tokenizer.padding_side = "right"
        self.default_instruction = "You are a helpful assistant."

    def forward(self, input_ids: Any = None, attention_mask: Any = None, pixel_values: Any = None,
                image_grid_thw: Any = None, **kwargs: Any) -> Any:
        visual, text_model = self.base.model.visual, self.base.model.language_model
        inputs_embeds = text_model.embed_tokens(input_ids)
        if pixel_values is not None:
            pixel_values = pixel_values.type(visual.dtype)
            image_embeds = visual(pixel_values, grid_thw=image_grid_thw).pooler_output
            image_mask = input_ids == self.base.config.image_token_id
            inputs_embeds[image_mask] = image_embeds
        outputs = text_model(input_ids=None, position_ids=None, attention_mask=attention_mask, inputs_embeds=inputs_embeds)
        pooling_mask = attention_mask
        left_padding = pooling_mask[:, -1].sum() == pooling_mask.shape[0]
        if left_padding:
            embeddings = outputs.last_hidden_state[:, -1]
        else:
            sequence_lengths = pooling_mask.sum(dim=1) - 1
            batch_size = outputs.last_hidden_state.shape[0]
            embeddings = outputs.last_hidden_state[torch.arange(batch_size), sequence_lengths]
        if self.normalize:
            embeddings = torch.nn.functional.normalize(embeddings, p=2, dim=1)
        return embeddings.contiguous()

    def embed(self, texts: list, images: list, is_query: bool = True, instruction: str | None = None) -> Any:
        input_texts, input_images = [], []
        for t, i in zip(texts, images):
            if not is_query or instruction is None:
                instruction = self.default_instruction
            input_str = ""
            if i is None:
                input_images = None
            else:
                input_str += "<|vision_start|><|image_pad|><|vision_end|>"
                i = fetch_image(i)
                input_images.append(i)
            if t is not None:
                input_str += t
            msg = (f"<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{input_str}<|im_end|>\n"
                   "<|im_start|>assistant\n<|endoftext|>")
            input_texts.append(msg)
        inputs = self.processor(text=input_texts, images=input_images, padding=True, truncation=True,
                                max_length=self.max_length, return_tensors="pt")
        with torch.no_grad():
            return self.forward(**inputs)

    def get_text_embeddings(self, texts: list, instruction: str | None = None) -> Any:
        return self.embed(texts=texts, images=[None] * len(texts), instruction=instruction)

    def get_image_embeddings(self, images: list, is_query: bool = True, instruction: str | None = None) -> Any:
        return self.embed(texts=[None] * len(images), images=images, is_query=is_query, instruction=instruction)

    def get_fused_embeddings(self, texts: list, images: list, instruction: str | None = None) -> Any:
        return self.embed(texts=texts, images=images, instruction=instruction)


# ---- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gme(tmp_path_factory.mktemp("tiny-gme"), seed=0)


@pytest.fixture(scope="module")
def encoder(tiny_dir: Path) -> GMEQwen2Encoder:
    enc = load_encoder("gme-qwen2", model=str(tiny_dir), min_image_tokens=4, max_image_tokens=64)
    assert isinstance(enc, GMEQwen2Encoder)
    return enc


@pytest.fixture(scope="module")
def reference(tiny_dir: Path) -> GmeQwen2VL:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return GmeQwen2VL(str(tiny_dir), min_image_tokens=4, max_image_tokens=64)


# ---- tests -----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_vectors_equal_the_card(encoder: GMEQwen2Encoder, reference: GmeQwen2VL) -> None:
    """THE KEY TEST: text, image and fused queries and pages in batches equal GmeQwen2VL's."""
    np.testing.assert_allclose(
        encoder.encode_queries(QUERIES), reference.get_text_embeddings(QUERIES, instruction=INSTRUCTION).numpy(),
        atol=1e-5)
    np.testing.assert_allclose(
        encoder.encode_pages(PAGES), reference.get_image_embeddings(PAGES, is_query=False).numpy(), atol=1e-5)
    np.testing.assert_allclose(
        encoder.encode_queries(PAGES[:2]),
        reference.get_image_embeddings(PAGES[:2], instruction=INSTRUCTION).numpy(), atol=1e-5)
    fused = [(PAGES[0], "revenue"), (PAGES[2], "which table lists the results?")]
    np.testing.assert_allclose(
        encoder.encode_queries(fused),
        reference.get_fused_embeddings(["revenue", "which table lists the results?"], [PAGES[0], PAGES[2]],
                                       instruction=INSTRUCTION).numpy(), atol=1e-5)


def test_shapes_norms_and_options(encoder: GMEQwen2Encoder) -> None:
    q, p = encoder.encode_queries(QUERIES), encoder.encode_pages(PAGES)
    assert q.shape == (3, TINY_DSE_HIDDEN) and p.shape == (3, TINY_DSE_HIDDEN) and q.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(np.concatenate([q, p]), axis=1), 1.0, atol=1e-5)
    assert encoder.options() == {"min_image_tokens": 4, "max_image_tokens": 64, "max_length": 1800,
                                 "instruction": INSTRUCTION}
    assert encoder.encode_queries([]).shape == (0, TINY_DSE_HIDDEN)


def test_mixed_batch_of_text_and_image_queries(encoder: GMEQwen2Encoder) -> None:
    """The card needs every item of a batch to have an image or none; dse batches any mix."""
    queries = ["hello", PAGES[0], (PAGES[1], "table")]
    together = encoder.encode_queries(queries)
    apart = np.concatenate([encoder.encode_queries([q]) for q in queries])
    np.testing.assert_allclose(together, apart, atol=1e-5)


def test_exact_text_and_resizing(encoder: GMEQwen2Encoder) -> None:
    from dse.encoders.queries import query_parts

    assert encoder.text(query_parts((PAGES[0], "q")), "I.") == (
        "<|im_start|>system\nI.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>q<|im_end|>\n"
        "<|im_start|>assistant\n<|endoftext|>"
    )
    inputs = encoder.prepare_inputs([(query_parts("hello"), INSTRUCTION), (query_parts(PAGES[0]), INSTRUCTION)])
    assert inputs["attention_mask"][0, -1] == 0  # right padding
    image_pad = encoder.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"][1] == image_pad).sum()) == 4 * 6  # 112x168 px: 8x12 patches, 4x6 merged


def test_bad_pages_raise(encoder: GMEQwen2Encoder) -> None:
    with pytest.raises(TypeError, match="page 1"):
        encoder.encode_pages([PAGES[0], "not an image"])


def test_card_forward_uses_1d_positions_not_mrope(encoder: GMEQwen2Encoder) -> None:
    """The card runs the text decoder on the merged embeddings itself (no M-RoPE positions):
    the standard Qwen2VLModel forward gives other vectors for an image query, so it is not used."""
    from dse.encoders.queries import query_parts

    inputs = encoder.prepare_inputs([(query_parts(PAGES[0]), INSTRUCTION)])
    with torch.no_grad():
        hidden = encoder.model.model(**inputs, use_cache=False).last_hidden_state[:, -1]
    standard = torch.nn.functional.normalize(hidden.float(), dim=-1).numpy()
    assert not np.allclose(encoder.encode_queries([PAGES[0]]), standard, atol=1e-3)
