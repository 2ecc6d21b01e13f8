"""Multi-vector cascade search: binary candidate generation, then MaxSim on compact vectors.

Three tiers per page, each cheaper and coarser than the next:

1. *coarse* (resident in memory): the page summarised in `coarse_tokens` tokens (spherical
   k-means, `kernels.kmeans_pages`), sign-binarised (16 bytes a token at dim 128). Every
   allowed page is scored by the compiled Hamming-MaxSim kernel; the best `n_coarse` go on.
2. *bits* (memory-mapped): every (pooled) token sign-binarised; Hamming-MaxSim on the
   `n_coarse` candidates keeps the best `n_candidates`.
3. *exact* (memory-mapped): every (pooled) token as float16 or int8; MaxSim with the float
   query tokens ranks the `n_candidates` and returns the top k.

Knobs (recall for speed): `n_coarse` and `n_candidates`, set on the engine (recorded in the
manifest) or per call of `search`. 0 turns a stage's pruning off: `n_coarse=0` scans every
page's full bits, `n_candidates=0` scores every page on the exact tier (the exhaustive mode;
equal to exact MaxSim up to float16/int8 rounding). `pool_factor` > 1 pools each page's
tokens hierarchically at indexing time (fewer tokens on every tier, slower indexing).

On disk per shard: ``.coarse.npy`` uint64, ``.coarse-offsets.npy`` int64, ``.bits.npy``
uint64, ``.exact.npy`` float16/int8, ``.scales.npy`` float32 (int8 only), and
``.offsets.npy`` int64 (pages + 1,), written last: it commits the shard.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from dse.encoders.base import VectorKind
from dse.indexes.base import topk
from dse.indexes.quantize import int8_encode, pack_signs, pool_tokens
from dse.indexes.shards import SegmentedEngine, check_k, empty_result, load_npy, save_npy, shard_path

_EXACT_DTYPES = {"float16": np.float16, "int8": np.int8}
_FILES = (".coarse.npy", ".coarse-offsets.npy", ".bits.npy", ".exact.npy", ".scales.npy")


@dataclass(frozen=True)
class _Segment:
    """Consecutive pages: coarse codes (resident), token codes and exact tokens (memory-mapped)."""

    coarse: np.ndarray  # (coarse_tokens_total, words) uint64
    coarse_offsets: np.ndarray  # (pages + 1,) int64
    bits: np.ndarray  # (tokens, words) uint64
    exact: np.ndarray  # (tokens, dim) float16 or int8
    scales: np.ndarray  # (tokens,) float32 (ones for float16)
    offsets: np.ndarray  # (pages + 1,) int64

    @property
    def pages(self) -> int:
        return len(self.offsets) - 1

    def rows(self, a: int, b: int) -> "_Segment":
        """Pages [a, b) as a segment of views."""
        c0, c1, t0, t1 = self.coarse_offsets[a], self.coarse_offsets[b], self.offsets[a], self.offsets[b]
        return _Segment(
            self.coarse[c0:c1], self.coarse_offsets[a : b + 1] - c0, self.bits[t0:t1], self.exact[t0:t1],
            self.scales[t0:t1], self.offsets[a : b + 1] - t0,
        )


def _concat(segments: list[_Segment], words: int, dim: int, dtype: Any) -> _Segment:
    """One segment holding `segments` back to back (copies)."""

    def offsets(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([[0]] + [np.diff(p) for p in parts]).cumsum().astype(np.int64)

    def stack(parts: list[np.ndarray], shape: tuple[int, ...], dt: Any) -> np.ndarray:
        return np.concatenate([np.asarray(p) for p in parts]) if parts else np.zeros(shape, dt)

    return _Segment(
        stack([s.coarse for s in segments], (0, words), np.uint64),
        offsets([s.coarse_offsets for s in segments]),
        stack([s.bits for s in segments], (0, words), np.uint64),
        stack([s.exact for s in segments], (0, dim), dtype),
        stack([s.scales for s in segments], (0,), np.float32),
        offsets([s.offsets for s in segments]),
    )


class CascadeEngine(SegmentedEngine):
    """Late-interaction (MaxSim) search through a binary cascade; see the module docstring.

    Args:
        dim: Token width; inferred from the first add (or the shards) when None.
        mode: Always "cascade" (recorded in the manifest so `engines.engine_for` finds this class).
        exact_dtype: "float16" (default) or "int8" for the exact tier.
        pool_factor: Hierarchical token pooling factor at indexing time (1: keep every token).
        coarse_tokens: Tokens per page in the resident coarse tier (0: no coarse tier).
        n_coarse: Pages the coarse stage keeps (0: no coarse pruning).
        n_candidates: Pages rescored on the exact tier (0: every page, exhaustive).
    """

    kind: ClassVar[VectorKind] = "multi"
    marker: ClassVar[str] = ".offsets.npy"

    def __init__(
        self, dim: int | None = None, mode: str = "cascade", exact_dtype: str = "float16", pool_factor: int = 1,
        coarse_tokens: int = 32, n_coarse: int = 4096, n_candidates: int = 256,
    ) -> None:
        super().__init__(dim)
        if mode != "cascade":
            raise ValueError(f"CascadeEngine mode must be 'cascade', got {mode!r}")
        if exact_dtype not in _EXACT_DTYPES:
            raise ValueError(f"exact_dtype must be one of {', '.join(_EXACT_DTYPES)}, got {exact_dtype!r}")
        for name, value, low in (("pool_factor", pool_factor, 1), ("coarse_tokens", coarse_tokens, 0),
                                 ("n_coarse", n_coarse, 0), ("n_candidates", n_candidates, 0)):
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.exact_dtype, self.pool_factor, self.coarse_tokens = exact_dtype, int(pool_factor), int(coarse_tokens)
        self.n_coarse, self.n_candidates = int(n_coarse), int(n_candidates)
        self._coarse: _Segment | None = None  # all pages' coarse tier in one array (built lazily)


    @property
    def _words(self) -> int:
        return -(-(self._dim or 0) // 64)


    def options(self) -> dict[str, Any]:
        """Constructor options, recorded in the manifest."""
        return {"mode": "cascade", "dim": self._dim, "exact_dtype": self.exact_dtype, "pool_factor": self.pool_factor,
                "coarse_tokens": self.coarse_tokens, "n_coarse": self.n_coarse, "n_candidates": self.n_candidates}

    def _check(self, items: Sequence[Any], what: str, adopt: bool) -> list[np.ndarray]:
        """Float32 (tokens_i, dim) matrices of this engine's width."""
        if isinstance(items, np.ndarray) and items.ndim == 2:
            raise ValueError(f"{what} must be a list of (tokens, dim) arrays, got one 2-D array {items.shape}")
        out, dim = [], self._dim
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
        if adopt and self._dim is None:
            self._dim = dim
        return [a.reshape(a.shape[0], dim or 0) for a in out]

    def _append(self, segment: _Segment) -> None:
        if segment.pages:
            self._segments.append(segment)
            self._starts.append(self._n)
            self._n += segment.pages
            self._coarse = None

    def add(self, vectors: Sequence[Any]) -> None:
        """Append pages, each a float32 (tokens_i, dim) array (pooled and encoded here).

        Raises:
            ValueError: an item is not 2-D, has the wrong width, or non-finite values.
        """
        from dse.indexes.kernels import kmeans_pages

        pages = self._check(vectors, "pages", adopt=True)
        if not pages:
            return
        if self.pool_factor > 1:
            pages = [pool_tokens(p, self.pool_factor) if len(p) else p for p in pages]
        dim = self._dim or 0
        tokens = np.concatenate(pages) if pages else np.zeros((0, dim), np.float32)  # (T, dim)
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in pages])]).astype(np.int64)  # (pages + 1,)
        if self.coarse_tokens:
            coarse, coarse_offsets = kmeans_pages(tokens, offsets, self.coarse_tokens)  # (C, dim), (pages + 1,)
        else:
            coarse, coarse_offsets = tokens[:0], np.zeros(len(pages) + 1, np.int64)
        if self.exact_dtype == "int8":
            exact, scales = int8_encode(tokens)  # (T, dim) int8, (T,)
        else:
            exact, scales = tokens.astype(np.float16), np.ones(len(tokens), np.float32)  # (T, dim), (T,)
        self._append(_Segment(pack_signs(coarse), coarse_offsets, pack_signs(tokens), exact, scales, offsets))

    def search(
        self, queries: Sequence[Any], k: int, allowed: np.ndarray | None = None,
        n_coarse: int | None = None, n_candidates: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k pages per query by MaxSim on the exact tier, among the cascade's candidates.

        Args:
            queries: List of float32 (query_tokens_i, dim) arrays.
            k: Depth; clipped to the number of allowed pages.
            allowed: Optional bool (n_pages,) mask; False pages are never returned.
            n_coarse: Override of the engine's `n_coarse` for this call.
            n_candidates: Override of the engine's `n_candidates` for this call.

        Returns:
            scores float32 (n_queries, k'), rows int64 (n_queries, k'), best first.
        """
        from dse.indexes.kernels import hamming_maxsim

        k = check_k(k)
        qs = self._check(queries, "queries", adopt=False)
        rows = np.arange(self._n, dtype=np.int64) if allowed is None else np.flatnonzero(self._mask(allowed))
        kk = min(k, len(rows))
        if kk == 0 or not qs:
            return empty_result(len(qs))
        n1 = self.n_coarse if n_coarse is None else int(n_coarse)
        n2 = self.n_candidates if n_candidates is None else int(n_candidates)
        n2 = max(n2, kk) if n2 else 0
        n1 = max(n1, n2, kk) if n1 else 0
        q_offsets = np.concatenate([[0], np.cumsum([len(q) for q in qs])]).astype(np.int64)  # (nq + 1,)
        q_all = np.concatenate(qs).reshape(-1, self._dim or 0)  # (query_tokens, dim)
        q_bits = pack_signs(q_all)  # (query_tokens, words)
        cands = [rows] * len(qs)
        if self.coarse_tokens and n1 and n1 < len(rows):
            c = self._coarse_tier()
            scores = hamming_maxsim(q_bits, q_offsets, c.coarse, c.coarse_offsets, self._dim, rows)  # (nq, m)
            cands = [rows[_best(s, n1)] for s in scores]
        out_scores, out_rows = [], []
        for qi, rows_q in enumerate(cands):
            sl = slice(q_offsets[qi], q_offsets[qi + 1])
            if n2 and n2 < len(rows_q):
                fine = self._per_segment(rows_q, lambda seg, local: hamming_maxsim(
                    q_bits[sl], np.array([0, sl.stop - sl.start]), seg.bits, seg.offsets, self._dim, local))
                rows_q = rows_q[_best(fine, n2)]
            rows_q = np.sort(rows_q)
            exact = self._per_segment(rows_q, lambda seg, local: _exact_scores(q_all[sl], seg, local))  # (m,)
            s, cols = topk(exact[None, :], kk)  # (1, kk)
            out_scores.append(s[0])
            out_rows.append(rows_q[cols[0]])
        return np.stack(out_scores).astype(np.float32), np.stack(out_rows).astype(np.int64)

    def _mask(self, allowed: np.ndarray) -> np.ndarray:
        mask = np.asarray(allowed)
        if mask.dtype != np.bool_ or mask.shape != (self._n,):
            raise ValueError(f"allowed must be a bool array of shape ({self._n},), got {mask.dtype} {mask.shape}")
        return mask

    def _coarse_tier(self) -> _Segment:
        """Every page's coarse codes in one resident array (rebuilt after adds)."""
        if self._coarse is None:
            self._coarse = _concat(self._segments, self._words, self._dim or 0, _EXACT_DTYPES[self.exact_dtype])
        return self._coarse

    def _per_segment(self, rows: np.ndarray, score: Any) -> np.ndarray:
        """Scores of ascending-or-not `rows` computed segment by segment: float (len(rows),)."""
        out = np.zeros(len(rows), np.float32)  # (m,)
        which = np.searchsorted(np.asarray(self._starts), rows, side="right") - 1  # (m,)
        for s in np.unique(which):
            pick = np.flatnonzero(which == s)
            out[pick] = np.asarray(score(self._segments[s], rows[pick] - self._starts[s])).reshape(-1)
        return out

    # ------------------------------------------------------------------ persistence
    def _read_shard(self, directory: Path, number: int, keep: int) -> int:
        offsets = np.asarray(load_npy(shard_path(directory, number, self.marker)), dtype=np.int64)
        arrays = [load_npy(shard_path(directory, number, suffix)) for suffix in _FILES[:4]]
        scales_path = shard_path(directory, number, _FILES[4])
        pages, (coarse, coarse_offsets, bits, exact) = len(offsets) - 1, arrays
        if exact.dtype != _EXACT_DTYPES[self.exact_dtype] or exact.ndim != 2 or bits.dtype != np.uint64:
            raise ValueError(f"{shard_path(directory, number, '.exact.npy')}: not a {self.exact_dtype} cascade shard")
        if offsets[0] != 0 or offsets[-1] > len(exact) or len(coarse_offsets) <= pages:
            raise ValueError(f"{shard_path(directory, number, self.marker)}: offsets do not fit the shard")
        self._dim = int(exact.shape[1]) if self._dim is None else self._dim
        if exact.shape[1] != self._dim:
            raise ValueError(f"{directory} shard {number} has dim {exact.shape[1]}, this index expects {self._dim}")
        scales = load_npy(scales_path) if self.exact_dtype == "int8" else np.ones(len(exact), np.float32)
        coarse_offsets = np.asarray(coarse_offsets[: pages + 1], dtype=np.int64)
        self._append(_Segment(np.array(coarse), coarse_offsets, bits, exact, scales, offsets).rows(0, min(keep, pages)))
        return pages

    def _write_shard(self, directory: Path, number: int, start: int, stop: int) -> None:
        parts = []
        for seg, first in zip(self._segments, self._starts):
            a, b = max(start - first, 0), min(stop - first, seg.pages)
            if a < b:
                parts.append(seg.rows(a, b))
        seg = _concat(parts, self._words, self._dim or 0, _EXACT_DTYPES[self.exact_dtype])
        self._save_arrays(directory, number, seg)

    def _save_arrays(self, directory: Path, number: int, seg: _Segment) -> None:
        arrays = [seg.coarse, seg.coarse_offsets, seg.bits, seg.exact, seg.scales]
        for suffix, array in zip(_FILES, arrays):
            if suffix != ".scales.npy" or self.exact_dtype == "int8":
                save_npy(shard_path(directory, number, suffix), array)
        save_npy(shard_path(directory, number, self.marker), seg.offsets)  # commits the shard

    def _truncate_shard(self, directory: Path, number: int, keep: int) -> None:
        offsets = np.array(load_npy(shard_path(directory, number, self.marker)))
        save_npy(shard_path(directory, number, self.marker), offsets[: keep + 1])  # first: data stays a superset
        engine = type(self)(**self.options())
        engine._read_shard(directory, number, keep)
        self._save_arrays(directory, number, _concat(engine._segments, self._words, self._dim or 0,
                                                     _EXACT_DTYPES[self.exact_dtype]))



def _best(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the `n` highest scores (unordered; all when fewer)."""
    if n >= len(scores):
        return np.arange(len(scores))
    return np.argpartition(-scores, n - 1)[:n]


def _exact_scores(q: np.ndarray, seg: _Segment, local: np.ndarray) -> np.ndarray:
    """MaxSim of one query (tokens, dim) against pages `local` of `seg` on the exact tier: (m,)."""
    from dse.indexes.kernels import maxsim_rows

    q_offsets = np.array([0, len(q)], dtype=np.int64)
    if seg.exact.dtype == np.int8:
        return maxsim_rows(q, q_offsets, seg.exact, seg.scales, seg.offsets, local)[0]
    out = np.zeros(len(local), np.float32)  # (m,)
    for c in range(0, len(local), 256):  # float16 -> float32 copies of at most 256 pages at a time
        spans = [(seg.offsets[p], seg.offsets[p + 1]) for p in local[c : c + 256]]
        tokens = np.concatenate([seg.exact[a:b] for a, b in spans]).astype(np.float32)  # (T, dim)
        offsets = np.concatenate([[0], np.cumsum([b - a for a, b in spans])]).astype(np.int64)  # (pages + 1,)
        out[c : c + 256] = maxsim_rows(q, q_offsets, tokens, np.ones(len(tokens), np.float32), offsets)[0]
    return out
