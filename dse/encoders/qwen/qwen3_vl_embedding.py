"""Qwen3-VL-Embedding (Qwen/Qwen3-VL-Embedding-2B, -8B): one Matryoshka vector per query or page.

Reproduces the reference `Qwen3VLEmbedder` of QwenLM/Qwen3-VL-Embedding on transformers' own
Qwen3-VL classes: a system turn holding the instruction (a full stop added when it ends without
punctuation), a user turn with the image(s) then the text, Qwen3-VL's chat template with the
generation prompt, images resized by `qwen_vl_utils` (32-pixel factor, 4..1800 visual tokens) and
passed with `do_resize=False`, right padding, the last layer's hidden state at the last real
token, then (Matryoshka) the first `dim` values, L2-normalised.
"""

from __future__ import annotations

import unicodedata
from typing import Any, ClassVar, Sequence

import numpy as np

from dse.encoders.base import Encoder, LoadedWeights, quantize_if_int8, resolve_device, resolve_dtype, run_batched
from dse.encoders.hub import load_pretrained
from dse.encoders.qwen.prefix_cache import QueryPrefixCache
from dse.encoders.queries import QueryParts, all_parts
from dse.encoders.query_length import fit_encoder_queries
from dse.encoders.registry import register_encoder
from dse.prompts import QWEN3VL_DEFAULT_INSTRUCTION, QWEN3VL_EMPTY_TEXT, QWEN3VL_QUERY_INSTRUCTION

DEFAULT_MODEL = "Qwen/Qwen3-VL-Embedding-2B"
IMAGE_FACTOR = 32  # one visual token: 2x2 merged 16-pixel patches
PATCH_SIZE = 16
MIN_PIXELS = 4 * IMAGE_FACTOR * IMAGE_FACTOR  # the reference's MIN_PIXELS
MAX_PIXELS = 1800 * IMAGE_FACTOR * IMAGE_FACTOR  # the reference's MAX_PIXELS (1,843,200)
MAX_LENGTH = 8192  # the reference's MAX_LENGTH

Conversation = list[dict[str, Any]]


