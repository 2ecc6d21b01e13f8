"""Pooled first-stage vectors of a multi-vector page (what the prefetch searches before MaxSim).

Two poolings, recorded in the manifest as the collection's `pooling` option:

- ``"mean"`` (default): the page's mean token, one dense vector (`POOLED`, HNSW).
- ``"grid"``: Qdrant's ColPali recipe: the patch grid's row means and column means, each a
  multivector of its own (`ROWS`, `COLS`: MAX_SIM, HNSW), with the tokens that are not part of
  the grid (special and augmentation tokens) appended to both unpooled.

dse's encoders return a page as its tokens only; they do not record the patch grid per page
(ColQwen2's grid varies with the page's aspect ratio and its image tokens sit between prompt
tokens). So the grid is the `grid_rows` option: a page of n tokens is read as `grid_rows` rows
of ``n // grid_rows`` consecutive tokens, the last ``n % grid_rows`` tokens are the extra ones.
That is ColPali's layout exactly (1024 image tokens first, a 32 x 32 grid, then 6 text tokens:
``grid_rows=32``), and how bench/corpus_late.py lays out a page (consecutive chunks; its tokens
carry no position, so rows and columns are arbitrary groupings there). A page with fewer tokens
than `grid_rows` has no grid: both pooled fields hold its mean token (the page-mean fallback).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

POOLINGS = ("mean", "grid")
DEFAULT_POOLING = "mean"


class PoolingError(ValueError):
    """A `pooling` / `grid_rows` option that is not valid: the message names it."""


def check_pooling(options: Mapping[str, Any]) -> None:
    """Raise `PoolingError` unless `pooling` and `grid_rows` go together."""
    pooling = options.get("pooling", DEFAULT_POOLING)
    if pooling not in POOLINGS:
        raise PoolingError(f"qdrant pooling {pooling!r}: use one of {', '.join(POOLINGS)}")
    rows = options.get("grid_rows")
    if pooling == "grid" and (not isinstance(rows, int) or isinstance(rows, bool) or rows < 1):
        raise PoolingError(f"qdrant pooling 'grid' needs grid_rows, an integer >= 1 (the patch grid's rows, "
                           f"e.g. 32 for ColPali), got {rows!r}")
    if pooling != "grid" and rows is not None:
        raise PoolingError("qdrant grid_rows is only read with pooling: grid")


def grid_pool(tokens: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(row means, column means) of a page's tokens read as `rows` rows of consecutive tokens.

    Args:
        tokens: float32 (n, dim), the page as the encoder returned it.
        rows: Rows of the patch grid.

    Returns:
        float32 (rows + extra, dim) and (cols + extra, dim), extra = n % rows trailing tokens
        appended unpooled; a page with n < rows gives its mean token, (1, dim), twice.
    """
    arr = np.asarray(tokens, dtype=np.float32)  # (n, dim)
    cols = len(arr) // rows
    if cols == 0:
        mean = arr.mean(axis=0, keepdims=True)  # (1, dim)
        return mean, mean
    grid = arr[: rows * cols].reshape(rows, cols, -1)  # (rows, cols, dim)
    extra = arr[rows * cols:]  # (n % rows, dim)
    return (np.concatenate([grid.mean(axis=1), extra]),  # (rows + extra, dim)
            np.concatenate([grid.mean(axis=0), extra]))  # (cols + extra, dim)
