"""DSE (Document Screenshot Embedding) on Qwen2-VL: one Matryoshka vector per query or page.

Reproduces the model card of `MrLight/dse-qwen2-2b-mrl-v1` (tevatron's DSE): chat-formatted inputs
ending in `<|endoftext|>`, left padding, the last layer's hidden state at the last position, the
first `dim` values, L2-normalised. The prompt strings come from `dse.prompts`.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, ClassVar, Sequence

import numpy as np

from dse.encoders.base import Encoder, LoadedWeights, quantize_if_int8, resolve_device, resolve_dtype, run_batched
from dse.encoders.hub import load_pretrained
from dse.encoders.qwen.prefix_cache import QueryPrefixCache
from dse.encoders.queries import all_parts, query_parts
from dse.encoders.query_length import fit_encoder_queries, max_positions
from dse.encoders.registry import register_encoder
from dse.prompts import DSE_PAGE_PROMPT, DSE_QUERY_TEMPLATE, DSE_SUFFIX

DEFAULT_MODEL = "MrLight/dse-qwen2-2b-mrl-v1"
PIXEL_UNIT = 28 * 28  # one visual token of Qwen2-VL (a 2x2 merge of 14x14 patches)
CARD_MAX_PIXELS = 2560 * PIXEL_UNIT  # the model card's page budget
VIDORE_MAX_PIXELS = 1024 * PIXEL_UNIT  # vidore-benchmark's (configs/dse-qwen2-vidore.yaml)

Message = list[dict[str, Any]]


@register_encoder("dse-qwen2", "DSE (Qwen2-VL), one vector per page, Matryoshka dims")
class DSEQwen2Encoder(LoadedWeights, Encoder):
    """DSE on a Qwen2-VL backbone: single-vector, image pages, Matryoshka dimensions.

    Args:
        model: Hub id or local directory of a DSE Qwen2-VL checkpoint.
        device: "auto" (cuda, mps, then cpu) or a torch device string.
        dtype: "auto" (bfloat16 on cuda, else float32), "float32", "float16", "bfloat16", or "int8"
            (CPU: dynamic int8 linear layers, faster queries; `quantize_if_int8`).
        dim: Matryoshka width: keep the first `dim` values of the hidden state (<= hidden size).
        max_pixels: Pixel budget of a page image (`N * 28 * 28` gives at most N visual tokens); the
            card's 2560*28*28 by default (vidore-benchmark evaluates with 1024*28*28).
        min_pixels: Smallest pixel count of an image.
        batch_size: Starting batch size (halved on out-of-memory).
        revision: Hub revision (branch, tag or commit) to load.
        prefix_cache: Encode the chat prefix every text query shares once and keep its key/value
            cache (`QueryPrefixCache`): the same vectors up to rounding, about half the time a query.
        truncate_queries: A text query longer than the model reads (`query_limit`: its
            `max_position_embeddings`) is cut to fit, with a warning, instead of raising
            `QueryTooLongError` (`dse.encoders.query_length`).

    Raises:
        ValueError: A bad `dim`, pixel budget or batch size.
        ModelLoadError: The weights or the processor could not be loaded.
    """

    prompt_family: ClassVar[str | None] = "dse"

    kind = "single"
    input = "image"
    image_queries = True

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: str = "auto",
        dtype: Any = "auto",
        dim: int = 1536,
        max_pixels: int = CARD_MAX_PIXELS,
        min_pixels: int = PIXEL_UNIT,
        batch_size: int = 8,
        revision: str | None = None,
        prefix_cache: bool = True,
        truncate_queries: bool = False,
    ) -> None:
        from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
        if min_pixels < 1 or max_pixels < min_pixels:
            raise ValueError(
                f"need 1 <= min_pixels <= max_pixels, got min_pixels={min_pixels}, max_pixels={max_pixels}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._model_id = str(model)
        self._device = resolve_device(device)
        self._dtype = resolve_dtype(dtype, self._device)
        self._dim = dim
        self.max_pixels = int(max_pixels)
        self.min_pixels = int(min_pixels)
        self.batch_size = batch_size
        self.truncate_queries = bool(truncate_queries)
        hub_kwargs: dict[str, Any] = {"revision": revision} if revision else {}
        self.model = load_pretrained(
            Qwen2VLForConditionalGeneration.from_pretrained, self._model_id, "model", dtype=self._dtype, **hub_kwargs
        )
        # As on the card: these keyword arguments also override the legacy `min_pixels`/`max_pixels`
        # keys of the checkpoint's preprocessor_config.json (a `size=` argument would not).
        self.processor = load_pretrained(
            AutoProcessor.from_pretrained,
            self._model_id,
            "processor",
            min_pixels=self.min_pixels,
            max_pixels=self.max_pixels,
            **hub_kwargs,
        )
        self.processor.tokenizer.padding_side = "left"
        _check_pixel_budget(self.processor, self.min_pixels, self.max_pixels)
        self.model.to(self._device).eval()
        self._prefix = (
            QueryPrefixCache(lambda: getattr(self.model, "model", None),
                             lambda text: self.prepare_inputs([self.query_message(text)]))
            if prefix_cache else None
        )
        if dtype == "int8" and self._prefix is not None:
            self._prefix.state()  # the shared prefix in float, before the layers turn int8 (in place)
        self.model = quantize_if_int8(self.model, dtype)
        text_config = getattr(self.model.config, "text_config", self.model.config)
        self.hidden_size = int(text_config.hidden_size)
        if dim > self.hidden_size:
            raise ValueError(f"dim={dim} exceeds the hidden size {self.hidden_size} of {self._model_id!r}")
        self._record_weights(revision, self._dtype, self.model.config)  # right after loading
        # tokens a text query may take, template included: the model's positions (lower it to cap queries)
        self.query_limit: int | None = max_positions(self.model.config)
        params = inspect.signature(self.model.forward).parameters
        # Only the hidden states are used: skip computing logits over the whole sequence.
        self._forward_kwargs = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    @property
    def dim(self) -> int:
        """Vector width (the Matryoshka `dim`)."""
        return self._dim

    def options(self) -> dict[str, Any]:
        """Options that change the vectors (dtype is a runtime choice: it only changes rounding)."""
        return {
            "dim": self._dim,
            "max_pixels": self.max_pixels,
            "min_pixels": self.min_pixels,
        }

    # -- message building (the model card's recipe) -------------------------------------------

    @classmethod
    def query_message(cls, query: Any) -> Message:
        """The chat message of one query (str, PIL image, or (image, text)).

        Text: the card's query, a dummy 1x1-requested image then `Query: ...`. Image: the card's
        only recipe for a picture, the page one. Image and text (the card has none): the query
        message with the picture in the dummy image's place, at the page pixel budget.
        """
        from PIL import Image

        parts = query_parts(query)
        if parts.text is None:
            return cls.page_message(parts.image)
        if parts.image is None:
            image = {"type": "image", "image": Image.new("RGB", (28, 28)), "resized_height": 1, "resized_width": 1}
        else:
            image = {"type": "image", "image": _to_rgb(parts.image)}
        return [
            {
                "role": "user",
                "content": [image, {"type": "text", "text": DSE_QUERY_TEMPLATE.format(query=parts.text)}],
            }
        ]

    @staticmethod
    def page_message(page: Any) -> Message:
        """The chat message of one page image (converted to RGB), then the page prompt."""
        return [
            {
                "role": "user",
                "content": [{"type": "image", "image": _to_rgb(page)}, {"type": "text", "text": DSE_PAGE_PROMPT}],
            }
        ]

    def chat_text(self, message: Message) -> str:
        """The text the model reads for one message: chat template, generation prompt, suffix."""
        text = self.processor.apply_chat_template(message, tokenize=False, add_generation_prompt=True)
        return text + DSE_SUFFIX

    def prepare_inputs(self, messages: Sequence[Message]) -> Any:
        """Processor inputs (token ids, pixel values, grids) for a batch of messages, on the device."""
        images, videos = _vision_inputs(list(messages), self.processor)
        with warnings.catch_warnings():
            # transformers 5 re-passes the load-time pixel budget (already in `size`) at each call
            warnings.filterwarnings("ignore", message="Passing `min_pixels` and `max_pixels`", category=FutureWarning)
            inputs = self.processor(
                text=[self.chat_text(m) for m in messages],
                images=images,
                videos=videos,
                padding="longest",
                return_tensors="pt",
            )
        return inputs.to(self._device)

    # -- encoding --------------------------------------------------------------------------------

    def _embed(self, messages: Sequence[Message], text_queries: bool = False) -> list[np.ndarray]:
        """Embed one batch of messages: one float32 (dim,) unit vector each.

        `text_queries`: every message is a text query's (they start with the cached prefix).
        """
        import torch

        inputs = self.prepare_inputs(messages)
        with torch.inference_mode():
            last = self._prefix.last_states(inputs) if text_queries and self._prefix is not None else None
            if last is None:
                backbone = getattr(self.model, "model", None)  # Qwen2VLModel: the same states, no lm_head
                if isinstance(backbone, torch.nn.Module):
                    states = backbone(**inputs, use_cache=False).last_hidden_state  # (batch, seq, hidden)
                else:
                    out = self.model(**inputs, output_hidden_states=True, use_cache=False, **self._forward_kwargs)
                    states = out.hidden_states[-1]  # (batch, seq, hidden)
                last = states[:, -1]  # (batch, hidden): the <|endoftext|> token (left padding)
            vec = last[:, : self._dim].float()  # (batch, dim)
            vec = torch.nn.functional.normalize(vec, p=2, dim=-1)  # (batch, dim)
        return list(vec.cpu().numpy())

    def _encode(self, messages: list[Message], text_queries: bool = False) -> np.ndarray:
        if not messages:
            return np.zeros((0, self._dim), dtype=np.float32)
        rows = run_batched(messages, lambda batch: self._embed(batch, text_queries), self.batch_size)
        return np.stack(rows).astype(np.float32, copy=False)  # (n, dim)

    def encode_queries(self, queries: Sequence[Any]) -> np.ndarray:
        """Embed queries (str, PIL image, or (image, text)): float32 (n, dim), unit-norm rows."""
        queries = fit_encoder_queries(self, queries)  # the long-query policy (dse.encoders.query_length)
        parts = all_parts(queries)  # a bad query is named by its position
        text = [i for i, p in enumerate(parts) if p.image is None]
        other = [i for i, p in enumerate(parts) if p.image is not None]
        out = np.zeros((len(queries), self._dim), dtype=np.float32)
        if text:
            out[text] = self._encode([self.query_message(queries[i]) for i in text], text_queries=True)
        if other:
            out[other] = self._encode([self.query_message(queries[i]) for i in other])
        return out

    def query_tokens(self, text: str) -> int:
        """Tokens the model reads for a text query (its chat, the placeholder image, the suffix)."""
        return int(self.prepare_inputs([self.query_message(text)])["input_ids"].shape[1])

    def encode_pages(self, pages: Sequence[Any]) -> np.ndarray:
        """Embed page images (PIL): float32 (n, dim), unit-norm rows."""
        messages = []
        for i, page in enumerate(pages):
            try:
                messages.append(self.page_message(page))
            except TypeError as exc:
                raise TypeError(f"page {i}: {exc}") from None
        return self._encode(messages)


def _to_rgb(image: Any) -> Any:
    """An RGB copy of a PIL image; transparency is composited on white (as qwen_vl_utils does)."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise TypeError(f"pages must be PIL images, got {type(image).__name__}")
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.split()[3])
        return background
    return image.convert("RGB")


