"""Any dse encoder as an mteb model, so mteb's ViDoRe tasks (v1, v2, v3) score it like the leaderboard.

ViDoRe's evaluation lives in mteb now (vidore-benchmark deprecated its evaluator). `MtebEncoder`
is an `mteb.models.AbsEncoder`: mteb hands it batches of its own datasets (queries with a
`text` column, and/or an `image` one; corpus pages with an `image` column) and it answers with
the dse encoder's vectors: `encode_queries` for queries (a picture, or a picture with text, for
the encoders that take them), `encode_pages` for pages. Single-vector encoders are scored by dot
product (unit-norm rows: cosine), multi-vector ones by MaxSim over zero-padded token matrices,
as mteb's own ColPali wrapper does.

Example:
    >>> import mteb
    >>> from dse.evaluate.mteb_model import MtebEncoder
    >>> model = MtebEncoder.load("dse-qwen2", model="MrLight/dse-qwen2-2b-mrl-v1")
    >>> mteb.evaluate(model, mteb.get_tasks(["VidoreArxivQARetrieval"]), cache=None)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dse.encoders.base import Encoder

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

from dse.extras import MissingExtraError

try:  # mteb is optional: the "mteb" extra
    from mteb.models.abs_encoder import AbsEncoder as _Base
except ImportError:  # pragma: no cover - exercised only without mteb
    _Base = object  # type: ignore[assignment,misc]


def _require_mteb() -> None:
    if _Base is object:
        raise MissingExtraError("the mteb wrapper", "mteb")


class MtebEncoder(_Base):  # type: ignore[misc,valid-type]
    """A dse `Encoder` wrapped for mteb (`mteb.evaluate(MtebEncoder(encoder), tasks)`).

    Args:
        encoder: A single- or multi-vector dse encoder with image pages.
        name: The model name mteb records in results ("org/model"); default: the encoder's hub
            id, or `dse/<registry name>` for a local directory.
        revision: The revision mteb records; default: the encoder's.
        task_instructions: Encoders with an `instruction` (gme-qwen2, qwen3-vl-embedding) take
            each task's own query prompt from mteb's task metadata instead of their recipe's.
    """

    def __init__(self, encoder: Encoder, *, name: str | None = None, revision: str | None = None,
                 task_instructions: bool = False) -> None:
        _require_mteb()
        from mteb.models.model_meta import ModelMeta, ScoringFunction

        if encoder.kind not in ("single", "multi") or encoder.input != "image":
            raise ValueError(f"mteb's visual retrieval tasks need an image encoder; {encoder.name!r} is {encoder.kind}")
        self.encoder = encoder
        self.task_instructions = task_instructions
        model_id = str(encoder.model_label or encoder.model_id)
        if name is None:
            name = model_id if _looks_like_hub_id(model_id) else f"dse/{encoder.name or 'encoder'}"
        scoring = ScoringFunction.DOT_PRODUCT if encoder.kind == "single" else ScoringFunction.MAX_SIM
        self.mteb_model_meta = ModelMeta.create_empty({
            "name": name,
            "revision": revision or encoder.revision or "no_revision_available",
            "embed_dim": encoder.dim,
            "similarity_fn_name": scoring,
            "modalities": ["image", "text"],
            "model_type": ["dense"] if encoder.kind == "single" else ["late-interaction"],
            "framework": ["PyTorch"],
            "use_instructions": hasattr(encoder, "instruction"),
        })

    @classmethod
    def load(cls, name: str, **options: Any) -> "MtebEncoder":
        """`MtebEncoder(load_encoder(name, **options))`."""
        from dse.encoders.registry import load_encoder

        return cls(load_encoder(name, **options))

    def encode(self, inputs: DataLoader, *, task_metadata: Any, hf_split: str, hf_subset: str,
               prompt_type: Any = None, **kwargs: Any) -> Any:
        """Vectors of one mteb dataloader: queries (`prompt_type` query) or corpus pages (document)."""
        from mteb.types import PromptType

        is_document = prompt_type == PromptType.document
        restore = self._task_instruction(task_metadata, is_document)
        try:
            out: list[Any] = []
            for batch in inputs:
                out.extend(self._encode_batch(batch, is_document))
        finally:
            if restore is not None:
                self.encoder.instruction = restore  # type: ignore[attr-defined]
        return self._stack(out)

    def _encode_batch(self, batch: dict[str, Any], is_document: bool) -> list[Any]:
        images = [_to_pil(im) for im in batch["image"]] if "image" in batch else None
        texts = list(batch["text"]) if "text" in batch else None
        if is_document:
            if images is None:
                raise ValueError("dse encoders index page images; this task's corpus has no image column")
            vectors = self.encoder.encode_pages(images)
        elif images is None:
            vectors = self.encoder.encode_queries(texts or [])
        else:
            queries = images if not texts else list(zip(images, texts))
            vectors = self.encoder.encode_queries(queries)
        return list(vectors)

    def _stack(self, rows: list[Any]) -> Any:
        import torch

        if self.encoder.kind == "single":
            return np.stack(rows).astype(np.float32) if rows else np.zeros((0, self.encoder.dim or 0), np.float32)
        # multi-vector: zero-padded (n, max_tokens, dim), as mteb's ColPali wrapper returns them
        return torch.nn.utils.rnn.pad_sequence([torch.from_numpy(np.asarray(r)) for r in rows], batch_first=True)

    def _task_instruction(self, task_metadata: Any, is_document: bool) -> str | None:
        """Set the encoder's query instruction from the task's prompt; returns the one to restore."""
        if not self.task_instructions or is_document or not hasattr(self.encoder, "instruction"):
            return None
        prompt = (getattr(task_metadata, "prompt", None) or {})
        prompt = prompt.get("query") if isinstance(prompt, dict) else prompt
        if not prompt:
            return None
        previous = self.encoder.instruction  # type: ignore[attr-defined]
        self.encoder.instruction = prompt  # type: ignore[attr-defined]
        return previous

    def similarity(self, embeddings1: Any, embeddings2: Any) -> Any:
        """Dot product (single-vector, unit-norm rows) or MaxSim (multi-vector), as a torch matrix."""
        from mteb.similarity_functions import dot_score, max_sim

        if self.encoder.kind == "single":
            return dot_score(embeddings1, embeddings2)
        return max_sim(embeddings1, embeddings2)


def _looks_like_hub_id(model_id: str) -> bool:
    from pathlib import Path

    return model_id.count("/") == 1 and not model_id.startswith((".", "/", "~")) and not Path(model_id).exists()


def _to_pil(image: Any) -> Any:
    """mteb hands PIL images, or tensors after a transform: PIL either way, RGB."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    import torchvision.transforms.functional as F

    return F.to_pil_image(image)
