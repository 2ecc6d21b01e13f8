"""ColPali-family multi-vector encoders (ColPali, ColQwen2, ColQwen2.5, ColSmol) through colpali-engine.

Pages go through `processor.process_images`, queries through `processor.process_queries` (query
prefix and augmentation tokens kept, as vidore-benchmark does); the model gives L2-normalised
(batch, seq, 128) vectors and the padded positions (attention mask 0) are dropped, so each item
is a float32 (tokens_i, 128) array identical to what colpali-engine computes for it alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np

from dse.encoders.base import Encoder, resolve_device, resolve_dtype, run_batched
from dse.encoders.hub import load_pretrained, model_revision
from dse.encoders.registry import register_encoder

BudgetKind = Literal["qwen", "idefics3", "fixed"]


@dataclass(frozen=True)
class FamilySpec:
    """How to load one ColPali-family model with colpali-engine.

    Attributes:
        model_class: Class name in `colpali_engine.models`.
        processor_class: Processor class name in `colpali_engine.models`.
        default_model: Hub id used when no `model` is given.
        budget: How `max_visual_tokens` is applied: "qwen" (processor `max_num_visual_tokens`,
            max_pixels = N*28*28), "idefics3" (longest edge of the image-splitting resize) or
            "fixed" (set by the model's image size; the option is refused).
        description: One line for `dse encoders`.
        bidirectional_queries: Give query batches all-zero `token_type_ids` (PaliGemma: whole input is
            the bidirectional prefix). transformers 5 otherwise attends causally when a batch is padded
            and bidirectionally when it is not, so a query's vectors would depend on its batch; with
            the prefix marked, every query gets the padding-masked bidirectional attention that
            transformers 4 (where ColPali was trained and benchmarked) applied at inference.
    """

    model_class: str
    processor_class: str
    default_model: str
    budget: BudgetKind
    description: str
    bidirectional_queries: bool = False


FAMILIES: dict[str, FamilySpec] = {
    "colpali": FamilySpec("ColPali", "ColPaliProcessor", "vidore/colpali-v1.3", "fixed",
                          "ColPali (PaliGemma-3B) multi-vector page encoder", bidirectional_queries=True),
    "colqwen2": FamilySpec("ColQwen2", "ColQwen2Processor", "vidore/colqwen2-v1.0", "qwen",
                           "ColQwen2 (Qwen2-VL-2B) multi-vector page encoder"),
    "colqwen2.5": FamilySpec("ColQwen2_5", "ColQwen2_5_Processor", "vidore/colqwen2.5-v0.2", "qwen",
                             "ColQwen2.5 (Qwen2.5-VL-3B) multi-vector page encoder"),
    "colsmol": FamilySpec("ColIdefics3", "ColIdefics3Processor", "vidore/colSmol-256M", "idefics3",
                          "ColSmol (Idefics3 / SmolVLM-256M) multi-vector page encoder"),
}


class ColPaliEncoder(Encoder):
    """A ColPali-family model and its processor (held as attributes), producing token vectors.

    Args:
        family: Key of `FAMILIES` ("colpali", "colqwen2", "colqwen2.5", "colsmol").
        model: Hub id or local directory; defaults to the family's reference checkpoint.
        device: "auto", "cpu", "cuda", "mps", ...
        dtype: "auto" (bfloat16 on CUDA, float32 elsewhere), "float32", "float16", "bfloat16".
        batch_size: Items per forward pass (halved automatically on out-of-memory).
        max_visual_tokens: Upper bound on image tokens per page (None: the checkpoint's default).
        revision: Hub revision (branch, tag or commit) to load.
    """

    kind = "multi"
    input = "image"

    def __init__(
        self,
        family: str,
        model: str | None = None,
        *,
        device: str | None = "auto",
        dtype: Any = "auto",
        batch_size: int = 4,
        max_visual_tokens: int | None = None,
        revision: str | None = None,
    ) -> None:
        import colpali_engine.models as cm

        if family not in FAMILIES:
            raise ValueError(f"unknown ColPali family {family!r}; known: {', '.join(FAMILIES)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        spec = FAMILIES[family]
        if max_visual_tokens is not None:
            if spec.budget == "fixed":
                raise ValueError(
                    f"max_visual_tokens is not supported for {family!r}: the number of image tokens is fixed "
                    "by the model's image size (1024 for ColPali at 448x448)"
                )
            if int(max_visual_tokens) < 1:
                raise ValueError(f"max_visual_tokens must be a positive integer, got {max_visual_tokens!r}")
        self.family = family
        self.spec = spec
        self.batch_size = batch_size
        self.max_visual_tokens = None if max_visual_tokens is None else int(max_visual_tokens)
        self._model_id = str(model or spec.default_model)
        self._requested_revision = revision
        self.device = resolve_device(device)
        self.torch_dtype = resolve_dtype(dtype, self.device)

        hub_kwargs: dict[str, Any] = {} if revision is None else {"revision": revision}
        # the call colpali-engine's README shows (it also resolves PEFT adapter checkpoints)
        self.model = load_pretrained(
            getattr(cm, spec.model_class).from_pretrained, self._model_id, "model",
            dtype=self.torch_dtype, device_map=self.device, **hub_kwargs,
        ).eval()
        processor_kwargs = dict(hub_kwargs)
        if spec.budget == "qwen" and self.max_visual_tokens is not None:
            processor_kwargs["max_num_visual_tokens"] = self.max_visual_tokens
        self.processor = load_pretrained(
            getattr(cm, spec.processor_class).from_pretrained, self._model_id, "processor", **processor_kwargs
        )
        if spec.budget == "idefics3" and self.max_visual_tokens is not None:
            _set_idefics3_budget(self.processor, self.max_visual_tokens)

    @property
    def dim(self) -> int:
        """Width of each token vector (128 for every ColPali-family model)."""
        return int(self.model.dim)

    @property
    def model_id(self) -> str:
        """Hub id or local directory the weights came from."""
        return self._model_id

    @property
    def revision(self) -> str | None:
        """Commit hash recorded by transformers, else the requested revision."""
        return model_revision(self._model_id, getattr(self.model, "config", None)) or self._requested_revision

    def options(self) -> dict[str, Any]:
        """Options that change the vectors (dtype is a runtime choice: it only changes rounding)."""
        return {"max_visual_tokens": self.max_visual_tokens}

    def encode_pages(self, pages: Sequence[Any]) -> list[np.ndarray]:
        """Embed page images.

        Args:
            pages: PIL images.

        Returns:
            One float32 (tokens_i, dim) array per page, padding removed, rows of unit norm.
        """
        from PIL import Image

        for i, page in enumerate(pages):
            if not isinstance(page, Image.Image):
                raise TypeError(f"pages[{i}] is a {type(page).__name__}, expected a PIL.Image.Image")
        return run_batched(list(pages), lambda b: self._forward(self.processor.process_images(list(b))),
                           self.batch_size)

    def encode_queries(self, queries: Sequence[str]) -> list[np.ndarray]:
        """Embed text queries (with the family's query prefix and augmentation tokens).

        Args:
            queries: Query strings.

        Returns:
            One float32 (tokens_i, dim) array per query, padding removed, rows of unit norm.
        """
        for i, query in enumerate(queries):
            if not isinstance(query, str):
                raise TypeError(f"queries[{i}] is a {type(query).__name__}, expected a str")
        return run_batched(list(queries), lambda b: self._forward(self._process_queries(b)), self.batch_size)

    def _process_queries(self, queries: Sequence[str]) -> Any:
        """`processor.process_queries`, plus the all-prefix `token_type_ids` where the family needs them."""
        import torch

        batch = self.processor.process_queries(list(queries))
        if self.spec.bidirectional_queries:
            batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])  # (batch, seq)
        return batch

    def _forward(self, batch: Any) -> list[np.ndarray]:
        """Run the model on one processed batch and cut each row down to its attended positions."""
        import torch

        batch = batch.to(self.model.device)
        with torch.inference_mode():
            out = self.model(**batch)  # (batch, seq, dim)
        mask = batch["attention_mask"].bool()  # (batch, seq)
        vectors = []
        for row, keep in zip(out, mask):
            v = row[keep].to(torch.float32)  # (tokens_i, dim)
            v = v / v.norm(dim=-1, keepdim=True)  # (tokens_i, dim); exact in float32, fixes bf16 rounding
            vectors.append(v.cpu().numpy())
        return vectors


def idefics3_tiles_per_side(max_visual_tokens: int, image_seq_len: int) -> int:
    """Largest k such that a page resized to k tiles on its longest side stays within the budget.

    A page split into an a x b grid (a, b <= k) costs (a*b + 1) * image_seq_len tokens (the tiles
    plus a global view); k = 1 means no splitting: image_seq_len tokens.

    Raises:
        ValueError: The budget is below one view (image_seq_len tokens).
    """
    if max_visual_tokens < image_seq_len:
        raise ValueError(
            f"max_visual_tokens={max_visual_tokens} is below one image view ({image_seq_len} tokens) for colsmol"
        )
    k = max(1, math.isqrt(max(0, max_visual_tokens // image_seq_len - 1)))
    return k


def _set_idefics3_budget(processor: Any, max_visual_tokens: int) -> None:
    """Set the Idefics3 resize target (longest edge, a multiple of the tile size) for the budget."""
    tile = int(processor.image_processor.max_image_size["longest_edge"])
    k = idefics3_tiles_per_side(max_visual_tokens, int(processor.image_seq_len))
    processor.image_processor.size = {"longest_edge": k * tile}


def score_maxsim(q: np.ndarray, p: np.ndarray) -> float:
    """Late-interaction score: sum over query vectors of the best dot product with a page vector.

    Args:
        q: Query vectors (q_tokens, dim).
        p: Page vectors (p_tokens, dim).
    """
    return float((q.astype(np.float32) @ p.astype(np.float32).T).max(axis=1).sum())  # (q_tokens, p_tokens) -> ()


def _factory(family: str) -> Callable[..., ColPaliEncoder]:
    spec = FAMILIES[family]

    def build(
        model: str = spec.default_model,
        *,
        device: str | None = "auto",
        dtype: Any = "auto",
        batch_size: int = 4,
        max_visual_tokens: int | None = None,
        revision: str | None = None,
    ) -> ColPaliEncoder:
        return ColPaliEncoder(family, model, device=device, dtype=dtype, batch_size=batch_size,
                              max_visual_tokens=max_visual_tokens, revision=revision)

    build.__name__ = build.__qualname__ = f"load_{family.replace('.', '_')}"
    build.__doc__ = f"{spec.description} (default model {spec.default_model})."
    return build


for _name, _spec in FAMILIES.items():
    register_encoder(_name, _spec.description)(_factory(_name))
