"""Encoders whose checkpoint runs its authors' code (`trust_remote_code`): jina-embeddings-v4.

Loading such a checkpoint executes Python files shipped with it, so dse does it only when told
to: `trust_remote_code=True` (CLI `--trust-remote-code`), never by default. The choice is
recorded in the index's manifest (`identity.trust_remote_code`), and an index built so reopens
only when the user says it again (`dse.retrieve.lazy_encoder.confirm_model`).

`jina-v4` (single vector, 2048-d, Matryoshka down to 128) and `jina-v4-multi` (128-d per token)
follow jinaai/jina-embeddings-v4's card: `AutoModel.from_pretrained(..., trust_remote_code=True)`,
then `model.encode_text(texts=..., task="retrieval", prompt_name="query")` for queries and
`model.encode_image(images=..., task="retrieval")` for pages, `return_multivector=True` for the
multi-vector form, `truncate_dim` for Matryoshka. The task and prompt name live in `dse.prompts`.

Another model that needs its own code is added the same way: a class holding the loaded model
as an attribute, registered by name, that refuses to load without `trust_remote_code=True`::

    from dse.encoders.registry import register_encoder
    from dse.encoders.remote_code import RemoteCodeEncoder

    @register_encoder("my-model", "my model (runs its authors' code)")
    class MyModel(RemoteCodeEncoder):
        kind, default_model = "single", "org/my-model"
        def encode_queries(self, queries): ...
        def encode_pages(self, pages): ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from dse.encoders.base import Encoder, LoadedWeights, quantize_if_int8, resolve_device, resolve_dtype
from dse.encoders.hub import ModelLoadError, load_pretrained
from dse.encoders.registry import register_encoder
from dse.prompts import JINA_V4_QUERY_PROMPT_NAME, JINA_V4_TASK


class RemoteCodeRefusedError(ModelLoadError):
    """A checkpoint that runs its own code was asked for without `trust_remote_code=True`."""


class RemoteCodeEncoder(LoadedWeights, Encoder):
    """Base of the encoders whose model is loaded with `trust_remote_code=True` (held, not subclassed).

    Args:
        model: Hub id or local directory (None: `default_model`).
        trust_remote_code: Must be True: the checkpoint's own Python code runs.
        device: "auto", "cuda", "mps" or "cpu".
        dtype: "auto" (bfloat16 on cuda, else float32), a dtype name, or "int8" (CPU).
        batch_size: Items per forward pass.
        revision: Hub revision (branch, tag or commit) to load.

    Raises:
        RemoteCodeRefusedError: `trust_remote_code` is not True.
        ModelLoadError: The checkpoint could not be loaded.
    """

    default_model: ClassVar[str] = ""
    input = "image"

    def __init__(self, model: str | None = None, *, trust_remote_code: bool = False, device: str | None = "auto",
                 dtype: Any = "auto", batch_size: int = 8, revision: str | None = None) -> None:
        from transformers import AutoModel

        self._model_id = str(model or self.default_model)
        if trust_remote_code is not True:
            raise RemoteCodeRefusedError(
                f"{self.name or type(self).__name__} ({self._model_id}) runs Python code shipped with the checkpoint; "
                f"dse loads it only when you allow that: trust_remote_code=True (CLI: --trust-remote-code)")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self._device = resolve_device(device)
        self._dtype = resolve_dtype(dtype, self._device)
        hub = {} if revision is None else {"revision": revision}
        self.model = load_pretrained(AutoModel.from_pretrained, self._model_id, "model", trust_remote_code=True,
                                     dtype=self._dtype, **hub)
        self.model.to(self._device).eval()
        self.model = quantize_if_int8(self.model, dtype)
        self._record_weights(revision, self._dtype, self.model.config, trust_remote_code=True)




class _JinaV4(RemoteCodeEncoder):
    """jina-embeddings-v4 through its own code, as its model card calls it (see the module docstring)."""

    default_model = "jinaai/jina-embeddings-v4"
    prompt_family: ClassVar[str | None] = "jina-v4"
    multivector: ClassVar[bool] = False

    def __init__(self, model: str | None = None, *, dim: int | None = None, **options: Any) -> None:
        super().__init__(model, **options)
        width = int(getattr(self.model.config, "single_vector_dim", 0) or getattr(self.model.config, "hidden_size"))
        multi = int(getattr(self.model.config, "multi_vector_dim", 128))
        self._full = multi if self.multivector else width
        if dim is not None and (self.multivector or not 1 <= dim <= width):
            raise ValueError(f"dim={dim}: jina-v4 truncates single vectors to 1..{width} (Matryoshka); "
                             "jina-v4-multi has no dim option" if not self.multivector else
                             "jina-v4-multi vectors have one width; dim applies to jina-v4")
        self._dim = self._full if dim is None else int(dim)

    @property
    def dim(self) -> int:
        """Vector width (single: the Matryoshka `dim`; multi: per token)."""
        return self._dim

    def options(self) -> dict[str, Any]:
        """Options that change the vectors."""
        return {} if self.multivector else {"dim": self._dim}

    def _call(self, out: Any) -> Any:
        """The model's output as numpy: (n, dim) unit rows, or a list of (tokens_i, dim)."""
        import torch

        rows = list(out)  # a (n, dim) tensor's rows, or the list of (tokens_i, dim) tensors
        arrays = [r.detach().to(torch.float32).cpu().numpy() if isinstance(r, torch.Tensor) else np.asarray(r, np.float32)
                  for r in rows]
        if self.multivector:
            return [np.ascontiguousarray(a.reshape(-1, self._dim), dtype=np.float32) for a in arrays]
        x = np.stack([a.reshape(-1)[: self._dim] for a in arrays]).astype(np.float32) if arrays else np.zeros(
            (0, self._dim), np.float32)  # (n, dim)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # (n, dim)

    def _truncate(self) -> dict[str, Any]:
        return {} if self.multivector or self._dim == self._full else {"truncate_dim": self._dim}

    def encode_queries(self, queries: Sequence[str]) -> Any:
        """Embed text queries (the card's query prompt of the retrieval adapter)."""
        import torch

        if isinstance(queries, str):
            raise TypeError("queries must be a list of strings, got one string")
        if not queries:
            return [] if self.multivector else np.zeros((0, self._dim), np.float32)
        with torch.inference_mode():
            out = self.model.encode_text(texts=list(queries), task=JINA_V4_TASK, prompt_name=JINA_V4_QUERY_PROMPT_NAME,
                                         return_multivector=self.multivector, batch_size=self.batch_size,
                                         **self._truncate())
        return self._call(out)

    def encode_pages(self, pages: Sequence[Image.Image]) -> Any:
        """Embed page images (the retrieval adapter)."""
        import torch

        images = [p.convert("RGB") for p in pages]
        if not images:
            return [] if self.multivector else np.zeros((0, self._dim), np.float32)
        with torch.inference_mode():
            out = self.model.encode_image(images=images, task=JINA_V4_TASK, return_multivector=self.multivector,
                                          batch_size=self.batch_size, **self._truncate())
        return self._call(out)


@register_encoder("jina-v4", "jina-embeddings-v4, single vector (runs its authors' code: --trust-remote-code)")
class JinaV4Encoder(_JinaV4):
    """jina-embeddings-v4's single vectors (2048-d, Matryoshka)."""

    kind = "single"


@register_encoder("jina-v4-multi", "jina-embeddings-v4, one vector per token (runs its authors' code)")
class JinaV4MultiEncoder(_JinaV4):
    """jina-embeddings-v4's multi-vectors (128-d per token)."""

    kind = "multi"
    multivector = True
