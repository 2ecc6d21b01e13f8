"""Residual token lists: every token of a segment, by centroid, with its residual compressed (WARP's first stage).

The token lists of `dse.engines.cascade.tokens` post a page once per centroid: enough to find
candidates, not to tell near-duplicate siblings apart (they share their centroids). These lists
post every token: its local page and its residual ``token - centroid`` in `bits` bits a
dimension (`dse.kernels.residuals`). A query token then scores each token of its probed
centroids as ``sim(q, centroid) + <q, decoded residual>``, which ranks siblings by the few tokens
they differ in (`dse.engines.cascade.warp`).

On disk per shard, written before the shard's marker: ``.tok-res-buckets.npy`` float32
(bits, cutoffs..., weights...), ``.tok-res-offsets.npy`` int64 (n_centroids + 1,),
``.tok-res-pages.npy`` int32 (T,), ``.tok-res-codes.npy`` uint8 (T, bytes). Entries of a list are
in page order, so pages [0, keep) are a filter: a cut of the shard (`CascadeEngine._truncate_shard`)
leaves these files as they are (a superset, consistent with each other), and reading files that
hold more tokens than the shard filters them to the shard's pages.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dse.engines.files import load_npy, save_npy
from dse.kernels import residuals as kernel

NAMES = ("buckets", "offsets", "pages", "codes")
FILES = tuple(f".tok-res-{n}.npy" for n in NAMES)  # as a shard is first written (`tokens.names`: re-encoded ones)
_SAMPLE = 1 << 16  # residual tokens sampled to place the bucket cutoffs


@dataclass(frozen=True)
class Residuals:
    """One segment's tokens by centroid: local pages and packed residuals."""

    bits: int
    cutoffs: np.ndarray  # (2**bits - 1,) float32
    weights: np.ndarray  # (2**bits,) float32
    offsets: np.ndarray  # (n_centroids + 1,) int64 over `pages` / `codes`
    pages: np.ndarray  # (T,) int32 local pages, ascending within a list
    codes: np.ndarray  # (T, bytes) uint8

    @property
    def key(self) -> str:
        """Identity of the buckets (segments with one key share a query's lookup tables)."""
        raw = np.concatenate([[self.bits], self.cutoffs, self.weights]).astype(np.float32).tobytes()
        return hashlib.sha256(raw).hexdigest()[:16]

    def rows(self, a: int, b: int) -> Residuals:
        """The entries of pages [a, b), renumbered from 0 (a copy)."""
        pages = np.asarray(self.pages)
        keep = (pages >= a) & (pages < b)  # (T,)
        lists = np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))  # (T,) centroid of each entry
        counts = np.bincount(lists[keep], minlength=len(self.offsets) - 1)  # (n_centroids,)
        return Residuals(self.bits, self.cutoffs, self.weights,
                         np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                         (pages[keep] - a).astype(np.int32), np.asarray(self.codes)[keep])


def encode(
    centroids: np.ndarray, tokens: np.ndarray, offsets: np.ndarray, assigned: np.ndarray, bits: int,
    like: Residuals | None = None,
) -> Residuals:
    """Residual lists of pages `offsets` over `tokens` float32 (T, dim), each token's centroid `assigned` (T,).

    The bucket cutoffs and weights are `like`'s when given (segments of one codebook share them,
    so a query builds one lookup table), else placed on a sample of these residuals.
    """
    if bits not in kernel.BITS:
        raise ValueError(f"residual bits must be one of {kernel.BITS}, got {bits!r}")
    tokens = np.asarray(tokens, np.float32)
    residual = tokens - centroids[assigned]  # (T, dim)
    if like is not None and like.bits == bits:
        cutoffs, weights = like.cutoffs, like.weights
    else:
        pick = np.random.default_rng(0).choice(len(residual), min(len(residual), _SAMPLE), replace=False)
        cutoffs, weights = kernel.buckets(residual[np.sort(pick)], bits)
    page = np.repeat(np.arange(len(offsets) - 1, dtype=np.int32), np.diff(offsets))  # (T,)
    order = np.argsort(assigned, kind="stable")  # (T,) by centroid, pages ascending within one
    counts = np.bincount(assigned, minlength=len(centroids))  # (n_centroids,)
    return Residuals(bits, cutoffs, weights, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                     page[order], kernel.pack(residual[order], cutoffs, bits))


def concat(parts: list[Residuals], pages: list[int]) -> Residuals | None:
    """Lists of consecutive segments (`pages` each) back to back; None unless they share their buckets."""
    if not parts or len({p.key for p in parts}) != 1 or len({len(p.offsets) for p in parts}) != 1:
        return None
    n = len(parts[0].offsets) - 1
    first = np.concatenate([[0], np.cumsum(pages)[:-1]])  # (parts,)
    lists = np.concatenate([np.repeat(np.arange(n), np.diff(p.offsets)) for p in parts])  # (T,)
    order = np.argsort(lists, kind="stable")  # (T,) parts in order: pages stay ascending
    all_pages = np.concatenate([np.asarray(p.pages, np.int64) + f for p, f in zip(parts, first)])  # (T,)
    codes = np.concatenate([np.asarray(p.codes) for p in parts])  # (T, bytes)
    counts = np.bincount(lists, minlength=n)
    return Residuals(parts[0].bits, parts[0].cutoffs, parts[0].weights,
                     np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                     all_pages[order].astype(np.int32), codes[order])


def save(directory: Path, number: int, res: Residuals, suffixes: tuple[str, ...] = FILES) -> None:
    """Write shard `number`'s residual files (before its marker), named `suffixes`."""
    from dse.engines.files import shard_path

    head = np.concatenate([[res.bits], res.cutoffs, res.weights]).astype(np.float32)
    for suffix, array in zip(suffixes, (head, res.offsets, res.pages, res.codes)):
        save_npy(shard_path(directory, number, suffix), array)


def read(
    directory: Path, number: int, pages: int, tokens: int, n_centroids: int, suffixes: tuple[str, ...] = FILES,
) -> Residuals | None:
    """Shard `number`'s residual lists in files `suffixes` (None when it has none), filtered to its
    `pages` pages of `tokens` tokens.

    Raises:
        ValueError: the files do not fit the shard.
    """
    from dse.engines.files import shard_path

    if not all(shard_path(directory, number, s).exists() for s in suffixes):
        return None
    head, offsets, listed, codes = (load_npy(shard_path(directory, number, s)) for s in suffixes)
    bits = int(head[0]) if len(head) else 0
    n = 1 << bits if bits in kernel.BITS else 0
    if (not n or len(head) != 2 * n or len(offsets) != n_centroids + 1 or not offsets[-1] == len(listed) == len(codes)
            or len(listed) < tokens):
        raise ValueError(f"{shard_path(directory, number, suffixes[1])}: residual lists do not fit the shard")
    res = Residuals(bits, np.array(head[1:n], np.float32), np.array(head[n:], np.float32),
                    np.asarray(offsets, np.int64), listed, codes)
    return res if len(listed) == tokens else res.rows(0, pages)  # longer: the shard was cut
