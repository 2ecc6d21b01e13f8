"""The encoder interface shared by every model family, with batching and device helpers."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Literal, Mapping, Sequence, TypeVar

from dse.types import VectorKind

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Encoder(ABC):
    """Embeds text queries and pages into one space.

    Subclasses set the class attributes and implement the two `encode_*` methods.

    * `kind == "single"`: `encode_*` return a float32 array (n, dim), rows of unit norm.
    * `kind == "multi"`: `encode_*` return a list of float32 arrays (tokens_i, dim).
    * `kind == "text"`: `encode_pages` takes page texts, not images (see `input`).

    Attributes:
        name: The registry name the encoder was loaded under.
        kind: Which of the three vector kinds it produces.
        input: What `encode_pages` consumes from a page: "image" or "text".
    """

    name: str = ""  # set by `load_encoder` to the registry name
    model_label: str | None = None  # recorded in manifests instead of `model_id` when set
    kind: ClassVar[VectorKind] = "single"
    input: ClassVar[Literal["image", "text"]] = "image"

    @property
    @abstractmethod
    def dim(self) -> int | None:
        """Vector width (None for text encoders)."""

    @property
    @abstractmethod
    def model_id(self) -> str:
        """Hub id or local directory the weights came from."""

    @property
    def revision(self) -> str | None:
        """Model revision (commit hash) when known."""
        return None

    prompt_family: ClassVar[str | None] = None  # its strings' family in `dse.prompts.PROMPT_VERSIONS`

    @property
    def prompt_version(self) -> str:
        """Version of the prompt strings this encoder uses (`dse.prompts`: its family's, else the default)."""
        from dse.prompts import PROMPT_VERSION, PROMPT_VERSIONS

        return PROMPT_VERSIONS[self.prompt_family] if self.prompt_family else PROMPT_VERSION

    _identity: dict[str, Any] | None = None  # set by encoders that load weights (`weights_identity`)

    @property
    def identity(self) -> dict[str, Any] | None:
        """What identifies the weights (`dse.encoders.identity.weights_identity`), if they were read."""
        if self._identity is None:
            return None
        identity = dict(self._identity)
        if self.model_label and self.model_label.startswith("tiny://"):
            identity["source"] = "builtin"
        return identity

    def describe(self) -> dict[str, Any]:
        """What an index manifest records about this encoder (with the weights' identity, if any)."""
        described = {
            "name": self.name,
            "kind": self.kind,
            "input": self.input,
            "model": self.model_label or self.model_id,
            "revision": self.revision,
            "prompt_version": self.prompt_version,
            "dim": self.dim,
            "options": self.options(),
        }
        identity = self.identity
        if identity is not None:
            described["identity"] = identity
        return described

    def options(self) -> dict[str, Any]:
        """Options that change the vectors (recorded in the manifest)."""
        return {}

    def for_index(self, built: Mapping[str, Any]) -> "Encoder":
        """The encoder to use on an index whose manifest records `built` (its `encoder` entry).

        Default: this encoder (the caller then checks it matches). An encoder without weights
        whose unset settings may follow the index (BM25's tokenizer) returns one built as the
        index records.
        """
        return self

    @abstractmethod
    def encode_queries(self, queries: Sequence[str]) -> Any:
        """Embed text queries."""

    @abstractmethod
    def encode_pages(self, pages: Sequence[Any]) -> Any:
        """Embed pages (PIL images, or texts when `input == "text"`)."""


class LoadedWeights:
    """For encoders holding a checkpoint loaded by `from_pretrained`: its id, commit and identity.

    Call `_record_weights` right after loading, so the commit read is the one the files came from.
    """

    _model_id: str
    _revision: str | None = None
    _identity: dict[str, Any] | None

    @property
    def model_id(self) -> str:
        """Hub id or local directory the weights came from."""
        return self._model_id

    @property
    def revision(self) -> str | None:
        """Commit hash of the checkpoint when known, else the requested revision."""
        return self._revision

    def _record_weights(self, revision: str | None, dtype: Any, config: Any = None,
                        trust_remote_code: bool = False) -> None:
        """Read what identifies the loaded weights (`weights_identity`) and their commit."""
        from dse.encoders.hub import model_revision
        from dse.encoders.identity import weights_identity

        self._identity = weights_identity(self._model_id, revision=revision, dtype=dtype,
                                          trust_remote_code=trust_remote_code)
        self._revision = model_revision(self._model_id, config) or self._identity.get("revision") or revision


def resolve_device(device: str | None = "auto") -> str:
    """Pick a torch device: cuda, then mps, then cpu for "auto" or None."""
    if device not in (None, "auto"):
        return str(device)
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: Any, device: str) -> Any:
    """Map "auto"/None/str to the torch dtype weights load in: bfloat16 on cuda, float32 elsewhere.

    "int8" loads float32 weights, which `quantize_if_int8` then quantises (CPU only).
    """
    import torch

    if dtype == "int8":
        if not str(device).startswith("cpu"):
            raise ValueError(f"dtype 'int8' (dynamic int8 quantisation of the linear layers) runs on the CPU "
                             f"only; on {device} use bfloat16 or float16")
        return torch.float32
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if isinstance(dtype, str):
        try:
            return {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
                    "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}[dtype]
        except KeyError:
            raise ValueError(f"unknown dtype {dtype!r}: use float32, float16, bfloat16 or int8 (CPU)") from None
    return dtype


def quantize_if_int8(model: Any, dtype: Any) -> Any:
    """With dtype "int8": the model's `nn.Linear` layers as int8 layers with per-token scales, in place.

    int8 weights (a scale per output channel) and activations (a scale per token) through torch's
    fbgemm kernel, the first and last decoder layer in bfloat16 where the CPU has it (fbgemm's
    float16 weights on CPUs without VNNI, whose int8 scheme avoids fbgemm's int16 saturation), the
    LM head untouched (`dse.encoders.int8`): on a CPU, a query reads a quarter of the float32 weights. The vectors change slightly (cosine to float32 measured by
    `bench/query_encode.py`), so use it to search, and build indexes in float.
    """
    if dtype != "int8":
        return model
    from dse.encoders.int8 import quantize_int8

    return quantize_int8(model)


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def run_batched(
    items: Sequence[T],
    fn: Callable[[Sequence[T]], list[R]],
    batch_size: int,
) -> list[R]:
    """Apply `fn` to `items` in batches, halving the batch on an out-of-memory error.

    Args:
        items: Inputs.
        fn: Maps a batch to one output per input.
        batch_size: Starting batch size.

    Returns:
        One output per input, in order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out: list[R] = []
    i, size = 0, batch_size
    while i < len(items):
        batch = items[i : i + size]
        try:
            out.extend(fn(batch))
        except Exception as exc:  # noqa: BLE001 - re-raised unless it is an OOM
            if not _is_oom(exc) or size == 1:
                raise
            size = max(1, size // 2)
            logger.warning("out of memory at batch size %d; retrying with %d", len(batch), size)
            _empty_cache()
            continue
        i += len(batch)
    return out


def _empty_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
