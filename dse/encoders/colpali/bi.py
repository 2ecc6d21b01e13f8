"""Single-vector twins of the ColPali family through colpali-engine's Bi* classes.

`bipali`, `biqwen2`, `biqwen2.5`, `biqwen3`, `biqwen3.5`, `bigemma3`, `bimodernvbert`,
`biidefics3`: the same processors as their Col* twins (pages through `process_images`, queries
through `process_queries`, augmentation tokens kept); the model pools its last hidden states
(last token for the Qwen, Gemma 3 and Idefics3 families, the attention-masked mean for BiPali
and BiModernVBert) and L2-normalises. `encode_*` return a float32 (n, dim) array with unit-norm
rows equal to colpali-engine's output; `dim` is the language model's hidden size, or for
BiGemma3 the Matryoshka width chosen with `dim` (768, 1536 or 2560, colpali-engine's own slicing).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dse.encoders.colpali.col import ColPaliEngineEncoder, make_factory
from dse.encoders.colpali.specs import FAMILIES, text_hidden_size
from dse.encoders.registry import register_encoder


class BiEncoder(ColPaliEngineEncoder):
    """A colpali-engine Bi* model: one unit vector per page or query.

    Args:
        family: Key of `FAMILIES` with kind "single".
        model: Hub id or local directory; defaults to the family's reference checkpoint.
        dim: Matryoshka width for families that have one (BiGemma3: 768, 1536 or 2560; None: full).
        **options: As `ColPaliEngineEncoder` (device, dtype, batch_size, max_visual_tokens, revision).
    """

    kind = "single"

    def __init__(self, family: str, model: str | None = None, *, dim: int | None = None, **options: Any) -> None:
        spec = FAMILIES.get(family)
        if dim is not None:
            if spec is None or not spec.matryoshka:
                raise ValueError(f"{family!r} has no Matryoshka dimensions: dim is not an option")
            if int(dim) not in spec.matryoshka:
                raise ValueError(f"dim must be one of {', '.join(map(str, spec.matryoshka))} for {family!r}, got {dim}")
        self.embedding_dim = None if dim is None else int(dim)
        super().__init__(family, model, **options)

    @property
    def dim(self) -> int:
        """Vector width: the language model's hidden size, or the Matryoshka width when smaller."""
        hidden = text_hidden_size(self.model.config)
        return hidden if self.embedding_dim is None else min(hidden, self.embedding_dim)

    def options(self) -> dict[str, Any]:
        """Options that change the vectors."""
        if self.spec.matryoshka:
            return {"dim": self.embedding_dim}
        return super().options()

    def _collect(self, rows: list[np.ndarray]) -> np.ndarray:
        """One (n, dim) float32 array."""
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(rows).astype(np.float32, copy=False)  # (n, dim)

    def _forward(self, batch: Any) -> list[np.ndarray]:
        """Run the model on one processed batch: one pooled unit vector per item."""
        import torch

        batch = batch.to(self.model.device)
        extra = {} if self.embedding_dim is None else {"embedding_dim": self.embedding_dim}
        with torch.inference_mode():
            out = self.model(**batch, **extra).to(torch.float32)  # (batch, dim)
        out = out / out.norm(dim=-1, keepdim=True)  # (batch, dim); exact in float32, fixes bf16 rounding
        return list(out.cpu().numpy())


for _name, _spec in FAMILIES.items():
    if _spec.kind == "single":
        register_encoder(_name, _spec.description)(make_factory(_name, BiEncoder))
