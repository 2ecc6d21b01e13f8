"""Append-only, crash-safe shards shared by every search engine: `ShardedEngine` and `SegmentedEngine`.

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
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from dse.engines.base import SearchEngine
from dse.engines.files import SHARD_RE, committed_shards

E = TypeVar("E", bound="ShardedEngine")


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
            m = SHARD_RE.match(entry.name)
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
