"""ColPali-family multi-vector encoders through colpali-engine: ColPali, ColQwen2/2.5/3/3.5, ColSmol,
ColGemma3, ColModernVBert (the families are listed in `dse.encoders.colpali.specs`).

Pages go through `processor.process_images`, queries through `processor.process_queries` (query
prefix and augmentation tokens kept, as vidore-benchmark does); the model gives L2-normalised
(batch, seq, dim) vectors and the padded positions (attention mask 0) are dropped, so each item
is a float32 (tokens_i, dim) array identical to what colpali-engine computes for it alone. The
width `dim` is the checkpoint's (128 for most, 320 for ColQwen3, `config.dim` for ColQwen3.5).
`ColPaliEngineEncoder` is the loading and input checking shared with the single-vector Bi* twins
(`dse.encoders.colpali.bi`).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from dse.encoders.base import Encoder, quantize_if_int8, resolve_device, resolve_dtype, run_batched
from dse.encoders.colpali.specs import FAMILIES, FamilySpec, idefics3_tiles_per_side, set_idefics3_budget
from dse.encoders.hub import load_pretrained
from dse.encoders.query_length import fit_encoder_queries, tokenizer_limit
from dse.encoders.registry import register_encoder

__all__ = ["ColPaliEncoder", "ColPaliEngineEncoder", "FAMILIES", "FamilySpec", "idefics3_tiles_per_side",
           "score_maxsim"]


class ColPaliEngineEncoder(Encoder):
    """A colpali-engine model and its processor (held as attributes): loading, options, identity.

    Args:
        family: Key of `FAMILIES` of this class's `kind`.
        model: Hub id or local directory; defaults to the family's reference checkpoint.
        device: "auto", "cpu", "cuda", "mps", ...
        dtype: "auto" (bfloat16 on CUDA, float32 elsewhere), "float32", "float16", "bfloat16", or "int8"
            (CPU: dynamic int8 linear layers, faster queries; `quantize_if_int8`).
        batch_size: Items per forward pass (halved automatically on out-of-memory).
        max_visual_tokens: Upper bound on image tokens per page (None: the checkpoint's default).
        revision: Hub revision (branch, tag or commit) to load.
        truncate_queries: A text query longer than the model reads (`query_limit`) is cut to fit,
            with a warning, instead of raising `QueryTooLongError` (`dse.encoders.query_length`).
    """

    kind: ClassVar[Any] = "multi"
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
        truncate_queries: bool = False,
    ) -> None:
        import colpali_engine.models as cm

        from dse.encoders.identity import weights_identity

        spec = FAMILIES.get(family)
        if spec is None or spec.kind != self.kind:
            known = ", ".join(n for n, s in FAMILIES.items() if s.kind == self.kind)
            raise ValueError(f"unknown {self.kind}-vector colpali-engine family {family!r}; known: {known}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_visual_tokens is not None:
            if spec.budget == "fixed":
                raise ValueError(f"max_visual_tokens is not supported for {family!r}: the number of image tokens "
                                 f"is fixed by the model's image size ({spec.fixed_note})")
            if int(max_visual_tokens) < 1:
                raise ValueError(f"max_visual_tokens must be a positive integer, got {max_visual_tokens!r}")
        model = model or spec.default_model
        if not model:
            raise ValueError(f"{family!r} has no reference checkpoint: pass model=HUB_ID_OR_DIR (CLI: --model)")
        self.family = family
        self.spec = spec
        self.batch_size = batch_size
        self.truncate_queries = bool(truncate_queries)
        self.max_visual_tokens = None if max_visual_tokens is None else int(max_visual_tokens)
        self._model_id = str(model)
        self._requested_revision = revision
        self.device = resolve_device(device)
        self.torch_dtype = resolve_dtype(dtype, self.device)

        hub_kwargs: dict[str, Any] = {} if revision is None else {"revision": revision}
        model_kwargs: dict[str, Any] = {"key_mapping": {}} if spec.empty_key_mapping else {}
        # the call colpali-engine's README shows (it also resolves PEFT adapter checkpoints)
        self.model = load_pretrained(
            getattr(cm, spec.model_class).from_pretrained, self._model_id, "model",
            dtype=self.torch_dtype, device_map=self.device, **hub_kwargs, **model_kwargs,
        ).eval()
        self.model = quantize_if_int8(self.model, dtype)
        processor_kwargs = dict(hub_kwargs)
        if spec.budget == "qwen" and self.max_visual_tokens is not None:
            processor_kwargs["max_num_visual_tokens"] = self.max_visual_tokens
        self.processor = load_pretrained(
            getattr(cm, spec.processor_class).from_pretrained, self._model_id, "processor", **processor_kwargs
        )
        if spec.budget == "idefics3" and self.max_visual_tokens is not None:
            set_idefics3_budget(self.processor, self.max_visual_tokens)
        # tokens a text query may take, prefix and augmentation tokens included: the tokenizer's
        # model_max_length, else the text model's positions (lower it to cap queries)
        self.query_limit: int | None = tokenizer_limit(self.processor.tokenizer, self.model.config)
        # read right after loading, so the commit is the one the files came from
        self._identity = weights_identity(self._model_id, revision=revision, dtype=self.torch_dtype)

    @property
    def model_id(self) -> str:
        """Hub id or local directory the weights came from."""
        return self._model_id

    @property
    def revision(self) -> str | None:
        """The commit a hub checkpoint resolved to (else the requested revision); None for a directory."""
        return self._identity.get("revision") or self._requested_revision

    def options(self) -> dict[str, Any]:
        """Options that change the vectors (dtype is a runtime choice: it only changes rounding)."""
        return {"max_visual_tokens": self.max_visual_tokens}

    def encode_pages(self, pages: Sequence[Any]) -> Any:
        """Embed page images (PIL images)."""
        from PIL import Image

        for i, page in enumerate(pages):
            if not isinstance(page, Image.Image):
                raise TypeError(f"pages[{i}] is a {type(page).__name__}, expected a PIL.Image.Image")
        return self._collect(run_batched(list(pages), lambda b: self._forward(self.processor.process_images(list(b))),
                                         self.batch_size))

    def encode_queries(self, queries: Sequence[str]) -> Any:
        """Embed text queries (with the family's query prefix and augmentation tokens)."""
        for i, query in enumerate(queries):
            if not isinstance(query, str):
                raise TypeError(f"queries[{i}] is a {type(query).__name__}, expected a str "
                                f"({self.name or self.family} takes text queries only)")
        queries = fit_encoder_queries(self, queries)  # the long-query policy (dse.encoders.query_length)
        return self._collect(run_batched(list(queries), lambda b: self._forward(self._process_queries(b)),
                                         self.batch_size))

    def query_tokens(self, text: str) -> int:
        """Tokens the model reads for a text query (the processor's query prefix and augmentation tokens included)."""
        return int(self._process_queries([text])["input_ids"].shape[1])

    def _process_queries(self, queries: Sequence[str]) -> Any:
        """`processor.process_queries`, plus the all-prefix `token_type_ids` where the family needs them."""
        import torch

        batch = self.processor.process_queries(list(queries))
        if self.spec.bidirectional_queries:
            batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])  # (batch, seq)
        return batch

    def _collect(self, rows: list[np.ndarray]) -> Any:
        """The return value of `encode_*` from one array per item."""
        return rows

    def _forward(self, batch: Any) -> list[np.ndarray]:
        """Run the model on one processed batch: one float32 array per item."""
        raise NotImplementedError


