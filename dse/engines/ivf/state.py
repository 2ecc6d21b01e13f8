"""IVF state of an engine whose rows are segments: centroids, each segment's lists, and their files.

Files in the engine directory (all derived data, written atomically):

- ``ivf-centroids.npz``: the current centroids, float32 (n_lists, dim), and ``trained``, the rows
  the engine held when it trained them. Replacing it is the one atomic switch to new centroids:
  an engine that retrains (`SegmentLists.retrain`, each time the index doubles past ``trained``)
  writes every shard's list file for the new centroids first, then this file (`commit`), so a
  crash in between leaves the old centroids and their list files, searched correctly.
  ``ivf-centroids.npy`` (centroids only) is the file of indexes saved before retraining
  existed: read when the ``.npz`` is absent, as trained on ``TRAIN_ROWS_PER_LIST * n_lists`` rows.
- ``shard-NNNNNN.lists-<fingerprint>.npy``: int32 (rows,), the list of each row of a shard. The
  fingerprint names the centroids the labels were computed with, so a list file never describes
  other centroids. A new shard's list file is written before its commit marker; shards saved
  before training get theirs at the first save after it.

Files of other centroids than the current ones (and the old ``.npy``) are removed by the next
save, not by the save that switches: a reader that read the old centroids still finds their
list files. Anything missing, stale or unreadable is recomputed in memory (and rewritten by the
next save), so a crash at any point never loses or corrupts a row.
"""

from __future__ import annotations

import copy
import hashlib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dse.engines.files import atomic_write, load_npy, save_npy, shard_path
from dse.engines.ivf import lists as ivf

CENTROIDS_FILE = "ivf-centroids.npz"
LEGACY_CENTROIDS_FILE = "ivf-centroids.npy"  # indexes saved before retraining: centroids only


def fingerprint(centroids: np.ndarray) -> str:
    """Short hex digest of the centroids' bytes (names the list files computed with them)."""
    return hashlib.blake2b(np.ascontiguousarray(centroids).tobytes(), digest_size=6).hexdigest()


def lists_path(directory: Path, number: int, tag: str) -> Path:
    """Path of shard `number`'s list file for the centroids with fingerprint `tag`."""
    return shard_path(directory, number, f".lists-{tag}.npy")


def load_centroids(directory: Path, n_lists: int, dim: int | None) -> tuple[np.ndarray, int] | None:
    """The centroids saved in `directory` and the rows they were trained on, or None when absent or
    unreadable (derived data: retrained).

    Raises:
        ValueError: the file holds centroids of another shape than (n_lists, dim).
    """
    path = Path(directory) / CENTROIDS_FILE
    try:
        with np.load(path, allow_pickle=False) as saved:
            arr, trained = np.array(saved["centroids"]), int(saved["trained"])  # (n_lists, dim)
    except FileNotFoundError:
        path = Path(directory) / LEGACY_CENTROIDS_FILE
        try:
            arr, trained = np.array(load_npy(path)), ivf.TRAIN_ROWS_PER_LIST * n_lists
        except (OSError, ValueError):
            return None
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
        return None
    if arr.ndim != 2 or arr.dtype != np.float32 or not np.isfinite(arr).all():
        return None
    if arr.shape[0] != n_lists or (dim is not None and arr.shape[1] != dim):
        raise ValueError(
            f"{path} holds {arr.shape[0]} centroids of dim {arr.shape[1]}, but the index expects "
            f"n_lists={n_lists}, dim={dim}; delete the file (derived data) to retrain"
        )
    return arr, trained


def save_centroids(directory: Path, centroids: np.ndarray, trained: int) -> None:
    """Atomically replace the directory's centroids (the switch to them)."""
    atomic_write(Path(directory) / CENTROIDS_FILE,
                 lambda f: np.savez(f, centroids=centroids, trained=np.int64(trained)))


def load_lists(directory: Path, number: int, tag: str, keep: int, n_lists: int) -> np.ndarray | None:
    """The first `keep` list labels of shard `number`, or None when missing, short or invalid."""
    try:
        arr = load_npy(lists_path(directory, number, tag))
    except (OSError, ValueError):
        return None
    if arr.ndim != 1 or arr.dtype != np.int32 or len(arr) < keep:
        return None
    labels = np.array(arr[:keep])  # (keep,)
    if keep and (labels.min() < 0 or labels.max() >= n_lists):
        return None
    return labels


def remove_stale(directory: Path, tag: str) -> None:
    """Delete list files of other centroids than `tag`'s, the old-format centroids once the new file
    exists, and temporary centroid files left by a crash."""
    for path in Path(directory).glob("shard-*.lists-*.npy"):
        if not path.name.endswith(f".lists-{tag}.npy"):
            path.unlink(missing_ok=True)
    if (Path(directory) / CENTROIDS_FILE).exists():
        (Path(directory) / LEGACY_CENTROIDS_FILE).unlink(missing_ok=True)
    for name in (CENTROIDS_FILE, LEGACY_CENTROIDS_FILE):
        for path in Path(directory).glob(f".{name}.*.tmp"):
            path.unlink(missing_ok=True)


@dataclass
class _Shard:
    """Where a segment is saved, and whether a valid list file for the current centroids is there."""

    directory: Path
    number: int
    listed: bool = False


