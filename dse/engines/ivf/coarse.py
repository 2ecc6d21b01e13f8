"""Inverted lists of pages over the cascade's coarse tokens: its first stage in indexes without token lists.

Every segment of the cascade (the pages of one shard, or of one `add` call) holding at least
`MIN_PAGES` pages gets its own codebook: spherical k-means (faiss) of its pages' coarse tokens
into `lists_for(n)` lists, and the list id of every coarse token. A page is posted in each list
one of its coarse tokens falls in. A query token probes its `n_probe` most similar lists. A page
then scores, per query token, the similarity of the best probed list it is posted in, or the
next unprobed list's similarity (an upper bound of what it misses) when it is in none, summed
over query tokens: PLAID's centroid interaction, restricted to the probed lists (the imputation
of missing similarities follows XTR/WARP). The best `n_shortlist` pages of all segments go on to
the coarse Hamming stage; segments too small for a codebook send every page on.

Codebooks are per segment so that a shard is complete when it is written (no index-wide
training step, nothing rewritten later); a query pays one small (query_tokens, n_lists) product
per segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dse.engines.ivf.lists import train_centroids

MIN_PAGES = 256  # segments with fewer pages have no codebook (every page goes to the Hamming stage)
_POINTS_PER_LIST = 128  # coarse tokens per list when sizing a codebook
_MAX_LISTS = 4096  # list ids are stored as uint16


@dataclass(frozen=True)
class Lists:
    """One segment's inverted lists: codebook rows and the pages posted in each list."""

    codebook: np.ndarray  # (n_lists, dim) float32, unit rows
    offsets: np.ndarray  # (n_lists + 1,) int64
    pages: np.ndarray  # (postings,) int32, ascending within each list


