"""Compaction of an engine: a new engine, in a new directory, holding only the kept rows, in row order.

Row i of the result is the i-th kept row. The new engine is built with the same options and fed
the kept rows' stored data in chunks, each saved as one shard (so memory stays bounded):

- flat (exact or HNSW), quantized (binary / int8, with or without IVF lists), exact MaxSim, BM25:
  the stored vectors, token matrices or token lists are added again, so the result is exactly
  the engine a fresh index would hold after adding the live pages in groups of `chunk_pages`
  (codes, the HNSW graph and BM25's statistics are recomputed over the live pages only: deleted
  pages no longer weigh on IDF or average length), except that trained IVF centroids are kept
  (each row's list and code are then what they were: the same candidates as before);
- cascade: the kept pages' tiers are copied as stored (`dse.engines.cascade.compact`): the token
  codebook is kept and nothing is re-encoded.

Nothing in the old engine or its directory is changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dse.engines.base import SearchEngine
from dse.engines.row_runs import CHUNK_PAGES, chunks, runs



def compacted(engine: Any, keep: np.ndarray, directory: Path, chunk_pages: int = CHUNK_PAGES) -> SearchEngine:
    """A copy of `engine` holding only the rows `keep`, saved in `directory` (which must hold no shards).

    Args:
        engine: A loaded engine (flat, quantized, MaxSim, cascade or BM25).
        keep: int64 (m,) rows to keep, ascending, each in [0, len(engine)).
        directory: The new engine's directory (created).
        chunk_pages: Pages per shard written.

    Raises:
        ValueError: `keep` is not ascending unique rows of the engine.
        TypeError: an engine this module does not know how to compact.
    """
    keep = np.asarray(keep, dtype=np.int64)
    if keep.ndim != 1 or (len(keep) and (keep[0] < 0 or keep[-1] >= len(engine) or (np.diff(keep) <= 0).any())):
        raise ValueError(f"keep must be ascending unique rows in [0, {len(engine)}), got {keep[:8]}...")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = type(engine).__name__
    if name == "CascadeEngine":
        from dse.engines.cascade.compact import compacted as cascade_compacted

        return cascade_compacted(engine, keep, directory, chunk_pages)
    rows_of = _READERS.get(name)
    if rows_of is None:
        raise TypeError(f"{name} has no compaction: known engines are CascadeEngine, {', '.join(_READERS)}")
    new = type(engine)(**engine.options())
    new.save(directory)  # binds the empty engine to its directory, as a new index does
    if getattr(engine, "centroids", None) is not None:  # IVF lists: the centroids kept, the rows' lists with them
        new._lists.adopt(np.asarray(engine.centroids, np.float32), engine._lists.trained, [], None)
    reader = rows_of(engine)
    for rows in chunks(keep, chunk_pages, _lengths(engine, keep)):
        new.add(reader(rows))
        new.save(directory)
    return new


def _lengths(engine: Any, keep: np.ndarray) -> np.ndarray | None:
    """Tokens of each kept page of a multi-vector engine (None for others)."""
    if getattr(engine, "kind", None) != "multi":
        return None
    out = np.empty(len(keep), np.int64)  # (m,)
    starts = np.asarray(engine._starts + [len(engine)], np.int64)
    which = np.searchsorted(starts, keep, side="right") - 1  # (m,)
    for s in np.unique(which):
        pick = np.flatnonzero(which == s)
        offsets = np.asarray(engine._segments[s].offsets)
        local = keep[pick] - starts[s]
        out[pick] = offsets[local + 1] - offsets[local]
    return out


def _flat(engine: Any) -> Any:
    return lambda rows: np.concatenate([engine.vectors(a, b) for a, b in runs(rows)])  # (m, dim)


def _quantized(engine: Any) -> Any:
    return lambda rows: engine._gather(rows)  # (m, dim) float32, the stored vectors


def _maxsim(engine: Any) -> Any:
    return lambda rows: [engine.page_tokens(int(r)) for r in rows]  # (tokens_i, dim) each


def _bm25(engine: Any) -> Any:
    """Token lists of rows, each saved shard read once per chunk (its JSONL holds every page's tokens)."""
    cache: dict[Path, list[list[str]]] = {}

    def read(rows: np.ndarray) -> list[list[str]]:
        starts = np.asarray(engine._starts, np.int64)
        which = np.searchsorted(starts, rows, side="right") - 1  # (m,)
        out: list[list[str]] = []
        for row, s in zip(rows.tolist(), which.tolist()):
            seg = engine._segments[s]
            if seg.pending is not None:
                out.append(list(seg.pending[row - starts[s]]))
                continue
            if seg.shard not in cache:
                cache.clear()  # one shard at a time: rows come in order
                cache[seg.shard] = engine._read_lines(seg.shard)
            out.append(cache[seg.shard][row - starts[s]])
        return out

    return read


_READERS = {"FlatEngine": _flat, "QuantizedFlatEngine": _quantized, "MaxSimEngine": _maxsim, "BM25Engine": _bm25}
