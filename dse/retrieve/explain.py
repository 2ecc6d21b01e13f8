"""Similarity maps: which patches of a page matched a query, for multi-vector (ColPali-family) indexes.

A multi-vector encoder gives one vector per image patch; the similarity of every query token with
every patch is a stack of maps ``(query_tokens, rows, cols)`` (what colpali-engine's
`get_similarity_maps_from_embeddings` computes, without its plotting dependencies: einops,
matplotlib, seaborn). The image tokens are picked with the processor's `get_image_mask`. The maps
are aggregated per patch, either

* ``"sum"``: the sum over query tokens of the patch's similarity (the patch's total contribution
  if every token could match it), or
* ``"max"``: the best similarity of any query token with the patch,

then min-max normalised and stretched over the page. The patch layout comes from the processor:
for ColQwen2 / ColQwen2.5 the image grid ``image_grid_thw`` (in 14-px patches) divided by the
merge size (2) gives the rows and columns of image tokens over the resized page; ColPali's page
is a fixed square grid (32 x 32 over the page squeezed to 448 x 448). ColSmol's tokens are image
tiles plus a global view, not one grid, so it is not supported.

The map is computed on the index's stored copy of the page (long side 768 px by default), so the
overlay has that image's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

AGGREGATES = ("sum", "max")
GRID_FAMILIES = ("colpali", "colqwen2", "colqwen2.5")


@dataclass(frozen=True)
class SimilarityMap:
    """A query's similarity with each patch of a page.

    Attributes:
        query: The query text.
        page_id: The page's id.
        heat: Aggregated similarity per patch, float32 (rows, cols), raw (not normalised).
        page: The page image the patches cover (PIL, RGB).
    """

    query: str
    page_id: str
    heat: np.ndarray = field(repr=False)
    page: Any = field(repr=False)

    def normalised(self) -> np.ndarray:
        """The heat mapped to [0, 1] (min-max), float32 (rows, cols)."""
        lo, hi = float(self.heat.min()), float(self.heat.max())
        return ((self.heat - lo) / (hi - lo + 1e-10)).astype(np.float32)  # (rows, cols)

    def overlay(self, opacity: float = 0.6) -> Image.Image:
        """The page with the heat drawn over it (blue: weak, red: strong), at the page's size."""
        if not 0.0 <= opacity <= 1.0:
            raise ValueError(f"opacity must be in [0, 1], got {opacity!r}")
        w, h = self.page.size
        grid = Image.fromarray(self.normalised(), mode="F")
        heat = np.asarray(grid.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)  # (h, w)
        heat = np.clip(heat, 0.0, 1.0)  # (h, w)
        colour = np.stack([np.clip(1.5 - np.abs(4 * heat - c), 0, 1) for c in (3, 2, 1)], axis=-1)  # (h, w, 3) jet
        page = np.asarray(self.page.convert("RGB"), dtype=np.float32) / 255.0  # (h, w, 3)
        a = (opacity * (0.25 + 0.75 * heat))[..., None]  # (h, w, 1)
        out = page * (1 - a) + colour * a  # (h, w, 3)
        return Image.fromarray(np.round(out * 255).astype(np.uint8), mode="RGB")

    def save(self, path: str | Path, opacity: float = 0.6) -> Path:
        """Write the overlay as an image (PNG by the suffix) and return its path."""
        path = Path(path)
        self.overlay(opacity).save(path)
        return path


def explain(retriever: Any, query: str, page_id: str, aggregate: str = "sum") -> SimilarityMap:
    """The similarity map of `query` over the stored image of page `page_id`.

    Args:
        retriever: A `dse.Retriever` over a multi-vector index.
        query: The query text.
        page_id: A page of the index.
        aggregate: "sum" or "max" over query tokens (see the module docstring).

    Raises:
        ValueError: The index is not multi-vector, the family has no patch grid, or `aggregate`
            is unknown.
        KeyError: No such page.
        FileNotFoundError: The index stores no page images.
    """
    encoder = retriever.encoder
    if encoder.kind != "multi":
        raise ValueError(
            f"similarity maps need a multi-vector index (ColPali family); {retriever.index.directory} was "
            f"built with {encoder.name or encoder.model_id!r}, a {encoder.kind}-vector encoder"
        )
    page = retriever.page_image(page_id)
    return SimilarityMap(query, page_id, patch_heat(encoder, query, page, aggregate), page)


def patch_heat(encoder: Any, query: str, image: Image.Image, aggregate: str = "sum") -> np.ndarray:
    """Aggregated query-patch similarity, float32 (rows, cols), for a ColPali-family encoder."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"unknown aggregate {aggregate!r}; use one of {', '.join(AGGREGATES)}")
    per_token = token_maps(encoder, query, image)  # (q_tokens, rows, cols)
    heat = per_token.sum(axis=0) if aggregate == "sum" else per_token.max(axis=0)  # (rows, cols)
    return heat.astype(np.float32)


def query_tokens(encoder: Any, query: str) -> list[str]:
    """The query's tokens as the encoder embeds them (one per row of `encode_queries`, `token_maps`)."""
    batch = encoder.processor.process_queries([query])
    ids = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()  # (q_tokens,)
    return [str(t) for t in encoder.processor.tokenizer.convert_ids_to_tokens(ids)]


def token_maps(encoder: Any, query: str, image: Image.Image) -> np.ndarray:
    """Similarity of each query token with each patch of `image`, float32 (q_tokens, rows, cols)."""
    import torch

    family = getattr(encoder, "family", None)
    if family not in GRID_FAMILIES:
        raise ValueError(
            f"similarity maps support {', '.join(GRID_FAMILIES)}; {encoder.name or family!r} has no single "
            "patch grid (ColSmol splits pages into tiles plus a global view)"
        )
    batch = encoder.processor.process_images([image.convert("RGB")]).to(encoder.model.device)
    with torch.inference_mode():
        page = encoder.model(**batch).to(torch.float32)  # (1, seq, dim)
    mask = encoder.processor.get_image_mask(batch)[0].cpu().numpy()  # (seq,) bool
    rows, cols = _grid(encoder, batch, int(mask.sum()))
    patches = page[0].cpu().numpy()[mask].reshape(rows, cols, -1)  # (rows, cols, dim), row-major as the model
    q = encoder.encode_queries([query])[0]  # (q_tokens, dim)
    return np.einsum("nk,ijk->nij", q, patches).astype(np.float32)  # (q_tokens, rows, cols)


def _grid(encoder: Any, batch: Any, n_tokens: int) -> tuple[int, int]:
    """(rows, cols) of image tokens: Qwen's image grid over its merge size, else a square grid."""
    if "image_grid_thw" in batch:
        _, h, w = (int(x) for x in batch["image_grid_thw"][0])
        merge = int(getattr(encoder.processor.image_processor, "merge_size", 2))
        rows, cols = h // merge, w // merge
    else:
        rows = cols = math.isqrt(n_tokens)
    if rows * cols != n_tokens:
        raise ValueError(f"{encoder.name!r}: {n_tokens} image tokens do not form a {rows} x {cols} patch grid")
    return rows, cols
