"""qwen3-vl-embedding on a tiny random checkpoint, checked against the reference Qwen3VLEmbedder."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("qwen_vl_utils")

from dse.encoders import load_encoder  # noqa: E402
from dse.encoders.qwen.qwen3_vl_embedding import Qwen3VLEmbeddingEncoder  # noqa: E402
from dse.testing.tiny_qwen3vl import TINY_QWEN3VL_HIDDEN, build_tiny_qwen3vl_embedding  # noqa: E402

QUERIES = ["hello", "what was the revenue in the third quarter of 2023?", "table"]
QUERY_INSTRUCTION = "Find a document image that matches the given query."


def _page(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = 4 if mode == "RGBA" else 3
    return Image.fromarray(rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8), mode=mode)


PAGES = [_page(112, 168, 1), _page(200, 140, 2), _page(60, 60, 3)]


# ---- QwenLM/Qwen3-VL-Embedding src/models/qwen3_vl_embedding.py, transcribed ------------------
# Only what images and text need (the video branches are left out); `from_pretrained` without
# trust_remote_code (a local directory), on the CPU. Nothing from dse is used.

MAX_LENGTH = 8192
IMAGE_BASE_FACTOR = 16
IMAGE_FACTOR = IMAGE_BASE_FACTOR * 2
MIN_PIXELS = 4 * IMAGE_FACTOR * IMAGE_FACTOR
MAX_PIXELS = 1800 * IMAGE_FACTOR * IMAGE_FACTOR


def _reference_classes() -> tuple[type, type]:
    from dataclasses import dataclass

    from transformers.modeling_outputs import ModelOutput
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLModel, Qwen3VLPreTrainedModel

    @dataclass
    class Qwen3VLForEmbeddingOutput(ModelOutput):
        last_hidden_state: Any = None
        attention_mask: Any = None

    class Qwen3VLForEmbedding(Qwen3VLPreTrainedModel):
        _checkpoint_conversion_mapping: dict = {}
        accepts_loss_kwargs = False

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.model = Qwen3VLModel(config)
            self.post_init()

        def get_input_embeddings(self) -> Any:
            return self.model.get_input_embeddings()

        def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,  # noqa: ANN001
                    pixel_values=None, pixel_values_videos=None, image_grid_thw=None, video_grid_thw=None,
                    **kwargs: Any) -> Any:
            outputs = self.model(
                input_ids=input_ids, pixel_values=pixel_values, pixel_values_videos=pixel_values_videos,
                image_grid_thw=image_grid_thw, video_grid_thw=video_grid_thw, position_ids=position_ids,
                attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs,
            )
            return Qwen3VLForEmbeddingOutput(last_hidden_state=outputs.last_hidden_state, attention_mask=attention_mask)

    return Qwen3VLForEmbedding, Qwen3VLForEmbeddingOutput


class Qwen3VLEmbedder:
    def __init__(self, model_name_or_path: str, max_length: int = MAX_LENGTH, min_pixels: int = MIN_PIXELS,
                 max_pixels: int = MAX_PIXELS, default_instruction: str = "Represent the user's input.") -> None:
        from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

        self.max_length = max_length
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.default_instruction = default_instruction
        model_class, _ = _reference_classes()
        self.model = model_class.from_pretrained(model_name_or_path)
        self.processor = Qwen3VLProcessor.from_pretrained(model_name_or_path, padding_side="right")
        self.model.eval()

    @torch.no_grad()
    def forward(self, inputs: dict) -> dict:
        outputs = self.model(**inputs)
        return {"last_hidden_state": outputs.last_hidden_state, "attention_mask": inputs.get("attention_mask")}

    def format_model_input(self, text: Any = None, image: Any = None, instruction: str | None = None) -> list:
        if instruction:
            instruction = instruction.strip()
            if instruction and not unicodedata.category(instruction[-1]).startswith("P"):
                instruction = instruction + "."
        content: list = []
        conversation = [
            {"role": "system", "content": [{"type": "text", "text": instruction or self.default_instruction}]},
            {"role": "user", "content": content},
        ]
        texts = [] if text is None else ([text] if isinstance(text, str) else text)
        images = [] if image is None else (image if isinstance(image, list) else [image])
        if not texts and not images:
            content.append({"type": "text", "text": "NULL"})
            return conversation
        for img in images:
            content.append({"type": "image", "image": img, "min_pixels": self.min_pixels, "max_pixels": self.max_pixels})
        for txt in texts:
            content.append({"type": "text", "text": txt})
        return conversation

    def _preprocess_inputs(self, conversations: list) -> Any:
        from qwen_vl_utils.vision_process import process_vision_info

        text = self.processor.apply_chat_template(conversations, add_generation_prompt=True, tokenize=False)
        images, video_inputs, video_kwargs = process_vision_info(
            conversations, image_patch_size=16, return_video_metadata=True, return_video_kwargs=True
        )
        videos, video_metadata = None, None
        return self.processor(
            text=text, images=images, videos=videos, video_metadata=video_metadata, truncation=True,
            max_length=self.max_length, padding=True, do_resize=False, return_tensors="pt", **video_kwargs,
        )

    @staticmethod
    def _pooling_last(hidden_state: Any, attention_mask: Any) -> Any:
        flipped_tensor = attention_mask.flip(dims=[1])
        last_one_positions = flipped_tensor.argmax(dim=1)
        col = attention_mask.shape[1] - last_one_positions - 1
        row = torch.arange(hidden_state.shape[0], device=hidden_state.device)
        return hidden_state[row, col]

    def process(self, inputs: list[dict], normalize: bool = True) -> Any:
        conversations = [self.format_model_input(text=e.get("text"), image=e.get("image"),
                                                 instruction=e.get("instruction")) for e in inputs]
        processed_inputs = self._preprocess_inputs(conversations)
        outputs = self.forward(dict(processed_inputs))
        embeddings = self._pooling_last(outputs["last_hidden_state"], outputs["attention_mask"])
        if normalize:
            embeddings = torch.nn.functional.normalize(embeddings, p=2, dim=-1)
        return embeddings


def matryoshka(raw: Any, dim: int) -> np.ndarray:
    """Keep the first `dim` values of the un-normalised embedding, then L2-normalise."""
    return torch.nn.functional.normalize(raw[:, :dim].float(), p=2, dim=-1).numpy()


# ---- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen3vl_embedding(tmp_path_factory.mktemp("tiny-q3"), seed=0)


@pytest.fixture(scope="module")
def encoder(tiny_dir: Path) -> Qwen3VLEmbeddingEncoder:
    enc = load_encoder("qwen3-vl-embedding", model=str(tiny_dir))
    assert isinstance(enc, Qwen3VLEmbeddingEncoder)
    return enc


@pytest.fixture(scope="module")
def reference(tiny_dir: Path) -> Qwen3VLEmbedder:
    return Qwen3VLEmbedder(str(tiny_dir))


# ---- tests -----------------------------------------------------------------------------------


def test_shapes_and_norms(encoder: Qwen3VLEmbeddingEncoder) -> None:
    q, p = encoder.encode_queries(QUERIES), encoder.encode_pages(PAGES)
    assert q.shape == (3, TINY_QWEN3VL_HIDDEN) and p.shape == (3, TINY_QWEN3VL_HIDDEN)
    assert q.dtype == np.float32 and p.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(np.concatenate([q, p]), axis=1), 1.0, atol=1e-5)
    assert encoder.encode_queries([]).shape == (0, TINY_QWEN3VL_HIDDEN)
    assert encoder.dim == TINY_QWEN3VL_HIDDEN and encoder.image_queries


def test_vectors_equal_the_reference(encoder: Qwen3VLEmbeddingEncoder, reference: Qwen3VLEmbedder) -> None:
    """THE KEY TEST: text queries, pages, image and mixed queries in batches equal Qwen3VLEmbedder's."""
    want_q = reference.process([{"text": q, "instruction": QUERY_INSTRUCTION} for q in QUERIES]).numpy()
    np.testing.assert_allclose(encoder.encode_queries(QUERIES), want_q, atol=1e-5)
    want_p = reference.process([{"image": p} for p in PAGES]).numpy()
    np.testing.assert_allclose(encoder.encode_pages(PAGES), want_p, atol=1e-5)
    mixed = [PAGES[1], (PAGES[2], "revenue table")]
    want_m = reference.process([{"image": PAGES[1], "instruction": QUERY_INSTRUCTION},
                                {"image": PAGES[2], "text": "revenue table", "instruction": QUERY_INSTRUCTION}])
    np.testing.assert_allclose(encoder.encode_queries(mixed), want_m.numpy(), atol=1e-5)


