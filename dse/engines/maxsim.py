"""Multi-vector search: exact late-interaction (MaxSim) scores over every page, in bounded blocks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np

from dse.engines.files import load_npy, save_npy, shard_path
from dse.engines.results import check_allowed, check_k, empty_result, merge_topk, merge_topk_rows
from dse.engines.shards import SegmentedEngine
from dse.types import VectorKind

_OFFSETS = ".offsets.npy"


@dataclass(frozen=True)
class _Segment:
    """Consecutive pages: their tokens concatenated (memory-mapped when saved) and token offsets."""

    tokens: np.ndarray  # (total_tokens, dim) float32
    offsets: np.ndarray  # (pages + 1,) int64, offsets[0] == 0

    @property
    def pages(self) -> int:
        return len(self.offsets) - 1


class MaxSimEngine(SegmentedEngine):
    """Pages as token matrices (tokens_i, dim), scored by sum over query tokens of the best page token.

    The score of query q against page p is ``sum_i max_j <q_i, p_j>``, computed exactly for every
    page (no candidate pruning). Query tokens of all queries are stacked and multiplied with the
    tokens of a block of pages in one BLAS call (multi-threaded); `np.maximum.reduceat` takes the
    max per page and `np.add.reduceat` the sum per query. Blocks hold at most `block_mb` MiB of
    scores, and a running top-k is kept, so memory stays bounded whatever the index size.

    This equals colpali-engine's `score_multi_vector` except in one corner: colpali zero-pads the
    pages of a batch, so a page shorter than the batch's longest gets ``max(0, max_j <q_i, p_j>)``
    per query token. Here the max is over the page's own tokens only. With real ColPali/ColQwen
    embeddings each query token's best match is positive and both agree. A page with no tokens
    scores 0; so does an empty query.

    On disk: `shard-NNNNNN.npy` float32 (tokens, dim) and `shard-NNNNNN.offsets.npy` int64
    (pages + 1,), the offsets file written last (it commits the shard). Saved shards are
    memory-mapped, so resident memory is what the OS caches.

    Args:
        dim: Token width; inferred from the first add (or the shards) when None.
        block_mb: Size of one block of scores (query tokens x page tokens x 4 bytes), in MiB.
    """

    kind: ClassVar[VectorKind] = "multi"
    marker: ClassVar[str] = _OFFSETS

    def __init__(self, dim: int | None = None, block_mb: float = 256) -> None:
        super().__init__(dim)
        if block_mb <= 0:
            raise ValueError(f"block_mb must be > 0, got {block_mb!r}")
        self.block_mb = float(block_mb)



    def options(self) -> dict[str, Any]:
        """Constructor options that describe the data, recorded in the manifest."""
        return {"dim": self._dim}

    def _check(self, items: Sequence[Any], what: str, adopt: bool = True) -> list[np.ndarray]:
        """Float32 (tokens_i, dim) matrices of one width; `adopt` sets an unknown width (if all valid)."""
        if isinstance(items, np.ndarray) and items.ndim == 2:
            raise ValueError(f"{what} must be a list of (tokens, dim) arrays, got one 2-D array {items.shape}")
        out, dim = [], self._dim
        for i, item in enumerate(items):
            arr = np.asarray(item, dtype=np.float32)
            if arr.ndim == 1 and arr.size == 0:
                arr = arr.reshape(0, dim or 0)
            if arr.ndim != 2:
                raise ValueError(f"{what}[{i}] must be a 2-D array (tokens, dim), got shape {arr.shape}")
            if dim is None and arr.shape[0]:
                dim = int(arr.shape[1])
            if arr.shape[0] and arr.shape[1] != dim:
                raise ValueError(f"{what}[{i}] has dim {arr.shape[1]}, but this index expects dim {dim}")
            if not np.isfinite(arr).all():
                raise ValueError(f"{what}[{i}] contains NaN or infinite values")
            out.append(arr)
        out = [arr.reshape(arr.shape[0], dim or arr.shape[1]) for arr in out]
        if adopt and self._dim is None:
            self._dim = dim
        return out

    def add(self, vectors: Sequence[Any]) -> None:
        """Append pages, each a float32 (tokens_i, dim) array.

        Raises:
            ValueError: an item is not 2-D, has the wrong width, or non-finite values.
        """
        pages = self._check(vectors, "pages")
        if not pages:
            return
        lengths = np.array([p.shape[0] for p in pages], dtype=np.int64)  # (pages,)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)  # (pages + 1,)
        tokens = np.concatenate(pages, axis=0) if offsets[-1] else np.zeros((0, self._dim or 0), np.float32)
        self._append(_Segment(np.ascontiguousarray(tokens, dtype=np.float32), offsets))

    def search(
        self, queries: Sequence[Any], k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k pages by exact MaxSim for each query (ties: lower row first).

        With `allowed`, disallowed pages are skipped: a segment where fewer than half the pages
        are allowed has only its allowed pages' tokens gathered and scored; a denser one is
        scored in blocks with the disallowed pages' scores set to -inf.

        Args:
            queries: List of float32 (query_tokens_i, dim) arrays.
            k: Depth; clipped to the number of (allowed) pages.
            allowed: Optional bool (n_pages,) mask; False pages are never returned.

        Returns:
            scores float32 (n_queries, k'), rows int64 (n_queries, k').
        """
        from dse.kernels.maxsim import maxsim_dense

        k = check_k(k)
        qs = self._check(queries, "queries", adopt=False)
        mask = check_allowed(allowed, self._n)
        nq, kk = len(qs), min(k, self._n if mask is None else int(mask.sum()))
        if kk == 0 or nq == 0:
            return empty_result(nq)
        q_lengths = np.array([q.shape[0] for q in qs], dtype=np.int64)  # (nq,)
        q_all = np.concatenate(qs, axis=0) if q_lengths.sum() else None  # (q_tokens, dim)
        q_tokens = int(q_lengths.sum())
        best = empty_result(nq)
        for seg, first_row in zip(self._segments, self._starts):
            local = None if mask is None else mask[first_row : first_row + seg.pages]  # (pages,)
            if local is not None and 2 * int(local.sum()) < seg.pages:
                for pages, sub in self._gathered(seg, np.flatnonzero(local), q_tokens):
                    block = maxsim_dense(q_all, q_lengths, sub.tokens, sub.offsets, 0, sub.pages)  # (nq, len(pages))
                    best = merge_topk_rows(best, block, first_row + pages, kk)
                continue
            for a, b in self._blocks(seg, q_tokens):
                block = maxsim_dense(q_all, q_lengths, seg.tokens, seg.offsets, a, b)  # (nq, b - a)
                if local is not None:
                    block[:, ~local[a:b]] = -np.inf
                best = merge_topk(best, block, first_row + a, kk)
        return best

    def _gathered(self, seg: _Segment, pages: np.ndarray, q_tokens: int) -> Iterator[tuple[np.ndarray, _Segment]]:
        """The pages `pages` (ascending, local to `seg`) copied into blocks that fit `block_mb`.

        The budget counts the gathered float32 copy of the tokens as well as the scores.
        """
        lengths = seg.offsets[pages + 1] - seg.offsets[pages]  # (m,)
        ends = np.cumsum(lengths)  # (m,)
        budget, a = self._budget(q_tokens + seg.tokens.shape[1]), 0
        while a < len(pages):
            b = int(np.searchsorted(ends, (ends[a - 1] if a else 0) + budget, side="right"))
            b = min(max(b, a + 1), len(pages))
            offsets = np.concatenate([[0], np.cumsum(lengths[a:b])]).astype(np.int64)  # (b - a + 1,)
            take = np.repeat(seg.offsets[pages[a:b]] - offsets[:-1], lengths[a:b]) + np.arange(offsets[-1])
            yield pages[a:b], _Segment(np.asarray(seg.tokens[take], dtype=np.float32), offsets)  # (T, dim)
            a = b

    def page_tokens(self, row: int) -> np.ndarray:
        """The stored tokens of one row: float32 (tokens, dim) (`dse export-vectors`)."""
        if not 0 <= row < self._n:
            raise IndexError(f"row {row} out of range [0, {self._n})")
        s = int(np.searchsorted(self._starts, row, side="right")) - 1
        seg, local = self._segments[s], row - self._starts[s]
        return np.asarray(seg.tokens[seg.offsets[local] : seg.offsets[local + 1]], np.float32)

    def score(self, queries: Sequence[Any]) -> np.ndarray:
        """Full MaxSim score matrix, float32 (n_queries, n_pages) (for small indexes and tests)."""
        from dse.kernels.maxsim import maxsim_dense

        qs = self._check(queries, "queries", adopt=False)
        q_lengths = np.array([q.shape[0] for q in qs], dtype=np.int64)  # (nq,)
        q_all = np.concatenate(qs, axis=0) if q_lengths.sum() else None  # (q_tokens, dim)
        out = np.zeros((len(qs), self._n), np.float32)  # (nq, n)
        for seg, first_row in zip(self._segments, self._starts):
            for a, b in self._blocks(seg, int(q_lengths.sum())):
                out[:, first_row + a : first_row + b] = maxsim_dense(q_all, q_lengths, seg.tokens, seg.offsets, a, b)
        return out

    def _blocks(self, seg: _Segment, q_tokens: int) -> list[tuple[int, int]]:
        """Page ranges [a, b) of `seg` whose score block fits in `block_mb` (at least one page each)."""
        budget = self._budget(q_tokens)
        blocks, a = [], 0
        while a < seg.pages:
            b = int(np.searchsorted(seg.offsets, seg.offsets[a] + budget, side="right")) - 1
            b = min(max(b, a + 1), seg.pages)
            blocks.append((a, b))
            a = b
        return blocks

    def _budget(self, q_tokens: int) -> int:
        """Page tokens per block so that one block of `q_tokens` float32 values a page token fits in `block_mb`."""
        return max(1, int(self.block_mb * 2**20 / 4 / max(1, q_tokens)))

    def _read_shard(self, directory: Path, number: int, keep: int) -> int:
        path = shard_path(directory, number, ".npy")
        tokens, offsets = load_npy(path), np.asarray(load_npy(shard_path(directory, number, _OFFSETS)))
        pages = len(offsets) - 1
        if tokens.ndim != 2 or tokens.dtype != np.float32 or offsets.ndim != 1 or pages < 0:
            raise ValueError(f"{path} is not a float32 (tokens, dim) array with (pages + 1,) offsets")
        if offsets[0] != 0 or (np.diff(offsets) < 0).any() or offsets[-1] > tokens.shape[0]:
            raise ValueError(f"{path}: offsets do not fit its {tokens.shape[0]} tokens")
        if self._dim is None and tokens.shape[0]:
            self._dim = int(tokens.shape[1])
        if tokens.shape[0] and tokens.shape[1] != self._dim:
            raise ValueError(f"{path} has dim {tokens.shape[1]}, but this index expects dim {self._dim}")
        keep = min(keep, pages)
        self._append(_Segment(tokens[: offsets[keep]], offsets[: keep + 1].astype(np.int64)))
        return pages

    def _slice(self, start: int, stop: int) -> _Segment:
        """Rows [start, stop) as one segment (a copy)."""
        tokens, lengths = [], []
        for seg, first in zip(self._segments, self._starts):
            a, b = max(start - first, 0), min(stop - first, seg.pages)
            if a < b:
                tokens.append(seg.tokens[seg.offsets[a] : seg.offsets[b]])
                lengths.append(np.diff(seg.offsets[a : b + 1]))
        offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64)  # (pages + 1,)
        return _Segment(np.concatenate(tokens, axis=0).astype(np.float32).reshape(-1, self._dim or 0), offsets)

    def _write_shard(self, directory: Path, number: int, start: int, stop: int) -> None:
        seg = self._slice(start, stop)
        save_npy(shard_path(directory, number, ".npy"), seg.tokens)
        save_npy(shard_path(directory, number, _OFFSETS), seg.offsets)  # commits the shard

    def _truncate_shard(self, directory: Path, number: int, keep: int) -> None:
        offsets = np.array(load_npy(shard_path(directory, number, _OFFSETS)))
        save_npy(shard_path(directory, number, _OFFSETS), offsets[: keep + 1])  # first: tokens stay a superset
        tokens_path = shard_path(directory, number, ".npy")
        save_npy(tokens_path, np.array(load_npy(tokens_path)[: offsets[keep]]))

