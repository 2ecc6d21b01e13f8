"""Rows in pieces: consecutive runs, and bounded chunks of kept rows (what compaction copies at a time)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

CHUNK_PAGES = 1024  # pages per shard of a compacted engine (as `dse index`'s commit groups)
CHUNK_TOKENS = 1 << 19  # multi-vector pages: at most this many tokens gathered at once (256 MiB at dim 128)


def chunks(keep: np.ndarray, chunk_pages: int, lengths: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """`keep` in consecutive pieces of at most `chunk_pages` rows (and `CHUNK_TOKENS` tokens when `lengths`)."""
    start = 0
    while start < len(keep):
        stop = min(start + chunk_pages, len(keep))
        if lengths is not None:
            ends = np.cumsum(lengths[start:stop])  # (stop - start,)
            stop = start + max(1, int(np.searchsorted(ends, CHUNK_TOKENS, side="right")))
        yield keep[start:stop]
        start = stop


def runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """Ascending rows as runs [a, b) of consecutive rows."""
    if not len(rows):
        return []
    cuts = np.flatnonzero(np.diff(rows) != 1) + 1  # (runs - 1,)
    return [(int(r[0]), int(r[-1]) + 1) for r in np.split(rows, cuts)]