def test_matryoshka_and_instruction_option(tiny_dir: Path, reference: Qwen3VLEmbedder) -> None:
    enc = load_encoder("qwen3-vl-embedding", model=str(tiny_dir), dim=16, instruction="Retrieve pages")
    raw = reference.process([{"text": q, "instruction": "Retrieve pages"} for q in QUERIES], normalize=False)
    np.testing.assert_allclose(enc.encode_queries(QUERIES), matryoshka(raw, 16), atol=1e-5)
    assert enc.options()["dim"] == 16 and enc.options()["instruction"] == "Retrieve pages"
    # the full stop the reference adds to an instruction without final punctuation
    assert enc.chat_texts([enc.query_conversation("x")])[0].startswith("<|im_start|>system\nRetrieve pages.<|im_end|>")


def test_exact_text_fed_to_the_model(encoder: Qwen3VLEmbeddingEncoder) -> None:
    assert encoder.chat_texts([encoder.query_conversation("hello")])[0] == (
        f"<|im_start|>system\n{QUERY_INSTRUCTION}<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert encoder.chat_texts([encoder.page_conversation(PAGES[0])])[0] == (
        "<|im_start|>system\nRepresent the user's input.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\n"
    )
    inputs = encoder.prepare_inputs([encoder.query_conversation("hello"), encoder.page_conversation(PAGES[0])])
    assert inputs["attention_mask"][0, -1] == 0 and inputs["attention_mask"][1, -1] == 1  # right padding
    image_pad = encoder.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"][1] == image_pad).sum()) == 4 * 5  # 112x168 -> 128x160 px -> 4x5 tokens


