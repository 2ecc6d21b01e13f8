"""The files of an engine directory: numbered shard names, atomic writes, memory-mapped arrays."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import IO, Callable

import numpy as np

SHARD_RE = re.compile(r"^\.?shard-(\d{6})\.")  # a shard's file (or its hidden temporary file)


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
        m = SHARD_RE.match(entry.name)
        if m and not entry.name.startswith(".") and entry.name == f"shard-{m.group(1)}{marker}":
            numbers.append(int(m.group(1)))
    return sorted(numbers)
