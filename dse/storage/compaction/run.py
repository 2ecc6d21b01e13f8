"""`dse compact`: rewrite an index's engines without the rows of deleted pages, crash-safe.

Deleting a page tombstones its row in the catalogue; its vectors stay in the engines' append-only
shards and BM25 keeps counting its tokens. Compaction, holding the writer lock like `dse index`:

1. removes engine directories of other generations (left by an interrupted compaction);
2. writes generation N+1 of every engine (`vectors.N+1/`, `text.N+1/`) beside generation N,
   holding the live rows in row order (`dse.engines.compact`), every file fsynced;
3. writes format version 2 into the manifest (`COMPACTED_FORMAT_VERSION`), so that from here on
   a dse older than compaction, which would read generation 0's directories, refuses the index;
4. switches with one catalogue transaction (`Catalogue.compact`): tombstoned pages and deleted
   sources dropped, live rows renumbered 0..n-1, generation N+1 recorded;
5. publishes the new engines to this process's searches, writes the manifest's counts,
   checkpoints the catalogue, and removes generation N's directories.

A SIGKILL before step 4 commits leaves generation N, as before compaction (the half-written
N+1 is removed by the next compaction); after it, generation N+1 (N's directories, if still
there, are removed by the next compaction and counted as reclaimable by `dse info`). The
manifest never says 1 while the catalogue names a generation >= 1; killed between steps 3 and 4,
it says 2 over generation 0, which this dse reads, and the next writable open puts it back to 1
(`PageIndex.open`; the format follows the catalogue's generation: `manifest.format_for`). Readers
in other processes keep their view of generation N (memory-mapped files stay readable after
removal) until their next refresh, or their next search, which finds the catalogue renumbered
and moves to N+1 before resolving any row (`dse.storage.compaction.generations`).

Page ids, sources, text, metadata and images are unchanged; only rows change.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dse.backends.records import CompactReport, Reclaimable
from dse.storage.compaction.generations import current_dirs, dir_bytes, remove_dirs, stale_dirs
from dse.storage.layout import engine_dirs
from dse.storage.manifest import COMPACTED_FORMAT_VERSION, read_manifest, write_manifest

STAGES = ("cleaned", "vectors", "text", "written", "marked", "committed", "published", "removed")


def reclaimable(index: Any) -> Reclaimable:
    """What compacting `index` (a `PageIndex`) would reclaim now: deleted rows and an estimate of their bytes."""
    view = index.view()
    rows, deleted = view.rows, len(view.deleted)
    current = dir_bytes(current_dirs(index.directory, view.generation, _text_side(view)))
    leftover = dir_bytes(stale_dirs(index.directory, view.generation))
    share = current * deleted // rows if rows else 0
    return Reclaimable(deleted, share + leftover)


def compact(index: Any, on_stage: Callable[[str], None] | None = None) -> CompactReport:
    """Compact `index` (a `PageIndex`): see the module docstring.

    Args:
        index: The index, opened writable.
        on_stage: Called with each stage's name (`STAGES`) once it is done (progress; tests kill there).

    Raises:
        ReadOnlyIndexError: the index was opened read-only.
        IndexLockedError: another writer held the lock for 60 s.
    """
    t0 = time.perf_counter()
    stage = on_stage or (lambda name: None)
    directory = Path(index.directory)
    with index._refresh_lock, index._write_lock():
        index.refresh()
        view = index.view()
        old = view.generation
        leftovers = stale_dirs(directory, old)
        freed = dir_bytes(leftovers)
        remove_dirs(leftovers)
        stage("cleaned")
        old_dirs = current_dirs(directory, old, _text_side(view))
        before = dir_bytes(old_dirs) + freed
        if len(view.deleted) == 0:
            what = f"removed {freed} bytes left by an interrupted compaction; " if freed else ""
            return CompactReport(False, view.rows, 0, 0, before, before - freed, time.perf_counter() - t0, old,
                                 f"{directory}: {what}no deleted pages to reclaim ({view.rows} live pages)")
        new = old + 1
        keep = np.setdiff1d(np.arange(view.rows, dtype=np.int64), view.deleted)  # (live,) ascending
        try:
            engine, text_engine = _write_generation(index, view, keep, new, stage)
            _mark_compacted(index)
            stage("marked")
            live, removed, sources = index.catalogue.compact(new, view.rows)  # the switch
        except Exception:
            remove_dirs(current_dirs(directory, new, True))  # half-written: generation `old` stays
            with contextlib.suppress(Exception):  # the original error is the one to see
                index._write_counts()  # and the format of generation `old`
            raise
        stage("committed")
        index._publish(engine, text_engine)
        index._after_commit()
        stage("published")
        remove_dirs(old_dirs)
        stage("removed")
    after = dir_bytes(current_dirs(directory, new, _text_side(index.view())))
    seconds = time.perf_counter() - t0
    return CompactReport(True, live, removed, sources, before, after, seconds, new,
                         f"{directory}: removed {removed} deleted page(s) and {sources} deleted source(s); "
                         f"{live} live page(s) renumbered; engine files {_mib(before)} -> {_mib(after)} "
                         f"in {seconds:.1f} s")


def _write_generation(
    index: Any, view: Any, keep: np.ndarray, generation: int, stage: Callable[[str], None]
) -> tuple[Any, Any]:
    """Generation `generation` of the engines, holding the rows `keep`, written and synced beside the current one."""
    from dse.engines.compact import compacted

    directory = Path(index.directory)
    vectors, text = engine_dirs(generation)
    engine = compacted(view.engine, keep, directory / vectors)
    stage("vectors")
    text_engine = engine if view.text_engine is view.engine else None
    if _text_side(view):
        text_engine = compacted(view.text_engine, keep, directory / text)
        stage("text")
    _fsync_dir(directory)  # the new directories' entries, before the commit names them
    stage("written")
    return engine, text_engine


def _mark_compacted(index: Any) -> None:
    """Format version 2 into the manifest (fsynced, renamed), before the switch names generation >= 1."""
    manifest = read_manifest(index.directory)
    if manifest.format_version != COMPACTED_FORMAT_VERSION:
        index.manifest = replace(manifest, format_version=COMPACTED_FORMAT_VERSION)
        write_manifest(index.directory, index.manifest)
        _fsync_dir(Path(index.directory))  # the rename, before the catalogue commits the switch


def _text_side(view: Any) -> bool:
    """True if the index has a BM25 text side of its own (not a `bm25` index, not an older index without one)."""
    return view.text_engine is not None and view.text_engine is not view.engine


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