def test_batch_invariance(encoder: Qwen3VLEmbeddingEncoder) -> None:
    together = encoder.encode_pages(PAGES)
    apart = np.concatenate([encoder.encode_pages([p]) for p in PAGES])
    np.testing.assert_allclose(together, apart, atol=1e-5)
    together = encoder.encode_queries(QUERIES)
    apart = np.concatenate([encoder.encode_queries([q]) for q in QUERIES])
    np.testing.assert_allclose(together, apart, atol=1e-5)


def test_max_pixels_changes_visual_tokens(tiny_dir: Path, encoder: Qwen3VLEmbeddingEncoder) -> None:
    small = load_encoder("qwen3-vl-embedding", model=str(tiny_dir), max_pixels=4 * 32 * 32)
    page = _page(320, 320, 5)
    image_pad = encoder.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")

    def tokens(enc: Qwen3VLEmbeddingEncoder) -> int:
        return int((enc.prepare_inputs([enc.page_conversation(page)])["input_ids"] == image_pad).sum())

    assert tokens(encoder) == 100 and tokens(small) == 4


def test_bad_inputs_raise(tiny_dir: Path, encoder: Qwen3VLEmbeddingEncoder) -> None:
    with pytest.raises(TypeError, match="page 1"):
        encoder.encode_pages([PAGES[0], "not an image"])
    with pytest.raises(TypeError, match=r"queries\[1\]"):
        encoder.encode_queries(["ok", 42])
    with pytest.raises(ValueError, match="dim"):
        load_encoder("qwen3-vl-embedding", model=str(tiny_dir), dim=TINY_QWEN3VL_HIDDEN + 1)


def test_tiny_checkpoint_is_deterministic(tmp_path: Path, tiny_dir: Path) -> None:
    again = build_tiny_qwen3vl_embedding(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (tiny_dir / name).read_bytes(), name