def _same(a: Path, b: Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


class SegmentLists:
    """Centroids (None until trained) and the int32 list labels of every segment, in row order.

    The engine appends and pops segments in step with its own; each call passes the float
    vectors of every segment (memory-mapped or in memory) so that labels can be recomputed.

    Args:
        n_lists: Number of lists (> 0).
    """

    def __init__(self, n_lists: int) -> None:
        self.n_lists = n_lists
        self.centroids: np.ndarray | None = None  # float32 (n_lists, dim)
        self.tag = ""  # fingerprint of the centroids
        self.trained = 0  # rows the engine held when the centroids were trained
        self.labels: list[np.ndarray] = []  # int32 (rows_i,) per segment (empty before training)
        self._shards: list[_Shard | None] = []
        self._switch = False  # the centroids are not (yet) the directory's: `commit` writes them

    def append(self, vectors: np.ndarray, shard: tuple[Path, int] | None = None) -> None:
        """Add a segment: read its labels from shard (directory, number)'s list file, or assign them."""
        labels = None
        if self.centroids is not None and shard is not None:
            labels = load_lists(shard[0], shard[1], self.tag, len(vectors), self.n_lists)
        if shard is not None:
            self._shards.append(_Shard(Path(shard[0]), shard[1], listed=labels is not None))
        else:
            self._shards.append(None)
        if self.centroids is not None and labels is None:
            labels = ivf.assign(vectors, self.centroids)  # (rows,)
        self.labels.append(np.zeros(0, np.int32) if labels is None else labels)

    def copy(self) -> "SegmentLists":
        """A copy whose appends, pops and saves leave this one unchanged (label arrays shared)."""
        other = copy.copy(self)
        other.labels = list(self.labels)
        other._shards = [None if s is None else copy.copy(s) for s in self._shards]
        return other

    def pop(self) -> None:
        """Drop the last segment."""
        self.labels.pop()
        self._shards.pop()

    def all_labels(self) -> np.ndarray:
        """List of every row: int32 (n,)."""
        return np.concatenate(self.labels) if self.labels else np.zeros(0, np.int32)

    def adopt(self, centroids: np.ndarray, trained: int, vectors: list[np.ndarray], directory: Path | None) -> None:
        """Use `centroids` (trained on `trained` rows); each segment reads its list file from `directory`
        or is assigned."""
        self.centroids, self.tag, self.trained = centroids, fingerprint(centroids), int(trained)
        for i, (rows, shard) in enumerate(zip(vectors, self._shards)):
            labels = None
            if shard is not None and directory is not None and _same(shard.directory, directory):
                labels = load_lists(directory, shard.number, self.tag, len(rows), self.n_lists)
            if shard is not None:
                shard.listed = labels is not None
            self.labels[i] = ivf.assign(rows, centroids) if labels is None else labels

    def adopt_saved(self, directory: Path, dim: int | None, vectors: list[np.ndarray]) -> bool:
        """Adopt the centroids saved in `directory` if there are any (and none are held); True if held after."""
        if self.centroids is None:
            saved = load_centroids(directory, self.n_lists, dim)
            if saved is not None:
                self.adopt(saved[0], saved[1], vectors, directory)
        return self.centroids is not None

    def follow(self, directory: Path, dim: int | None, vectors: list[np.ndarray]) -> bool:
        """Adopt the directory's centroids when another writer switched to newer ones; True if adopted."""
        saved = load_centroids(directory, self.n_lists, dim)
        if saved is None or fingerprint(saved[0]) == self.tag or saved[1] < self.trained:
            return False
        self.adopt(saved[0], saved[1], vectors, directory)
        return True

    def train(self, n_rows: int, gather: Callable[[np.ndarray], np.ndarray], vectors: list[np.ndarray],
              directory: Path | None, dim: int) -> None:
        """Adopt `directory`'s centroids, or train on a seeded sample (`gather(rows)` -> float32 (m, dim))."""
        if directory is not None and self.adopt_saved(directory, dim, vectors):
            return
        self.retrain(n_rows, gather, vectors)

    def due(self, n_rows: int) -> bool:
        """True when an index of `n_rows` rows has doubled past the rows the centroids were trained on."""
        return self.centroids is not None and n_rows >= 2 * self.trained

    def retrain(self, n_rows: int, gather: Callable[[np.ndarray], np.ndarray], vectors: list[np.ndarray]) -> None:
        """Train new centroids on a seeded uniform sample of all `n_rows` rows and re-assign every segment."""
        sample = gather(ivf.training_sample(n_rows, self.n_lists))  # (m, dim)
        self.adopt(ivf.train_centroids(sample, self.n_lists), n_rows, vectors, None)

    def save(self, directory: Path, dim: int | None, vectors: list[np.ndarray]) -> None:
        """Before a new shard: remove the files of earlier centroids (`remove_stale`), and write the list
        files missing for the centroids held; `commit` switches the directory to them after the shard.
        The directory's centroids win over ones trained on no more rows."""
        if self.centroids is None:
            return
        saved = load_centroids(directory, self.n_lists, dim)
        if saved is not None and fingerprint(saved[0]) != self.tag and saved[1] >= self.trained:
            self.adopt(saved[0], saved[1], vectors, directory)
        self._switch = saved is None or fingerprint(saved[0]) != self.tag
        remove_stale(directory, fingerprint(saved[0]) if saved is not None else self.tag)
        for labels, shard in zip(self.labels, self._shards):
            if shard is not None and (self._switch or not shard.listed) and _same(shard.directory, directory):
                save_npy(lists_path(directory, shard.number, self.tag), labels)
                shard.listed = True

    def write(self, directory: Path, number: int, labels: np.ndarray) -> None:
        """Write a new shard's list file (before its commit marker); nothing before training."""
        if self.centroids is not None:
            save_npy(lists_path(directory, number, self.tag), labels)

    def commit(self, directory: Path) -> None:
        """After `save` (and the shard): the atomic switch of the directory to the centroids held."""
        if self.centroids is not None and self._switch:
            save_centroids(directory, self.centroids, self.trained)
            self._switch = False
