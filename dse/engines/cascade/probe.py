"""Search over the token lists of every segment of a cascade (`dse.engines.cascade.tokens`).

`stack` puts every segment's posting lists in one resident array (global rows); segments that
share a codebook are probed together, with one (query_tokens, n_centroids) product per
codebook. `shortlist` is the first stage (probe, impute, keep the best `n_shortlist`);
`centroid_scores` then ranks the shortlist by PLAID's centroid interaction over each page's
forward lists (every distinct centroid of its tokens, memory-mapped).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dse.engines.cascade.tokens import TokenLists


@dataclass(frozen=True)
class TokenStack:
    """The token lists of an engine's segments, stacked for one pass per query."""

    codebooks: list[np.ndarray]  # per codebook: (n_centroids, dim) float32
    keys: list[str]  # per codebook: its key
    bases: list[np.ndarray]  # per codebook: int64 (segments,) global id of each of its segments' list 0
    list_offsets: np.ndarray  # (lists + 1,) int64 over `pages`
    pages: np.ndarray  # (postings,) int32 engine rows
    plain_rows: np.ndarray  # (r,) int64 rows of segments without token lists (they always go on)

    @property
    def nbytes(self) -> int:
        """The stacked lists' bytes (the codebooks are the segments' own)."""
        return int(self.list_offsets.nbytes + self.pages.nbytes)


def stack(segments: list[tuple[TokenLists | None, int, int]]) -> TokenStack:
    """Stack `segments` (per segment: token lists or None, first row, pages)."""
    keys: list[str] = []
    codebooks: list[np.ndarray] = []
    bases: list[list[int]] = []
    sizes, pages, plain = [], [], []
    total = 0
    for lists, first, n in segments:
        if lists is None:
            plain.append(np.arange(first, first + n, dtype=np.int64))
            continue
        key = lists.codebook.key
        if key not in keys:
            keys.append(key)
            codebooks.append(lists.codebook.centroids)
            bases.append([])
        bases[keys.index(key)].append(total)
        total += len(lists.list_offsets) - 1
        sizes.append(np.diff(lists.list_offsets))
        pages.append(np.asarray(lists.list_pages, np.int64) + first)
    postings = np.concatenate(pages) if pages else np.zeros(0, np.int64)  # (postings,)
    if len(postings) and postings.max() >= 2**31:
        raise ValueError("the cascade's token lists hold row numbers up to 2**31 - 1")
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(sizes))]) if sizes else np.zeros(1)  # (lists + 1,)
    return TokenStack(codebooks, keys, [np.array(b, np.int64) for b in bases], offsets.astype(np.int64),
                      postings.astype(np.int32), np.concatenate(plain) if plain else np.zeros(0, np.int64))


def similarities(stacked: TokenStack, q: np.ndarray) -> dict[str, np.ndarray]:
    """One query's similarities to each codebook: key -> float32 (query_tokens, n_centroids)."""
    from dse.kernels.postings import similarities as dot

    return {key: dot(q, c) for key, c in zip(stacked.keys, stacked.codebooks)}


def shortlist(
    stacked: TokenStack, q: np.ndarray, sims: dict[str, np.ndarray], n_probe: int, n_keep: int, n_min: int,
    allowed: np.ndarray,
) -> np.ndarray | None:
    """Rows of the best `n_keep` allowed pages of one query by probed, imputed centroid scores.

    Args:
        stacked: The engine's token lists (`stack`).
        q: float32 (query_tokens, dim), one query.
        sims: `similarities(stacked, q)`.
        n_probe: Centroids probed per query token (and codebook).
        n_keep: Pages kept.
        n_min: Fewest pages the next stage needs.
        allowed: bool (rows,), rows that may be returned.

    Returns:
        int64 (<= n_keep,) rows, or None when the probed lists reach fewer than `n_min` allowed
        pages (the caller then scores every allowed page).
    """
    from dse.kernels.postings import probe_lists, select_lists

    plain = stacked.plain_rows[allowed[stacked.plain_rows]]  # (r,)
    rows_all, scores_all = [plain], [np.full(len(plain), np.inf, np.float32)]
    low = -float(np.sqrt((q * q).sum(axis=1).max())) - 1.0  # below any similarity to a unit centroid
    for key, bases in zip(stacked.keys, stacked.bases):
        sim = sims[key]  # (query_tokens, n_centroids)
        probe = min(n_probe, sim.shape[1] - 1) if sim.shape[1] > 1 else 1
        top, gain, floor = select_lists(sim[:, None, :], np.array([sim.shape[1]], np.int64), probe, low)
        ids = np.where(top[:, :, None] >= 0, top[:, :, None] + bases[None, None, :], -1)  # (qt, probe, segments)
        gains = np.broadcast_to(gain[:, :, None], ids.shape)  # (qt, probe, segments)
        reached, s = probe_lists(ids.reshape(len(q), -1), gains.reshape(len(q), -1), stacked.list_offsets,
                                 stacked.pages, allowed)  # (m,), (m,)
        rows_all.append(reached)
        scores_all.append(s + floor.sum())
    rows, scores = np.concatenate(rows_all), np.concatenate(scores_all)  # (m,), (m,)
    if len(rows) < n_min:
        return None
    if len(rows) > n_keep:  # a page of two codebooks cannot occur: each segment has one
        return rows[np.argpartition(-scores, n_keep - 1)[:n_keep]]
    return rows


def centroid_scores(lists: TokenLists | None, sims: dict[str, np.ndarray], local: np.ndarray) -> np.ndarray:
    """Centroid-interaction scores of one segment's pages `local` (+inf without token lists): float32 (m,)."""
    from dse.kernels.postings import centroid_maxsim

    if lists is None:
        return np.full(len(local), np.inf, np.float32)
    return centroid_maxsim(sims[lists.codebook.key], lists.fwd_offsets, lists.fwd_codes, local)
