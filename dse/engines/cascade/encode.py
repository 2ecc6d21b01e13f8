"""How the cascade encodes new pages into its tiers: pooling, coarse summaries, token grouping, codes, token lists."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dse.engines.cascade import tiers as cascade_tiers
from dse.engines.cascade import tokens as cascade_tokens
from dse.engines.cascade.residuals import Residuals
from dse.engines.cascade.tiers import Tiers
from dse.engines.quantize import int8_encode, pack_signs, pool_tokens


def encode_pages(
    pages: Sequence[np.ndarray], dim: int, pool_factor: int, coarse_tokens: int, exact_dtype: str, token_lists: bool,
    codebook: cascade_tokens.Codebook | None, bits: int = 0, like: Residuals | None = None,
    train: Callable[[np.ndarray], cascade_tokens.Codebook] | None = None, cap: int = cascade_tokens.MAX_CENTROIDS,
) -> Tiers:
    """The tiers of new pages (float32 (tokens_i, dim) each, checked), as `CascadeEngine.add` appends them.

    Args:
        pages: The pages' tokens.
        dim: Token width.
        pool_factor: Hierarchical token pooling factor (1: keep every token).
        coarse_tokens: Tokens per page in the coarse tier (0: none).
        exact_dtype: "float16" or "int8".
        token_lists: Build token lists.
        codebook: The engine's token codebook (None: none yet).
        bits: Residual bits a dimension of the residual token lists (0: none).
        like: Residual lists of `codebook` whose buckets new ones share (None: place new buckets).
        train: Trains the codebook on the new tokens (None: `codebook`, or one of the new pages only).
        cap: Most centroids a codebook of the new pages only has.
    """
    from dse.kernels import kmeans_pages

    if pool_factor > 1:
        pages = [pool_tokens(p, pool_factor) if len(p) else p for p in pages]
    tokens = np.concatenate(pages) if pages else np.zeros((0, dim), np.float32)  # (T, dim)
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in pages])]).astype(np.int64)  # (pages + 1,)
    if coarse_tokens:
        coarse, coarse_offsets = kmeans_pages(tokens, offsets, coarse_tokens)  # (C, dim), (pages + 1,)
        tokens, spans = group_by_cluster(tokens, offsets, coarse, coarse_offsets)  # (T, dim), (C + 1,)
    else:
        coarse, coarse_offsets = tokens[:0], np.zeros(len(pages) + 1, np.int64)
        spans = np.zeros(1, np.int64)
    if exact_dtype == "int8":
        exact, scales = int8_encode(tokens)  # (T, dim) int8, (T,)
    else:
        exact, scales = tokens.astype(np.float16), np.ones(len(tokens), np.float32)  # (T, dim), (T,)
    if token_lists and train is not None and len(tokens):
        codebook, like = train(tokens), None
    tok = encode_tokens(tokens, offsets, codebook, bits, like, cap) if token_lists else None
    return cascade_tiers.with_codebook(
        pack_signs(coarse), coarse_offsets, pack_signs(tokens), exact, scales, offsets, *int8_encode(coarse), spans,
        tok)


def check_pages(items: Sequence[Any], what: str, dim: int | None) -> tuple[list[np.ndarray], int | None]:
    """Float32 (tokens_i, dim) matrices of width `dim` (None: the first non-empty item's), and that width.

    Raises:
        ValueError: an item is not 2-D, has another width, or non-finite values.
    """
    if isinstance(items, np.ndarray) and items.ndim == 2:
        raise ValueError(f"{what} must be a list of (tokens, dim) arrays, got one 2-D array {items.shape}")
    out = []
    for i, item in enumerate(items):
        arr = np.asarray(item, dtype=np.float32)
        if arr.ndim != 2:
            raise ValueError(f"{what}[{i}] must be a 2-D array (tokens, dim), got shape {arr.shape}")
        dim = int(arr.shape[1]) if dim is None and arr.shape[0] else dim
        if arr.shape[0] and arr.shape[1] != dim:
            raise ValueError(f"{what}[{i}] has dim {arr.shape[1]}, but this index expects dim {dim}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{what}[{i}] contains NaN or infinite values")
        out.append(arr)
    return [a.reshape(a.shape[0], dim or 0) for a in out], dim


def encode_tokens(
    tokens: np.ndarray, offsets: np.ndarray, codebook: cascade_tokens.Codebook | None, bits: int = 0,
    like: Residuals | None = None, cap: int = cascade_tokens.MAX_CENTROIDS,
) -> cascade_tokens.TokenLists | None:
    """Token lists of new pages: `codebook`, or when there is none yet and they are at least
    `MIN_PAGES`, a new one of at most `cap` centroids trained on them (`dse.engines.cascade.retrain`
    retrains it as the index grows); with residual lists of `bits` bits (0: none) sharing `like`'s
    buckets while the codebook is `codebook`."""
    if not len(tokens):
        return None
    book = codebook
    if len(offsets) - 1 >= cascade_tokens.MIN_PAGES and book is None:
        book = cascade_tokens.train(tokens, cap=cap)
    if book is None:
        return None
    return cascade_tokens.encode(book, tokens, offsets, bits, like if book is codebook else None)


def group_by_cluster(
    tokens: np.ndarray, offsets: np.ndarray, coarse: np.ndarray, coarse_offsets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Tokens reordered so each page's tokens are grouped by their coarse cluster, and the groups' ranges.

    Returns:
        tokens float32 (T, dim) and spans int64 (C + 1,): cluster c holds tokens spans[c]..spans[c + 1].
    """
    from dse.kernels.clusters import kmeans_labels

    labels = kmeans_labels(tokens, offsets, coarse, coarse_offsets)  # (T,) within each page
    page = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))  # (T,)
    cluster = coarse_offsets[page] + labels  # (T,) global cluster ids, ascending by page
    order = np.argsort(cluster, kind="stable")  # (T,)
    spans = np.concatenate([[0], np.cumsum(np.bincount(cluster, minlength=len(coarse)))]).astype(np.int64)
    return tokens[order], spans
