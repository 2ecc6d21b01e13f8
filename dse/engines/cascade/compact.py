"""Compaction of a cascade engine: the kept pages' tiers copied as stored, the token codebook kept.

Every tier of a page is the page's own (its coarse tokens, bits, exact tokens, coarse clusters,
token-list codes and residuals), so slicing the kept pages out of their segments and saving them
again gives the pages exactly the data they had: the codebook is kept (the kept tokens' codes
and residuals stay valid), nothing is re-encoded or re-trained. Searches after compaction rank
the kept pages as the old engine ranked them under the same `allowed` mask; the knobs sized from
the index (`CascadeEngine.knobs`) follow the smaller page count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dse.engines.row_runs import chunks, runs


def compacted(engine: Any, keep: np.ndarray, directory: Path, chunk_pages: int) -> Any:
    """A cascade engine holding the pages `keep` (ascending) of `engine`, saved in `directory`."""
    new = type(engine)(**engine.options())
    new._codebooks = dict(engine._codebooks)
    new.save(directory)  # binds the empty engine to its directory
    starts = np.asarray(engine._starts + [len(engine)], np.int64)  # (segments + 1,)
    lengths = np.concatenate([np.diff(np.asarray(seg.offsets)) for seg in engine._segments]) if engine._segments \
        else np.zeros(0, np.int64)  # (rows,) tokens per page
    for rows in chunks(keep, chunk_pages, lengths[keep]):
        for a, b in runs(rows):
            while a < b:  # a run may cross segments
                s = int(np.searchsorted(starts, a, side="right")) - 1
                stop = min(b, int(starts[s + 1]))
                seg = engine._segments[s]
                first = int(starts[s])
                new._append(seg if (a - first, stop - first) == (0, seg.pages) else seg.rows(a - first, stop - first))
                a = stop
        new.save(directory)  # one shard (its tiers concatenated), then memory-mapped
    return new