def _check_pixel_budget(processor: Any, min_pixels: int, max_pixels: int) -> None:
    """Fail loudly if the loaded image processor did not take the requested pixel budget."""
    size = getattr(processor.image_processor, "size", None)
    try:
        got = (size["shortest_edge"], size["longest_edge"])  # type: ignore[index]
    except (KeyError, TypeError):
        image_processor = processor.image_processor
        got = (getattr(image_processor, "min_pixels", None), getattr(image_processor, "max_pixels", None))
    if tuple(got) != (min_pixels, max_pixels):
        raise RuntimeError(
            f"the image processor kept pixel budget (min, max) = {got}, not the requested "
            f"({min_pixels}, {max_pixels}); this transformers version loads Qwen2-VL processors differently"
        )


def _vision_inputs(messages: list[Message], processor: Any) -> tuple[Any, Any]:
    """Images and videos of `messages` through `qwen_vl_utils.process_vision_info`.

    qwen-vl-utils 0.0.14 returns `(images, videos)` by default and `(images, videos, video_kwargs)`
    only when asked; its `image_patch_size` (14 for Qwen2-VL) is passed when the function has it.
    """
    from qwen_vl_utils import process_vision_info

    kwargs: dict[str, Any] = {}
    if "image_patch_size" in inspect.signature(process_vision_info).parameters:
        kwargs["image_patch_size"] = int(getattr(processor.image_processor, "patch_size", 14))
    result = process_vision_info(messages, **kwargs)
    return result[0], result[1]
