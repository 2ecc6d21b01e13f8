"""Search results of an engine: top-k selection and merging (ties: lower row first), checks of k and of `allowed`."""

from __future__ import annotations

import numpy as np


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of each row of a (n_queries, n_rows) score matrix, best first; ties by lower row.

    Returns:
        scores float32 (n_queries, k'), rows int64 (n_queries, k') with k' = min(k, n_rows).
    """
    n_rows = scores.shape[1]
    k = min(k, n_rows)
    if k == 0:
        return np.zeros((scores.shape[0], 0), np.float32), np.zeros((scores.shape[0], 0), np.int64)
    if n_rows <= 4 * k:
        # stable sort on -score keeps the lower row first among equal scores
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (nq, k)
    else:  # select, then sort only the rows scoring at least the k-th best (ties included)
        order = np.empty((scores.shape[0], k), np.int64)  # (nq, k)
        for qi, row in enumerate(scores):
            kth = -np.partition(-row, k - 1)[k - 1]
            cand = np.flatnonzero(row >= kth)  # (c,) ascending rows, c >= k
            order[qi] = cand[np.argsort(-row[cand], kind="stable")[:k]]  # (k,)
    return np.take_along_axis(scores, order, axis=1).astype(np.float32), order.astype(np.int64)


def sort_ties(scores: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order each result row by score, then by lower row: float32 (nq, k), int64 (nq, k)."""
    order = np.lexsort((rows, -scores), axis=-1)  # (nq, k)
    return (
        np.take_along_axis(scores, order, axis=1).astype(np.float32),
        np.take_along_axis(rows, order, axis=1).astype(np.int64),
    )


def check_k(k: int) -> int:
    """Validate a search depth."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    return int(k)


def empty_result(n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Search result with no columns."""
    return np.zeros((n_queries, 0), np.float32), np.zeros((n_queries, 0), np.int64)


def merge_topk(
    best: tuple[np.ndarray, np.ndarray], scores: np.ndarray, first_row: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge a running top-k with the scores of rows `first_row...` (ties keep the lower row).

    Args:
        best: Running (scores (nq, k'), rows (nq, k')), all rows below `first_row`.
        scores: (nq, n_block) scores of rows `first_row .. first_row + n_block - 1`.
        first_row: Row number of the block's first column.
        k: Depth.
    """
    rows = np.arange(first_row, first_row + scores.shape[1], dtype=np.int64)  # (n_block,)
    return merge_topk_rows(best, scores, rows, k)


def merge_topk_rows(
    best: tuple[np.ndarray, np.ndarray], scores: np.ndarray, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge a running top-k with the scores of ascending `rows`, all above the running rows.

    Args:
        best: Running (scores (nq, k'), rows (nq, k')).
        scores: (nq, n_block) scores of `rows`.
        rows: int64 (n_block,) row numbers, ascending, each above every row in `best`.
        k: Depth.
    """
    best_scores, best_rows = best
    block_rows = np.broadcast_to(rows.astype(np.int64), scores.shape)  # (nq, n_block)
    all_scores = np.concatenate([best_scores, scores.astype(np.float32)], axis=1)  # (nq, k' + n_block)
    all_rows = np.concatenate([best_rows, block_rows], axis=1)  # (nq, k' + n_block)
    top_scores, cols = topk(all_scores, k)  # (nq, k''), columns are in ascending row order
    return top_scores, np.take_along_axis(all_rows, cols, axis=1)


def check_allowed(allowed: np.ndarray | None, n_rows: int) -> np.ndarray | None:
    """Validate an `allowed` row mask: None (every row) or bool (n_rows,); None when all are True.

    Raises:
        ValueError: not a 1-D bool array with one entry per row.
    """
    if allowed is None:
        return None
    mask = np.asarray(allowed)
    if mask.dtype != np.bool_ or mask.ndim != 1:
        raise ValueError(f"allowed must be a 1-D bool array, got {mask.dtype} with shape {mask.shape}")
    if mask.shape[0] != n_rows:
        raise ValueError(f"allowed has {mask.shape[0]} entries, but the engine holds {n_rows} rows")
    return None if mask.all() else mask
