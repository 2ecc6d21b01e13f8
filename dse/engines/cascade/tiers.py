"""The cascade's per-segment tiers: arrays, views, concatenation, shard files, exact scoring.

A `Tiers` holds consecutive pages on every tier of `dse.engines.cascade.engine`: coarse tokens (sign
bits, int8 codes with per-token scales, list ids, and the segment's codebook with its inverted
lists), every token's sign bits, and the exact tokens (float16 or int8 with per-token scales).
Within a page, tokens are stored grouped by the coarse cluster they belong to, so that cluster
c's tokens are ``spans[c] .. spans[c + 1]`` (MaxSim does not depend on token order).

On disk per shard: ``.coarse.npy`` uint64, ``.coarse-offsets.npy`` int64, ``.bits.npy`` uint64,
``.exact.npy`` float16/int8, ``.scales.npy`` float32 (int8 only), ``.coarse-int8.npy`` int8,
``.coarse-scales.npy`` float32, ``.coarse-spans.npy`` int64, ``.ivf-codebook.npy`` float32 (0 rows: no
lists), ``.ivf-codes.npy`` uint16, the token lists of `dse.engines.cascade.tokens` (``.tok-*.npy``, absent
in shards written before them, and in small shards of an index without a token codebook yet), and
``.offsets.npy`` int64 (pages + 1,), written last: it commits the shard.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dse.engines.cascade import tokens as cascade_tokens
from dse.engines.cascade.tokens import Codebook, TokenLists
from dse.engines.files import load_npy, save_npy, shard_path
from dse.engines.ivf import coarse as coarse_lists
from dse.engines.quantize import int8_decode

EXACT_DTYPES = {"float16": np.float16, "int8": np.int8}
MARKER = ".offsets.npy"
_FILES = (".coarse.npy", ".coarse-offsets.npy", ".bits.npy", ".exact.npy", ".scales.npy",
          ".coarse-int8.npy", ".coarse-scales.npy", ".coarse-spans.npy", ".ivf-codebook.npy", ".ivf-codes.npy")


@dataclass(frozen=True)
class Tiers:
    """Consecutive pages: coarse tier (resident), token bits and exact tokens (memory-mapped)."""

    coarse: np.ndarray  # (coarse_total, words) uint64
    coarse_offsets: np.ndarray  # (pages + 1,) int64
    bits: np.ndarray  # (tokens, words) uint64
    exact: np.ndarray  # (tokens, dim) float16 or int8
    scales: np.ndarray  # (tokens,) float32 (ones for float16)
    offsets: np.ndarray  # (pages + 1,) int64
    coarse_int8: np.ndarray  # (coarse_total, dim) int8 (memory-mapped once saved)
    coarse_scales: np.ndarray  # (coarse_total,) float32
    spans: np.ndarray  # (coarse_total + 1,) int64 token range of each coarse cluster
    codebook: np.ndarray  # (n_lists, dim) float32; 0 rows: no inverted lists
    codes: np.ndarray  # (coarse_total,) uint16 list ids (empty without a codebook)
    lists: coarse_lists.Lists | None  # built from codebook + codes
    tok: TokenLists | None = None  # token-level lists (None: a shard written before them, or too small)

    @property
    def pages(self) -> int:
        return len(self.offsets) - 1

    def rows(self, a: int, b: int) -> Tiers:
        """Pages [a, b) as views (the codebook is shared; the lists are rebuilt)."""
        c0, c1, t0, t1 = self.coarse_offsets[a], self.coarse_offsets[b], self.offsets[a], self.offsets[b]
        codes = self.codes[c0:c1] if len(self.codebook) else self.codes[:0]
        return make(
            self.coarse[c0:c1], self.coarse_offsets[a : b + 1] - c0, self.bits[t0:t1], self.exact[t0:t1],
            self.scales[t0:t1], self.offsets[a : b + 1] - t0, self.coarse_int8[c0:c1], self.coarse_scales[c0:c1],
            self.spans[c0 : c1 + 1] - t0, self.codebook, codes, None if self.tok is None else self.tok.rows(a, b),
        )


def make(
    coarse: np.ndarray, coarse_offsets: np.ndarray, bits: np.ndarray, exact: np.ndarray, scales: np.ndarray,
    offsets: np.ndarray, coarse_int8: np.ndarray, coarse_scales: np.ndarray, spans: np.ndarray,
    codebook: np.ndarray, codes: np.ndarray, tok: TokenLists | None = None,
) -> Tiers:
    """A `Tiers` with its inverted lists built (no lists when the codebook is empty)."""
    lists = coarse_lists.build(codebook, codes, coarse_offsets) if len(codebook) else None
    return Tiers(coarse, coarse_offsets, bits, exact, scales, offsets, coarse_int8, coarse_scales,
                 np.asarray(spans, np.int64), codebook, codes, lists, tok)


def with_codebook(
    coarse: np.ndarray, coarse_offsets: np.ndarray, bits: np.ndarray, exact: np.ndarray, scales: np.ndarray,
    offsets: np.ndarray, coarse_int8: np.ndarray, coarse_scales: np.ndarray, spans: np.ndarray,
    tok: TokenLists | None = None,
) -> Tiers:
    """A `Tiers` whose codebook is trained on its own coarse tokens (none below `MIN_PAGES` pages)."""
    dim = coarse_int8.shape[1]
    if len(offsets) - 1 >= coarse_lists.MIN_PAGES and len(coarse_int8):
        codebook, codes = coarse_lists.train(int8_decode(coarse_int8, coarse_scales))  # (n_lists, dim), (C,)
    else:
        codebook, codes = np.zeros((0, dim), np.float32), np.zeros(0, np.uint16)
    return make(coarse, coarse_offsets, bits, exact, scales, offsets, coarse_int8, coarse_scales, spans, codebook,
                codes, tok)


def concat(
    parts: list[Tiers], words: int, dim: int, dtype: Any, codebook: Codebook | None = None, bits: int = 0,
) -> Tiers:
    """One `Tiers` holding `parts` back to back (copies); retrains the coarse codebook unless shared.

    The token lists are concatenated when every part has them with one codebook, else the
    tokens are encoded with `codebook` (no token lists when None) and residual `bits`.
    """

    def offsets(arrays: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([[0]] + [np.diff(p) for p in arrays]).cumsum().astype(np.int64)

    def stack(arrays: list[np.ndarray], shape: tuple[int, ...], dt: Any) -> np.ndarray:
        return np.concatenate([np.asarray(p) for p in arrays]) if arrays else np.zeros(shape, dt)

    arrays = (
        stack([p.coarse for p in parts], (0, words), np.uint64), offsets([p.coarse_offsets for p in parts]),
        stack([p.bits for p in parts], (0, words), np.uint64), stack([p.exact for p in parts], (0, dim), dtype),
        stack([p.scales for p in parts], (0,), np.float32), offsets([p.offsets for p in parts]),
        stack([p.coarse_int8 for p in parts], (0, dim), np.int8),
        stack([p.coarse_scales for p in parts], (0,), np.float32), offsets([p.spans for p in parts]),
    )
    toks = [p.tok for p in parts]
    if toks and all(t is not None for t in toks) and len({t.codebook.key for t in toks}) == 1:
        tok = cascade_tokens.concat(toks)
    elif codebook is not None and len(arrays[3]):
        tokens = int8_decode(arrays[3], arrays[4]) if arrays[3].dtype == np.int8 else arrays[3]  # (T, dim)
        tok = cascade_tokens.encode(codebook, tokens, arrays[5], bits)
    else:
        tok = None
    if len(parts) == 1 and len(parts[0].codebook):
        return make(*arrays, parts[0].codebook, np.array(parts[0].codes), tok)
    return with_codebook(*arrays, tok)


def save(directory: Path, number: int, tiers: Tiers, int8: bool) -> None:
    """Write `tiers` as shard `number`, the commit marker last."""
    arrays = (tiers.coarse, tiers.coarse_offsets, tiers.bits, tiers.exact, tiers.scales, tiers.coarse_int8,
              tiers.coarse_scales, tiers.spans, tiers.codebook, tiers.codes)
    for suffix, array in zip(_FILES, arrays):
        if suffix != ".scales.npy" or int8:
            save_npy(shard_path(directory, number, suffix), array)
    if tiers.tok is not None:
        cascade_tokens.save(directory, number, tiers.tok)
    save_npy(shard_path(directory, number, MARKER), tiers.offsets)  # commits the shard


def read(
    directory: Path, number: int, exact_dtype: str, dim: int | None, cache: dict[str, Codebook] | None = None,
) -> Tiers:
    """Shard `number`: resident coarse tier and lists, memory-mapped token tiers and token lists.

    `cache` maps codebook keys to the codebooks already read (shared by the shards that use them).

    Raises:
        ValueError: the shard's files do not fit a cascade of this dtype / width.
    """
    offsets = np.asarray(load_npy(shard_path(directory, number, MARKER)), dtype=np.int64)
    coarse, coarse_offsets, bits, exact = (load_npy(shard_path(directory, number, s)) for s in _FILES[:4])
    pages = len(offsets) - 1
    if exact.dtype != EXACT_DTYPES[exact_dtype] or exact.ndim != 2 or bits.dtype != np.uint64:
        raise ValueError(f"{shard_path(directory, number, '.exact.npy')}: not a {exact_dtype} cascade shard")
    if offsets[0] != 0 or offsets[-1] > len(exact) or len(coarse_offsets) <= pages:
        raise ValueError(f"{shard_path(directory, number, MARKER)}: offsets do not fit the shard")
    if dim is not None and exact.shape[1] != dim:
        raise ValueError(f"{directory} shard {number} has dim {exact.shape[1]}, this index expects {dim}")
    width = exact.shape[1]
    scales = load_npy(shard_path(directory, number, _FILES[4])) if exact_dtype == "int8" else np.ones(len(exact), np.float32)
    coarse_offsets = np.asarray(coarse_offsets[: pages + 1], dtype=np.int64)
    coarse_int8, coarse_scales, spans, codebook, codes = (load_npy(shard_path(directory, number, s)) for s in _FILES[5:])
    # A cut (`engine._truncate_shard`) rewrites the files one by one, the marker first: after a
    # crash each file holds the marker's pages or more, so every tier is read up to the marker.
    t_end, c_end = int(offsets[-1]), int(coarse_offsets[-1])
    if (min(len(coarse), len(coarse_int8), len(coarse_scales)) < c_end or len(spans) < c_end + 1
            or min(len(bits), len(scales)) < t_end or coarse_int8.shape[1:] != (width,) or codebook.ndim != 2
            or codebook.shape[1] != width or (len(codebook) and len(codes) < c_end)):
        raise ValueError(f"{shard_path(directory, number, '.coarse-int8.npy')}: does not fit the shard")
    coarse, coarse_int8, coarse_scales, spans = coarse[:c_end], coarse_int8[:c_end], coarse_scales[:c_end], spans[: c_end + 1]
    bits, exact, scales, codes = bits[:t_end], exact[:t_end], scales[:t_end], codes[:c_end] if len(codebook) else codes[:0]
    tok = cascade_tokens.read(directory, number, pages, {} if cache is None else cache, t_end)
    return make(np.array(coarse), coarse_offsets, bits, exact, scales, offsets, coarse_int8, coarse_scales,
                spans, np.array(codebook, np.float32), np.array(codes), tok)


def exact_scores(q: np.ndarray, tiers: Tiers, local: np.ndarray, probe: int = 0) -> np.ndarray:
    """MaxSim of one query (tokens, dim) against pages `local` on the exact tier: float32 (m,).

    With `probe` > 0 (int8 tier with coarse clusters only), each query token is matched against
    the tokens of its `probe` best coarse clusters of the page (`dse.kernels.maxsim.maxsim_pruned`).
    """
    from dse.kernels import maxsim_rows
    from dse.kernels.maxsim import maxsim_pruned

    q_offsets = np.array([0, len(q)], dtype=np.int64)
    if probe and tiers.exact.dtype == np.int8 and len(tiers.coarse_int8):
        return maxsim_pruned(q, q_offsets, tiers.exact, tiers.scales, tiers.spans, tiers.coarse_int8,
                             tiers.coarse_scales, tiers.coarse_offsets, local, probe)[0]
    return maxsim_rows(q, q_offsets, tiers.exact, tiers.scales, tiers.offsets, local)[0]  # int8 or float16, in place
