"""Append-only, crash-safe shard files shared by every search engine.

An engine directory holds numbered shards, ``shard-000001<suffix>``, ``shard-000002<suffix>``, ...
Each `save` appends one shard holding the rows added since the previous save. Every file is
written to a hidden temporary file, flushed, then `os.replace`d, so a crash leaves either the old
file or the new one. A shard counts as committed once its *marker* file exists (the last file the
engine writes for it). File names are relative, so the directory can be moved.

`load(directory, rows=n)` reads committed shards in order and keeps exactly the first `n` rows;
rows past `n` (left by an add that was interrupted before the catalogue committed it) are ignored,
and cleaned by the next `save` before it appends: later shards are deleted and the shard holding
row `n` is rewritten to its first rows. `load` itself never writes, so read-only indexes open.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, ClassVar, TypeVar

import numpy as np

from dse.engines.base import SearchEngine

_SHARD_RE = re.compile(r"^\.?shard-(\d{6})\.")
E = TypeVar("E", bound="ShardedEngine")


def shard_path(directory: Path, number: int, suffix: str) -> Path:
    """Path of shard `number` with `suffix` (e.g. ".npy") inside `directory`."""
    return Path(directory) / f"shard-{number:06d}{suffix}"


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` through a temporary file and `os.replace`, so readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def save_npy(path: Path, array: np.ndarray) -> None:
    """Atomically save one array as .npy (no pickles)."""
    atomic_write(path, lambda f: np.save(f, np.ascontiguousarray(array), allow_pickle=False))


def load_npy(path: Path) -> np.ndarray:
    """Memory-map a .npy file read-only."""
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def committed_shards(directory: Path, marker: str) -> list[int]:
    """Numbers of the committed shards in `directory` (marker file present), ascending."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    numbers = []
    for entry in directory.iterdir():
        m = _SHARD_RE.match(entry.name)
        if m and not entry.name.startswith(".") and entry.name == f"shard-{m.group(1)}{marker}":
            numbers.append(int(m.group(1)))
    return sorted(numbers)


