"""Stored page images on disk: atomic writes, fsync before the commit, removal, orphan cleanup.

A page image is written to a temporary file and renamed into place (a reader never sees half an
image), and fsynced with its folder just before the catalogue transaction that names it, so a
committed row never names a lost file. The images of a source that fails or is interrupted are
removed by the run (`IndexWriter.discard_images`); a crash (`kill -9`, power loss) leaves
*orphans*, images no live row names, and the next indexing run removes them: every run holds a
shared lock on `.runs` and leaves a marker in `images/` until it ends cleanly, and a run that
starts with no other run active and finds a marker removes the orphans older than itself.
Only files dse names are ever removed: `<page id>.jpg` and its own `.img-*` temporary files.
"""

from __future__ import annotations

import os
import stat
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from dse.backends.records import NewSource, PageRecord
from dse.storage.layout import IMAGES_DIR, RUNS_NAME, UnsafeIndexPathError, check_images_folder, image_file, image_name
from dse.storage.lock import posix_locks

_TMP_PREFIX = ".img-"
_MARKER_PREFIX = ".run-"
_UMASK = os.umask(0o022)  # read once (os.umask can only be read by setting it), then put back
os.umask(_UMASK)


def write_image(directory: Path, name: str, image: Image.Image, size: int) -> None:
    """Write a page's stored copy (long side <= `size`) to `directory/name` atomically (temp file + rename)."""
    check_images_folder(directory)
    target = directory / name
    thumb = image.convert("RGB")
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".jpg", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would make it (mkstemp's are private: 0600)
        with os.fdopen(fd, "wb") as fh:
            thumb.save(fh, format="JPEG", quality=85)
        os.replace(tmp, target)  # replaces a symbolic link itself, never its target
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def store_page_image(directory: Path, store: dict[str, Any], page_id: str, image: Image.Image,
                     default_size: int) -> str | None:
    """Write a page's stored image at the index's `image_size` (`store`); its name, or None when none are kept.

    Raises:
        ValueError: `page_id` is not a page id (it names the file, so nothing else may).
    """
    size = int(store.get("image_size", default_size))
    if size <= 0:
        return None
    name = image_name(page_id)
    write_image(directory, name, image, size)
    return name


def check_new_sources(sources: Sequence[NewSource], vectors: Sequence[Any]) -> None:
    """Each source has one vector entry a page, and names its pages' images as the index names them.

    Raises:
        ValueError: naming the source's path.
    """
    if len(sources) != len(vectors):
        raise ValueError(f"{len(sources)} sources but {len(vectors)} vector groups")
    for src, vecs in zip(sources, vectors):
        if len(src.pages) != len(vecs):
            raise ValueError(f"{src.path}: {len(src.pages)} pages but {len(vecs)} vectors")
        for p in src.pages:
            if p.image is not None and p.image != image_name(p.page_id):
                raise ValueError(f"{src.path}: page {p.page_id!r} names the image {p.image!r}, "
                                 f"not {IMAGES_DIR}/<page id>.jpg")


def open_stored(directory: Path, rec: PageRecord) -> BinaryIO:
    """The stored JPEG of a catalogued page, opened for reading in binary (the caller closes it).

    Only `images/<page id>.jpg` inside the index is opened, never through a symbolic link.

    Raises:
        FileNotFoundError: images were not stored (image_size=0), or the file is missing.
        UnsafeIndexPathError: the page's row names another file, or the image or the images
            folder is a symbolic link (a hostile or damaged index).
    """
    page_id = rec.page_id
    path = image_file(directory, rec.row, rec.page_id, rec.image)
    if path is None:
        raise FileNotFoundError(f"{directory}: no stored image for page {page_id!r} (image_size=0)")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO must not block
    except FileNotFoundError:
        raise FileNotFoundError(f"{directory}: the stored image of page {page_id!r} ({rec.image}) "
                                f"is missing") from None
    except OSError as exc:  # ELOOP: a symbolic link
        raise UnsafeIndexPathError(
            f"{directory}: row {rec.row} (page {page_id!r}): {rec.image} is a symbolic link or not "
            f"a file ({exc.strerror}); dse reads no file outside the index") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeIndexPathError(f"{directory}: row {rec.row} (page {page_id!r}): {rec.image} is not "
                                   f"a regular file")
    return os.fdopen(fd, "rb")


def sync(directory: Path, names: Sequence[str | None]) -> None:
    """fsync the named images (relative to the index) and the images folder, before a commit names them.

    Raises:
        FileNotFoundError: an image about to be committed is missing (the commit must not name it).
    """
    names = [n for n in dict.fromkeys(names) if n]
    if not names:
        return
    for name in names:
        fd = os.open(directory / name, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fd = os.open(directory / IMAGES_DIR, os.O_RDONLY)
    try:
        os.fsync(fd)  # the renames that put them in place
    finally:
        os.close(fd)


def remove(paths: Sequence[Path | None]) -> None:
    """Unlink files (already checked to be images of the index); missing ones are fine."""
    for path in paths:
        if path is not None:
            path.unlink(missing_ok=True)


def clean_orphans(directory: Path, live: set[str], older_than: float) -> int:
    """Remove images no live row names, and dse's temporary files, modified before `older_than`.

    Args:
        directory: The index directory.
        live: Image names (`images/<page id>.jpg`) of the live rows.
        older_than: A time (epoch seconds): newer files are kept (another writer's, in flight).

    Returns:
        How many files were removed.
    """
    from ingest.page import is_page_id

    folder = directory / IMAGES_DIR
    if not folder.is_dir():
        return 0
    check_images_folder(directory)
    removed = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            temporary = name.startswith(_TMP_PREFIX)
            if not temporary and not (name.endswith(".jpg") and is_page_id(name[:-4])):
                continue  # not a file dse named: never touched
            if not temporary and f"{IMAGES_DIR}/{name}" in live:
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime >= older_than:
                    continue
                os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:
                continue
    return removed


def leave_marker(directory: Path) -> None:
    """Tell the next run that this one may leave orphan images (it cleans them up at its start)."""
    try:
        (directory / IMAGES_DIR / f"{_MARKER_PREFIX}{os.getpid()}-left-{time.time_ns()}").touch()
    except OSError:
        pass


class RunGuard:
    """Held by an indexing run; on entry, removes the orphan images that crashed runs left.

    Args:
        directory: The index directory (writable).
        live_images: Returns the image names of the live rows (read only when a cleanup runs).
    """

    def __init__(self, directory: Path, live_images: Callable[[], set[str]]) -> None:
        self.directory = Path(directory)
        self._live_images = live_images
        self._fh: Any = None
        self._marker: Path | None = None

    def __enter__(self) -> RunGuard:
        fcntl = posix_locks()
        started = time.time()
        folder = self.directory / IMAGES_DIR
        folder.mkdir(exist_ok=True)
        self._fh = open(self.directory / RUNS_NAME, "a")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another run is going on: its images are not orphans
            fcntl.flock(self._fh, fcntl.LOCK_SH)
        else:  # no run is going on: a marker left behind means a run died
            markers = [p for p in folder.iterdir() if p.name.startswith(_MARKER_PREFIX)]
            if markers:
                clean_orphans(self.directory, self._live_images(), started)
                remove(markers)
            fcntl.flock(self._fh, fcntl.LOCK_SH)
        self._marker = folder / f"{_MARKER_PREFIX}{os.getpid()}-{time.time_ns()}"
        self._marker.touch()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None and self._marker is not None:
            self._marker.unlink(missing_ok=True)  # left on failure: the next run checks for orphans
        self._fh.close()  # releases the lock