def lists_for(n_vectors: int) -> int:
    """Number of lists for a codebook of `n_vectors` coarse tokens: a power of two in [16, 4096] near n / 128."""
    target = max(n_vectors // _POINTS_PER_LIST, 16)
    return int(min(1 << int(np.round(np.log2(target))), _MAX_LISTS))


def train(coarse: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Codebook and list ids for one segment's coarse tokens.

    Args:
        coarse: float (C, dim) coarse tokens of the segment's pages (unit rows).
        seed: k-means seed (training is deterministic for a given seed and input).

    Returns:
        codebook float32 (n_lists, dim) and codes uint16 (C,), the list of each coarse token.
    """
    x = np.ascontiguousarray(coarse, dtype=np.float32)  # (C, dim)
    codebook = train_centroids(x, lists_for(len(x)), seed, iterations=8, max_points_per_centroid=32,
                               min_points_per_centroid=1, renormalise=False)  # (n_lists, dim)
    return codebook, assign(codebook, x)


def assign(codebook: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """The most similar codebook row of each coarse token: uint16 (C,).

    FAISS's flat inner-product search over the codebook, as the codes stored in every cascade
    shard were assigned (`lists.assign`, numpy's product, can pick another list on near-ties).
    """
    import faiss

    index = faiss.IndexFlatIP(codebook.shape[1])
    index.add(np.ascontiguousarray(codebook, dtype=np.float32))
    codes = np.empty(len(coarse), np.uint16)  # (C,)
    for a in range(0, len(coarse), 65536):
        block = np.ascontiguousarray(coarse[a : a + 65536], dtype=np.float32)  # (b, dim)
        codes[a : a + len(block)] = index.search(block, 1)[1][:, 0]
    return codes


def build(codebook: np.ndarray, codes: np.ndarray, coarse_offsets: np.ndarray) -> Lists | None:
    """Inverted lists of the pages whose coarse tokens carry `codes` (None without a codebook).

    Args:
        codebook: float32 (n_lists, dim); an empty codebook means no lists.
        codes: uint16 (C,), list id of each coarse token.
        coarse_offsets: int64 (pages + 1,), coarse token ranges of the pages.
    """
    if not len(codebook):
        return None
    n_tokens = int(coarse_offsets[-1])
    pages = np.repeat(np.arange(len(coarse_offsets) - 1, dtype=np.int64), np.diff(coarse_offsets))  # (C,)
    keys = np.unique(np.asarray(codes[:n_tokens], np.int64) * (len(coarse_offsets) + 1) + pages)  # (postings,)
    lists, posted = np.divmod(keys, len(coarse_offsets) + 1)  # (postings,) each, sorted by list then page
    offsets = np.searchsorted(lists, np.arange(len(codebook) + 1)).astype(np.int64)  # (n_lists + 1,)
    return Lists(np.asarray(codebook, np.float32), offsets, posted.astype(np.int32))


@dataclass(frozen=True)
class Stacked:
    """The lists of every segment of an engine, stacked for one pass per query."""

    codebooks: np.ndarray  # (segments * n_lists, dim) float32, shorter codebooks padded with zero rows
    sizes: np.ndarray  # (segments,) int64 real lists of each segment
    n_lists: int  # lists per segment after padding
    list_offsets: np.ndarray  # (segments * n_lists + 1,) int64
    pages: np.ndarray  # (postings,) int32 rows of the engine
    firsts: np.ndarray  # (segments,) int64 first row of each segment with lists
    plain_rows: np.ndarray  # (r,) int64 rows of segments without lists (they always go on)


def stack(segments: list[tuple[Lists | None, int, int]], dim: int) -> Stacked:
    """Stack the lists of `segments` (per segment: lists or None, first row, pages)."""
    listed = [(lists, first) for lists, first, _ in segments if lists is not None]
    plain = [np.arange(first, first + n, dtype=np.int64) for lists, first, n in segments if lists is None]
    width = max((len(lists.codebook) for lists, _ in listed), default=1)
    codebooks = np.zeros((len(listed) * width, dim), np.float32)  # (segments * n_lists, dim)
    sizes, pages = [], []
    for s, (lists, first) in enumerate(listed):
        k = len(lists.codebook)
        codebooks[s * width : s * width + k] = lists.codebook
        sizes.append(np.concatenate([np.diff(lists.offsets), np.zeros(width - k, np.int64)]))
        pages.append(lists.pages.astype(np.int64) + first)
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(sizes))]) if sizes else np.zeros(1)
    postings = np.concatenate(pages) if pages else np.zeros(0, np.int64)  # (postings,)
    if len(postings) and postings.max() >= 2**31:
        raise ValueError("the cascade's inverted lists hold row numbers up to 2**31 - 1")
    n_real = np.array([len(lists.codebook) for lists, _ in listed], np.int64)
    return Stacked(codebooks, n_real, width, offsets.astype(np.int64), postings.astype(np.int32),
                   np.array([first for _, first in listed], np.int64),
                   np.concatenate(plain) if plain else np.zeros(0, np.int64))


def shortlist(
    stacked: Stacked, q: np.ndarray, n_probe: int, n_keep: int, n_min: int, allowed: np.ndarray,
) -> np.ndarray | None:
    """Rows of the best `n_keep` allowed pages of one query over all segments.

    Args:
        stacked: The engine's lists (`stack`).
        q: float32 (query_tokens, dim), one query.
        n_probe: Lists probed per query token in each segment.
        n_keep: Pages kept.
        n_min: Fewest pages the next stage needs.
        allowed: bool (rows,), rows that may be returned.

    Returns:
        int64 (<= n_keep,) rows, or None when the probed lists reach fewer than `n_min` allowed
        pages (the caller then scores every allowed page).
    """
    from dse.kernels.postings import probe_lists, select_lists, similarities

    plain = stacked.plain_rows[allowed[stacked.plain_rows]]  # (r,)
    rows, scores = plain, np.full(len(plain), np.inf, np.float32)
    if len(stacked.firsts):
        n_segments, width = len(stacked.firsts), stacked.n_lists
        sim = similarities(q, stacked.codebooks)  # (query_tokens, segments * n_lists)
        low = -float(np.sqrt((q * q).sum(axis=1).max())) - 1.0  # below any similarity to a unit codeword
        top, gain, floor = select_lists(sim.reshape(len(q), n_segments, width), stacked.sizes, n_probe, low)
        reached, s = probe_lists(top, gain, stacked.list_offsets, stacked.pages, allowed)  # (m,), (m,)
        segment = np.searchsorted(stacked.firsts, reached, side="right") - 1  # (m,)
        rows = np.concatenate([rows, reached])
        scores = np.concatenate([scores, s + floor.sum(axis=0)[segment]])
    if len(rows) < n_min:
        return None
    return rows[np.argpartition(-scores, n_keep - 1)[:n_keep]] if len(rows) > n_keep else rows