def _same_directory(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


@dataclass
class _DiskState:
    """What this engine knows about its directory: committed rows and the last kept shard."""

    directory: Path
    rows: int  # rows of this engine that are on disk
    last: int  # number of the last shard holding kept rows (0: none)
    last_total: int  # rows that shard holds on disk (> its kept rows after a truncating load)
    last_kept: int  # rows of that shard this engine keeps
    clean: bool = False  # True once stray files past `last` were removed


class ShardedEngine(SearchEngine):
    """A `SearchEngine` whose `save`/`load` append and read numbered shards.

    Subclasses set `marker` (suffix of the file that commits a shard; written last) and implement
    the four shard hooks. Rows `[0, len(self))` are in memory (or memory-mapped); rows
    `[0, self._disk.rows)` are already on disk.
    """

    marker: ClassVar[str]

    def __init__(self) -> None:
        self._disk: _DiskState | None = None

    @abstractmethod
    def _read_shard(self, directory: Path, number: int, keep: int) -> int:
        """Append the first `keep` (>= 1) rows of shard `number`; return the rows it holds on disk."""

    @abstractmethod
    def _write_shard(self, directory: Path, number: int, start: int, stop: int) -> None:
        """Write rows `[start, stop)` as shard `number`, atomically, marker file last."""

    @abstractmethod
    def _truncate_shard(self, directory: Path, number: int, keep: int) -> None:
        """Rewrite shard `number` to its first `keep` rows, atomically (never invalid in between)."""

    def _saved(self, directory: Path, number: int, start: int, stop: int) -> None:
        """Called after rows `[start, stop)` were written as shard `number` (e.g. to memory-map them)."""

    def snapshot(self: E) -> E:
        """A copy that can be extended, added to and saved while this engine keeps serving searches.

        Copy-on-write: the containers of rows are copied, the rows themselves (memory-mapped
        shards, arrays never written in place) are shared. Searches on this engine stay valid and
        unchanged whatever is done to the copy; swap the copy in once it is ready.
        """
        clone = copy.copy(self)
        if self._disk is not None:
            clone._disk = dataclasses.replace(self._disk)
        clone._copy_containers()
        return clone

    def _copy_containers(self) -> None:
        """On a fresh `copy.copy`: replace every container that adds or loads mutate by a copy of it."""

    def prepare(self) -> None:
        """Build what the first search would build lazily (so it is not paid by a reader)."""

    def save(self, directory: Path) -> None:
        """Append the rows not yet on disk as one new shard (nothing when all rows are saved).

        Raises:
            ValueError: `directory` holds shards this engine was not loaded from.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self._disk is None or not _same_directory(self._disk.directory, directory):
            if committed_shards(directory, self.marker):
                raise ValueError(
                    f"{directory} already holds shards of another index; open it with "
                    f"{type(self).__name__}.load(directory, rows=...) to append to it"
                )
            self._disk = _DiskState(directory, rows=0, last=0, last_total=0, last_kept=0)
        disk = self._disk
        if not disk.clean:
            self._clean(disk)
        if len(self) > disk.rows:
            number = disk.last + 1
            start, stop = disk.rows, len(self)
            self._write_shard(directory, number, start, stop)
            disk.rows, disk.last, disk.last_total, disk.last_kept = stop, number, stop - start, stop - start
            self._saved(directory, number, start, stop)

    def _clean(self, disk: _DiskState) -> None:
        """Drop files past the kept rows (interrupted adds, temporary files) before appending."""
        for entry in sorted(disk.directory.iterdir(), reverse=True):
            m = _SHARD_RE.match(entry.name)
            if m and (entry.name.startswith(".") or int(m.group(1)) > disk.last):
                entry.unlink(missing_ok=True)
        if disk.last and disk.last_total > disk.last_kept:
            self._truncate_shard(disk.directory, disk.last, disk.last_kept)
            disk.last_total = disk.last_kept
        disk.clean = True

    @classmethod
    def load(cls: type[E], directory: Path, rows: int, **options: Any) -> E:
        """Open the shards under `directory`, keeping exactly the first `rows` rows.

        Raises:
            ValueError: fewer than `rows` rows are on disk, or a shard does not fit the options.
            FileNotFoundError: `directory` does not exist and `rows > 0`.
        """
        directory = Path(directory)
        if rows < 0:
            raise ValueError(f"rows must be >= 0, got {rows}")
        if rows > 0 and not directory.is_dir():
            raise FileNotFoundError(f"engine directory {directory} does not exist (expected {rows} rows)")
        engine = cls(**options)
        kept = last = last_total = last_kept = 0
        for number in committed_shards(directory, cls.marker):
            if kept == rows:
                break
            keep_at_most = rows - kept
            total = engine._read_shard(directory, number, keep_at_most)
            last, last_total, last_kept = number, total, min(total, keep_at_most)
            kept += last_kept
        if kept < rows:
            raise ValueError(f"{directory} holds {kept} rows on disk, expected {rows}: the index is damaged")
        engine._disk = _DiskState(directory, rows=rows, last=last, last_total=last_total, last_kept=last_kept)
        return engine

    def extend(self, rows: int) -> None:
        """Read rows `[len(self), rows)` that another writer committed since this engine was loaded.

        Rows committed later sit in shards numbered after the last one read (a shard holding rows
        past the kept ones is left by an interrupted add, and a writer rewrites it before adding).

        Raises:
            ValueError: the engine was not loaded from a directory, has unsaved rows, or fewer
                than `rows` rows are on disk.
        """
        disk = self._disk
        if rows <= len(self):
            return
        if disk is None or len(self) != disk.rows:
            raise ValueError(f"{type(self).__name__}: cannot extend an engine with unsaved rows")
        kept = disk.rows
        for number in committed_shards(disk.directory, self.marker):
            if number <= disk.last:
                continue
            if kept == rows:
                break
            total = self._read_shard(disk.directory, number, rows - kept)
            disk.last, disk.last_total, disk.last_kept = number, total, min(total, rows - kept)
            kept += disk.last_kept
        disk.rows, disk.clean = kept, False
        if kept < rows:
            raise ValueError(f"{disk.directory} holds {kept} rows on disk, expected {rows}: the index is damaged")


class SegmentedEngine(ShardedEngine):
    """A `ShardedEngine` holding its rows as a list of segments (in memory, or memory-mapped shards).

    Subclasses append to `_segments` / `_starts` (first row of each segment) and keep `_n` (rows)
    and `_dim` (vector width, None until known). After a save, the in-memory segments just written
    are swapped for memory maps of their shard.
    """

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        if dim is not None and (isinstance(dim, bool) or int(dim) != dim or dim < 1):
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self._dim: int | None = None if dim is None else int(dim)
        self._segments: list[Any] = []
        self._starts: list[int] = []  # first row of each segment
        self._n = 0

    @property
    def dim(self) -> int | None:
        """Token width (None until known)."""
        return self._dim

    def __len__(self) -> int:
        return self._n

    def _append(self, segment: Any) -> None:
        """Add a segment (anything with a `pages` count) after the last one; empty ones are dropped."""
        if segment.pages:
            self._segments.append(segment)
            self._starts.append(self._n)
            self._n += segment.pages

    def _copy_containers(self) -> None:
        self._segments, self._starts = list(self._segments), list(self._starts)

    def _saved(self, directory: Path, number: int, start: int, stop: int) -> None:
        """Swap the in-memory pages just saved for memory maps of their shard."""
        while self._segments and self._starts[-1] >= start:
            self._segments.pop()
            self._starts.pop()
        self._n = start
        self._read_shard(directory, number, stop - start)


def check_k(k: int) -> int:
    """Validate a search depth."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    return int(k)


def empty_result(n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Search result with no columns."""
    return np.zeros((n_queries, 0), np.float32), np.zeros((n_queries, 0), np.int64)


def merge_topk(
    best: tuple[np.ndarray, np.ndarray], scores: np.ndarray, first_row: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge a running top-k with the scores of rows `first_row...` (ties keep the lower row).

    Args:
        best: Running (scores (nq, k'), rows (nq, k')), all rows below `first_row`.
        scores: (nq, n_block) scores of rows `first_row .. first_row + n_block - 1`.
        first_row: Row number of the block's first column.
        k: Depth.
    """
    rows = np.arange(first_row, first_row + scores.shape[1], dtype=np.int64)  # (n_block,)
    return merge_topk_rows(best, scores, rows, k)


def merge_topk_rows(
    best: tuple[np.ndarray, np.ndarray], scores: np.ndarray, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge a running top-k with the scores of ascending `rows`, all above the running rows.

    Args:
        best: Running (scores (nq, k'), rows (nq, k')).
        scores: (nq, n_block) scores of `rows`.
        rows: int64 (n_block,) row numbers, ascending, each above every row in `best`.
        k: Depth.
    """
    from dse.engines.base import topk

    best_scores, best_rows = best
    block_rows = np.broadcast_to(rows.astype(np.int64), scores.shape)  # (nq, n_block)
    all_scores = np.concatenate([best_scores, scores.astype(np.float32)], axis=1)  # (nq, k' + n_block)
    all_rows = np.concatenate([best_rows, block_rows], axis=1)  # (nq, k' + n_block)
    top_scores, cols = topk(all_scores, k)  # (nq, k''), columns are in ascending row order
    return top_scores, np.take_along_axis(all_rows, cols, axis=1)


def check_allowed(allowed: np.ndarray | None, n_rows: int) -> np.ndarray | None:
    """Validate an `allowed` row mask: None (every row) or bool (n_rows,); None when all are True.

    Raises:
        ValueError: not a 1-D bool array with one entry per row.
    """
    if allowed is None:
        return None
    mask = np.asarray(allowed)
    if mask.dtype != np.bool_ or mask.ndim != 1:
        raise ValueError(f"allowed must be a 1-D bool array, got {mask.dtype} with shape {mask.shape}")
    if mask.shape[0] != n_rows:
        raise ValueError(f"allowed has {mask.shape[0]} entries, but the engine holds {n_rows} rows")
    return None if mask.all() else mask