@register_encoder("qwen3-vl-embedding", "Qwen3-VL-Embedding, one vector per page, Matryoshka dims")
class Qwen3VLEmbeddingEncoder(LoadedWeights, Encoder):
    """Qwen3-VL-Embedding: single-vector, image pages, text / image / mixed queries.

    Args:
        model: Hub id or local directory of a Qwen3-VL-Embedding checkpoint.
        device: "auto" (cuda, mps, then cpu) or a torch device string.
        dtype: "auto" (bfloat16 on cuda, else float32), "float32", "float16", "bfloat16", or "int8"
            (CPU: dynamic int8 linear layers, faster queries; `quantize_if_int8`).
        dim: Matryoshka width (the first `dim` values, then normalised); None: the hidden size
            (2048 for the 2B model, 4096 for the 8B; the card documents 64 and up).
        min_pixels: Smallest pixel count of an image (the reference's 4*32*32).
        max_pixels: Pixel budget of an image (the reference's 1800*32*32).
        max_length: Token budget of one input (the reference's 8192). A text query over it raises
            `QueryTooLongError` (`dse.encoders.query_length`); pages are truncated by the processor.
        instruction: The query instruction (the reference's ViDoRe one by default); pages take the
            reference's default instruction.
        batch_size: Starting batch size (halved on out-of-memory).
        revision: Hub revision to load.
        prefix_cache: Encode the system turn every text query starts with once and keep its
            key/value cache (`QueryPrefixCache`): the same vectors up to rounding.
        truncate_queries: Cut a text query over `max_length` to fit (a warning) instead of raising.
    """

    prompt_family: ClassVar[str | None] = "qwen3vl"

    kind = "single"
    input = "image"
    image_queries = True

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: str = "auto",
        dtype: Any = "auto",
        dim: int | None = None,
        min_pixels: int = MIN_PIXELS,
        max_pixels: int = MAX_PIXELS,
        max_length: int = MAX_LENGTH,
        instruction: str = QWEN3VL_QUERY_INSTRUCTION,
        batch_size: int = 8,
        revision: str | None = None,
        prefix_cache: bool = True,
        truncate_queries: bool = False,
    ) -> None:
        from transformers import Qwen3VLModel, Qwen3VLProcessor

        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
        if min_pixels < 1 or max_pixels < min_pixels:
            raise ValueError(f"need 1 <= min_pixels <= max_pixels, got {min_pixels}, {max_pixels}")
        if batch_size < 1 or max_length < 1:
            raise ValueError(f"batch_size and max_length must be >= 1, got {batch_size}, {max_length}")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("instruction must be a non-empty string")
        self._model_id = str(model)
        self._device = resolve_device(device)
        self._dtype = resolve_dtype(dtype, self._device)
        self.min_pixels, self.max_pixels, self.max_length = int(min_pixels), int(max_pixels), int(max_length)
        self.instruction = instruction
        self.batch_size = batch_size
        self.truncate_queries = bool(truncate_queries)
        hub: dict[str, Any] = {"revision": revision} if revision else {}
        # The reference's Qwen3VLForEmbedding is Qwen3VLModel (no LM head) under `model.`: load that.
        self.model = load_pretrained(Qwen3VLModel.from_pretrained, self._model_id, "model", dtype=self._dtype, **hub)
        self.processor = load_pretrained(
            Qwen3VLProcessor.from_pretrained, self._model_id, "processor", padding_side="right", **hub
        )
        self.model.to(self._device).eval()
        self._prefix = (  # the system turn with the instruction, shared by every text query: encoded once
            QueryPrefixCache(lambda: self.model, lambda text: self.prepare_inputs([self.query_conversation(text)]),
                             mrope=False)
            if prefix_cache else None
        )
        if dtype == "int8" and self._prefix is not None:
            self._prefix.state()  # the shared prefix in float, before the layers turn int8 (in place)
        self.model = quantize_if_int8(self.model, dtype)
        self.hidden_size = int(self.model.config.text_config.hidden_size)
        self._dim = self.hidden_size if dim is None else dim
        if self._dim > self.hidden_size:
            raise ValueError(f"dim={dim} exceeds the hidden size {self.hidden_size} of {self._model_id!r}")
        self._record_weights(revision, self._dtype, self.model.config)  # right after loading

    @property
    def dim(self) -> int:
        """Vector width (the Matryoshka `dim`)."""
        return self._dim

    def options(self) -> dict[str, Any]:
        """Options that change the vectors."""
        return {"dim": self._dim, "min_pixels": self.min_pixels, "max_pixels": self.max_pixels,
                "max_length": self.max_length, "instruction": self.instruction}

    # -- the reference's format_model_input -----------------------------------------------------

    def conversation(self, parts: QueryParts, instruction: str | None) -> Conversation:
        """The chat of one input: the system instruction, then the image (if any) and the text."""
        instruction = _punctuated(instruction) or QWEN3VL_DEFAULT_INSTRUCTION
        content: list[dict[str, Any]] = []
        if parts.image is not None:
            content.append({"type": "image", "image": _check_image(parts.image),
                            "min_pixels": self.min_pixels, "max_pixels": self.max_pixels})
        if parts.text is not None:
            content.append({"type": "text", "text": parts.text})
        if not content:
            content.append({"type": "text", "text": QWEN3VL_EMPTY_TEXT})
        return [
            {"role": "system", "content": [{"type": "text", "text": instruction}]},
            {"role": "user", "content": content},
        ]

    def query_conversation(self, query: Any) -> Conversation:
        """The chat of one query (str, PIL image or (image, text)) with the query instruction."""
        return self.conversation(all_parts([query])[0], self.instruction)

    def page_conversation(self, page: Any) -> Conversation:
        """The chat of one page image with the default instruction."""
        return self.conversation(QueryParts(page, None), None)

    def chat_texts(self, conversations: Sequence[Conversation]) -> list[str]:
        """The texts the model reads: Qwen3-VL's chat template with the generation prompt."""
        return list(self.processor.apply_chat_template(list(conversations), add_generation_prompt=True, tokenize=False))

    def prepare_inputs(self, conversations: Sequence[Conversation]) -> Any:
        """Processor inputs for a batch of conversations, on the device."""
        from qwen_vl_utils import process_vision_info

        conversations = list(conversations)
        images, videos, video_kwargs = process_vision_info(
            conversations, image_patch_size=PATCH_SIZE, return_video_metadata=True, return_video_kwargs=True
        )
        if videos is not None:
            raise ValueError("qwen3-vl-embedding in dse takes images and text, not videos")
        inputs = self.processor(
            text=self.chat_texts(conversations), images=images, videos=None, video_metadata=None, truncation=True,
            max_length=self.max_length, padding=True, do_resize=False, return_tensors="pt", **video_kwargs,
        )
        return inputs.to(self._device)

    # -- encoding --------------------------------------------------------------------------------

    def _embed(self, conversations: Sequence[Conversation]) -> list[np.ndarray]:
        import torch

        inputs = self.prepare_inputs(conversations)
        with torch.inference_mode():
            pooled = None
            if self._prefix is not None and inputs.get("pixel_values") is None:  # text only: the cached prefix
                pooled = self._prefix.last_states(inputs)  # (batch, hidden), or None: the full forward
            if pooled is None:
                hidden = self.model(**inputs, use_cache=False).last_hidden_state  # (batch, seq, hidden)
                mask = inputs["attention_mask"]  # (batch, seq), right padded
                last = mask.shape[1] - 1 - mask.flip(dims=[1]).argmax(dim=1)  # (batch,) last real token
                pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (batch, hidden)
            vec = torch.nn.functional.normalize(pooled[:, : self._dim].float(), p=2, dim=-1)  # (batch, dim)
        return list(vec.cpu().numpy())

    def _encode(self, conversations: list[Conversation]) -> np.ndarray:
        if not conversations:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.stack(run_batched(conversations, self._embed, self.batch_size)).astype(np.float32, copy=False)

    def encode_queries(self, queries: Sequence[Any]) -> np.ndarray:
        """Embed queries (str, PIL image, or (image, text)): float32 (n, dim), unit-norm rows."""
        queries = fit_encoder_queries(self, queries)  # the long-query policy (dse.encoders.query_length)
        return self._encode([self.conversation(p, self.instruction) for p in all_parts(queries)])

    @property
    def query_limit(self) -> int:
        """Tokens a text query may take, template included: `max_length`."""
        return self.max_length

    def query_tokens(self, text: str) -> int:
        """Tokens the model reads for a text query (its chat: system instruction, the text, the prompt)."""
        return len(self.processor.tokenizer(self.chat_texts([self.query_conversation(text)])[0])["input_ids"])

    def encode_pages(self, pages: Sequence[Any]) -> np.ndarray:
        """Embed page images (PIL): float32 (n, dim), unit-norm rows."""
        conversations = []
        for i, page in enumerate(pages):
            try:
                conversations.append(self.page_conversation(page))
            except TypeError as exc:
                raise TypeError(f"page {i}: {exc}") from None
        return self._encode(conversations)


def _punctuated(instruction: str | None) -> str | None:
    """The reference's rule: strip, and end with a full stop unless it ends with punctuation."""
    if not instruction:
        return instruction
    instruction = instruction.strip()
    if instruction and not unicodedata.category(instruction[-1]).startswith("P"):
        instruction += "."
    return instruction


def _check_image(image: Any) -> Any:
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise TypeError(f"pages must be PIL images, got {type(image).__name__}")
    return image
