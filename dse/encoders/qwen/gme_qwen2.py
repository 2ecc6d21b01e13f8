"""GME (Alibaba-NLP/gme-Qwen2-VL-2B-Instruct, -7B): one vector per query or page.

Reproduces the card's `gme_inference.py` (`GmeQwen2VL`, which needs transformers < 4.52) on
transformers' current Qwen2-VL classes: the text written out as
`<|im_start|>system\\n{instruction}...<|im_start|>assistant\\n<|endoftext|>` with the image tokens
before the text, images converted to RGB and resized by the card's `smart_resize` (28-pixel
factor, 4..16384 tokens) before the processor's own budget (`min_image_tokens`..`max_image_tokens`),
right padding, truncation at `max_length`. Its forward pass embeds the tokens, writes the vision
tower's merged tokens over the image placeholders and runs the text decoder on those embeddings
with no position ids, so positions are plain 1-D (no multimodal RoPE); then the hidden state of
the last real token, L2-normalised. Pages always take the default instruction.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar, Sequence

import numpy as np

from dse.encoders.base import Encoder, LoadedWeights, quantize_if_int8, resolve_device, resolve_dtype, run_batched
from dse.encoders.hub import load_pretrained
from dse.encoders.qwen.prefix_cache import QueryPrefixCache
from dse.encoders.queries import QueryParts, all_parts
from dse.encoders.query_length import fit_encoder_queries
from dse.encoders.qwen.dse_qwen2 import PIXEL_UNIT, _check_pixel_budget
from dse.encoders.registry import register_encoder
from dse.prompts import GME_DEFAULT_INSTRUCTION, GME_IMAGE_TOKENS, GME_QUERY_INSTRUCTION, GME_TEMPLATE

DEFAULT_MODEL = "Alibaba-NLP/gme-Qwen2-VL-2B-Instruct"


@register_encoder("gme-qwen2", "GME (Qwen2-VL), one vector per page, text / image / mixed queries")
class GMEQwen2Encoder(LoadedWeights, Encoder):
    """GME on a Qwen2-VL backbone: single-vector, image pages, text / image / mixed queries.

    Args:
        model: Hub id or local directory of a GME checkpoint.
        device: "auto" (cuda, mps, then cpu) or a torch device string.
        dtype: "auto" (bfloat16 on cuda, else float32; the card uses float16), a dtype name, or "int8"
            (CPU: dynamic int8 linear layers, faster queries).
        min_image_tokens: Smallest visual token count of an image (the card's 256).
        max_image_tokens: Visual token budget of an image (the card's 1280).
        max_length: Token budget of one input (the card's 1800). A text query over it raises
            `QueryTooLongError` (`dse.encoders.query_length`); pages are truncated by the processor.
        instruction: The query instruction (GME's ViDoRe instruction by default).
        batch_size: Starting batch size (halved on out-of-memory).
        revision: Hub revision to load.
        prefix_cache: Encode the instruction every text query starts with once and keep its
            key/value cache (`QueryPrefixCache`): the same vectors up to rounding.
        truncate_queries: Cut a text query over `max_length` to fit (a warning) instead of raising.
    """

    prompt_family: ClassVar[str | None] = "gme"

    kind = "single"
    input = "image"
    image_queries = True

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: str = "auto",
        dtype: Any = "auto",
        min_image_tokens: int = 256,
        max_image_tokens: int = 1280,
        max_length: int = 1800,
        instruction: str = GME_QUERY_INSTRUCTION,
        batch_size: int = 8,
        revision: str | None = None,
        prefix_cache: bool = True,
        truncate_queries: bool = False,
    ) -> None:
        from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

        if min_image_tokens < 1 or max_image_tokens < min_image_tokens:
            raise ValueError(f"need 1 <= min_image_tokens <= max_image_tokens, got {min_image_tokens}, {max_image_tokens}")
        if batch_size < 1 or max_length < 1:
            raise ValueError(f"batch_size and max_length must be >= 1, got {batch_size}, {max_length}")
        if not isinstance(instruction, str) or not instruction:
            raise ValueError("instruction must be a non-empty string")
        self._model_id = str(model)
        self._device = resolve_device(device)
        self._dtype = resolve_dtype(dtype, self._device)
        self.min_image_tokens, self.max_image_tokens = int(min_image_tokens), int(max_image_tokens)
        self.max_length = int(max_length)
        self.instruction = instruction
        self.batch_size = batch_size
        self.truncate_queries = bool(truncate_queries)
        hub: dict[str, Any] = {"revision": revision} if revision else {}
        self.model = load_pretrained(
            Qwen2VLForConditionalGeneration.from_pretrained, self._model_id, "model", dtype=self._dtype, **hub
        )
        min_pixels, max_pixels = self.min_image_tokens * PIXEL_UNIT, self.max_image_tokens * PIXEL_UNIT
        self.processor = load_pretrained(
            AutoProcessor.from_pretrained, self._model_id, "processor", min_pixels=min_pixels, max_pixels=max_pixels,
            **hub,
        )
        self.processor.tokenizer.padding_side = "right"
        _check_pixel_budget(self.processor, min_pixels, max_pixels)
        self.model.to(self._device).eval()
        self._prefix = (  # the instruction's tokens, shared by every text query: encoded once
            QueryPrefixCache(lambda: getattr(self.model, "model", None),
                             lambda text: self.prepare_inputs([(QueryParts(None, text), self.instruction)]), mrope=False)
            if prefix_cache else None
        )
        if dtype == "int8" and self._prefix is not None:
            self._prefix.state()  # the shared prefix in float, before the layers turn int8 (in place)
        self.model = quantize_if_int8(self.model, dtype)
        self._dim = int(self.model.config.text_config.hidden_size)
        self._record_weights(revision, self._dtype, self.model.config)  # right after loading

    @property
    def dim(self) -> int:
        """Vector width (the hidden size: 1536 for the 2B model, 3584 for the 7B)."""
        return self._dim



    def options(self) -> dict[str, Any]:
        """Options that change the vectors."""
        return {"min_image_tokens": self.min_image_tokens, "max_image_tokens": self.max_image_tokens,
                "max_length": self.max_length, "instruction": self.instruction}

    # -- the card's embed() ----------------------------------------------------------------------

    @staticmethod
    def text(parts: QueryParts, instruction: str) -> str:
        """The text the model reads for one input (image tokens first, then the text)."""
        body = (GME_IMAGE_TOKENS if parts.image is not None else "") + (parts.text or "")
        return GME_TEMPLATE.format(instruction=instruction, input=body)

    def prepare_inputs(self, items: Sequence[tuple[QueryParts, str]]) -> Any:
        """Processor inputs for (parts, instruction) items, on the device."""
        texts = [self.text(parts, instruction) for parts, instruction in items]
        images = [fetch_image(parts.image) for parts, _ in items if parts.image is not None]
        with warnings.catch_warnings():
            # transformers 5 re-passes the load-time pixel budget (already in `size`) at each call
            warnings.filterwarnings("ignore", message="Passing `min_pixels` and `max_pixels`", category=FutureWarning)
            inputs = self.processor(
                text=texts, images=images or None, padding=True, truncation=True, max_length=self.max_length,
                return_tensors="pt",
            )
        return inputs.to(self._device)

    def _embed(self, items: Sequence[tuple[QueryParts, str]]) -> list[np.ndarray]:
        import torch

        inputs = self.prepare_inputs(items)
        base = self.model.model  # Qwen2VLModel: .visual and .language_model
        input_ids, mask = inputs["input_ids"], inputs["attention_mask"]  # (batch, seq)
        text_queries = all(parts.image is None and instruction == self.instruction for parts, instruction in items)
        if text_queries and self._prefix is not None:
            with torch.inference_mode():
                last = self._prefix.last_states(inputs)  # (batch, hidden), or None: the full forward
            if last is not None:
                return list(torch.nn.functional.normalize(last.float(), p=2, dim=1).cpu().numpy())
        with torch.inference_mode():
            embeds = base.language_model.embed_tokens(input_ids)  # (batch, seq, hidden)
            if inputs.get("pixel_values") is not None:
                pixels = inputs["pixel_values"].type(base.visual.dtype)
                image_embeds = base.visual(pixels, grid_thw=inputs["image_grid_thw"]).pooler_output  # (tokens, hidden)
                embeds[input_ids == self.model.config.image_token_id] = image_embeds.to(embeds.dtype)
            hidden = base.language_model(
                input_ids=None, attention_mask=mask, inputs_embeds=embeds, use_cache=False
            ).last_hidden_state  # (batch, seq, hidden); position_ids None: 1-D positions, as on the card
            if bool(mask[:, -1].sum() == mask.shape[0]):  # the card's left-padding test
                pooled = hidden[:, -1]  # (batch, hidden)
            else:
                pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), mask.sum(dim=1) - 1]
            vec = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)  # (batch, hidden)
        return list(vec.cpu().numpy())

    def _encode(self, items: list[tuple[QueryParts, str]]) -> np.ndarray:
        if not items:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.stack(run_batched(items, self._embed, self.batch_size)).astype(np.float32, copy=False)

    def encode_queries(self, queries: Sequence[Any]) -> np.ndarray:
        """Embed queries (str, PIL image, or (image, text)): float32 (n, dim), unit-norm rows."""
        queries = fit_encoder_queries(self, queries)  # the long-query policy (dse.encoders.query_length)
        return self._encode([(parts, self.instruction) for parts in all_parts(queries)])

    @property
    def query_limit(self) -> int:
        """Tokens a text query may take, template included: `max_length`."""
        return self.max_length

    def query_tokens(self, text: str) -> int:
        """Tokens the model reads for a text query (the template with the instruction included)."""
        return len(self.processor.tokenizer(self.text(QueryParts(None, text), self.instruction))["input_ids"])

    def encode_pages(self, pages: Sequence[Any]) -> np.ndarray:
        """Embed page images (PIL) with the default instruction: float32 (n, dim), unit-norm rows."""
        from PIL import Image

        for i, page in enumerate(pages):
            if not isinstance(page, Image.Image):
                raise TypeError(f"page {i}: pages must be PIL images, got {type(page).__name__}")
        return self._encode([(QueryParts(page, None), GME_DEFAULT_INSTRUCTION) for page in pages])


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 4 * 28 * 28,
                 max_pixels: int = 16384 * 28 * 28, max_ratio: int = 200) -> tuple[int, int]:
    """The card's `smart_resize` (qwen_vl_utils' of its time): sides multiple of `factor`, pixels in range."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    if max(h_bar, w_bar) / min(h_bar, w_bar) > max_ratio:
        if h_bar > w_bar:
            h_bar = w_bar * max_ratio
        else:
            w_bar = h_bar * max_ratio
    return h_bar, w_bar


def fetch_image(image: Any) -> Any:
    """The card's `fetch_image` for a PIL image: RGB, then resized by `smart_resize`."""
    image = image.convert("RGB")
    width, height = image.size
    resized_height, resized_width = smart_resize(height, width)
    return image.resize((resized_width, resized_height))