class ColPaliEncoder(ColPaliEngineEncoder):
    """A ColPali-family multi-vector model: one unit vector per token, padding removed.

    `encode_pages` / `encode_queries` return one float32 (tokens_i, dim) array per item.
    """

    kind = "multi"

    @property
    def dim(self) -> int:
        """Width of each token vector: the checkpoint's projection (128, 320, ...)."""
        proj = getattr(self.model, "custom_text_proj", None)
        return int(proj.out_features) if proj is not None else int(self.model.dim)

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


def score_maxsim(q: np.ndarray, p: np.ndarray) -> float:
    """Late-interaction score: sum over query vectors of the best dot product with a page vector.

    Args:
        q: Query vectors (q_tokens, dim).
        p: Page vectors (p_tokens, dim).
    """
    return float((q.astype(np.float32) @ p.astype(np.float32).T).max(axis=1).sum())  # (q_tokens, p_tokens) -> ()


def make_factory(family: str, cls: Callable[..., ColPaliEngineEncoder]) -> Callable[..., ColPaliEngineEncoder]:
    """The registry factory of `family`: `cls(family, model, ...)` with the family's options."""
    spec = FAMILIES[family]

    if spec.matryoshka:
        def build(model: str | None = spec.default_model, *, device: str | None = "auto", dtype: Any = "auto",
                  batch_size: int = 4, dim: int | None = None, revision: str | None = None,
                  truncate_queries: bool = False) -> ColPaliEngineEncoder:
            return cls(family, model, device=device, dtype=dtype, batch_size=batch_size, dim=dim, revision=revision,
                       truncate_queries=truncate_queries)
    else:
        def build(model: str | None = spec.default_model, *, device: str | None = "auto", dtype: Any = "auto",
                  batch_size: int = 4, max_visual_tokens: int | None = None,
                  revision: str | None = None, truncate_queries: bool = False) -> ColPaliEngineEncoder:
            return cls(family, model, device=device, dtype=dtype, batch_size=batch_size,
                       max_visual_tokens=max_visual_tokens, revision=revision, truncate_queries=truncate_queries)

    build.__name__ = build.__qualname__ = f"load_{family.replace('.', '_')}"
    default = spec.default_model or "none: model= is required"
    build.__doc__ = f"{spec.description} (default model {default})."
    return build


for _name, _spec in FAMILIES.items():
    if _spec.kind == "multi":
        register_encoder(_name, _spec.description)(make_factory(_name, ColPaliEncoder))
