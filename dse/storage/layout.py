"""The index directory's layout: names, the files its rows may name, source identity, loading engines.

Shared by the read path (`dse.storage.page_index`) and the write path (`dse.storage.writer`); paths
are relative so the directory can be moved.

An index may come from elsewhere (downloaded, copied from another machine), so nothing read from
it becomes a path outside it: a page's stored image is always `images/<page id>.jpg`, the page id
checked against the format `ingest.page.make_page_id` produces, inside an `images` folder that is
a real folder of the index; a row naming anything else is refused (`UnsafeIndexPathError`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from dse.storage.manifest import IndexFormatError, Manifest

IMAGES_DIR = "images"
VECTORS_DIR = "vectors"
TEXT_DIR = "text"
LOCK_NAME = ".lock"
RUNS_NAME = ".runs"  # held shared by every indexing run, exclusively by the orphan-image cleaner
# the engines' directories of each generation: `vectors`, `text` until the first compaction, then
# `vectors.N`, `text.N` (the catalogue records N: `Catalogue.generation`)
GENERATION_DIR = re.compile(rf"^({VECTORS_DIR}|{TEXT_DIR})(?:\.([1-9][0-9]*))?$")
# A page id names its image file: `ingest.page.make_page_id`'s format, or (pages given through the
# low-level API) a plain file name: no separator, no leading dot, so never `..` or a hidden file.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class UnsafeIndexPathError(IndexFormatError):
    """A catalogue row names a file that is not `images/<page id>.jpg` inside the index: refused."""


class ReadOnlyIndexError(IndexFormatError):
    """A write to an index opened read-only (read-only media, or `read_only=True`)."""


def names_a_file(page_id: object) -> bool:
    """True if `page_id` may name an image file: make_page_id's format, or a plain file name."""
    from ingest.page import is_page_id

    return is_page_id(page_id) or (isinstance(page_id, str) and _PLAIN_NAME.fullmatch(page_id) is not None)


def image_name(page_id: str) -> str:
    """The stored image of a page, relative to the index (ValueError for a page id that is not a plain name)."""
    if not names_a_file(page_id):
        raise ValueError(f"page id {page_id!r} cannot name a file: expected <16 hex>-p<5+ digits> (make_page_id) "
                         f"or a plain name of letters, digits, '_', '.', '-'")
    return f"{IMAGES_DIR}/{page_id}.jpg"


def image_file(directory: str | Path, row: int, page_id: str, image: str | None) -> Path | None:
    """The file a catalogue row's image names, checked to be `images/<page_id>.jpg` in the index.

    Args:
        directory: The index directory.
        row: The row (for the error message).
        page_id: The row's page id.
        image: The row's `image` column (None: no image stored).

    Returns:
        The path (not followed: the caller opens it with O_NOFOLLOW or unlinks it), or None.

    Raises:
        UnsafeIndexPathError: the id or the name is malformed, or the images folder is a
            symbolic link (or anything but a folder) out of the index.
    """
    if image is None:
        return None
    directory = Path(directory)
    if not names_a_file(page_id) or image != f"{IMAGES_DIR}/{page_id}.jpg":
        raise UnsafeIndexPathError(
            f"{directory}: row {row} (page {page_id!r}) names the image {image!r}, not "
            f"{IMAGES_DIR}/<page id>.jpg; dse reads and deletes no file outside the index. The catalogue "
            f"was edited or damaged: rebuild the index from its sources")
    return check_images_folder(directory, f"row {row}, page {page_id!r}") / f"{page_id}.jpg"


def check_images_folder(directory: str | Path, what: str = "") -> Path:
    """The index's `images` folder, checked not to lead out of the index (UnsafeIndexPathError)."""
    directory = Path(directory)
    folder = directory / IMAGES_DIR
    if os.path.realpath(folder) != os.path.join(os.path.realpath(directory), IMAGES_DIR):
        raise UnsafeIndexPathError(
            f"{directory}: {IMAGES_DIR}/ is a symbolic link out of the index{f' ({what})' if what else ''}; dse "
            f"writes, reads and deletes no file outside the index: make it a real folder or rebuild the index")
    return folder


def source_key(source: str | os.PathLike[str]) -> str:
    """The identity of a source: an http(s) URL as given; a file's resolved absolute path (`~` expanded).

    The same file reached by another spelling (relative or absolute, from another directory,
    through a symbolic link) has the same key.
    """
    from ingest.web.safety import is_url

    text = os.fspath(source)
    if is_url(text):
        return text
    return os.path.realpath(os.path.expanduser(text))


def source_spellings(source: str | os.PathLike[str]) -> list[str]:
    """Paths a catalogue may hold a source under, its key first.

    Indexes written before sources were keyed by resolved path hold the path as typed (relative
    ones relative to the directory `dse index` ran in): the path as given (normalised), its
    absolute form, and the key relative to the current directory are tried after the key.
    """
    key = source_key(source)
    text = os.fspath(source)
    if key == text and "://" in text:
        return [key]
    given = os.path.normpath(os.path.expanduser(text))
    spellings = [key, given, os.path.abspath(given), os.path.relpath(key), os.path.relpath(os.path.abspath(given))]
    return list(dict.fromkeys(spellings))


def media_read_only(directory: str | Path) -> bool:
    """True if the index directory cannot be written (read-only mount, or no write permission).

    A read-only mount is detected for every user (statvfs); permissions only for non-root users
    (root writes whatever the mode bits say).
    """
    directory = Path(directory)
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        pass
    catalogue = directory / "catalogue.sqlite"
    return not os.access(directory, os.W_OK) or (catalogue.exists() and not os.access(catalogue, os.W_OK))


def engine_dirs(generation: int) -> tuple[str, str]:
    """The (vectors, text) directory names of an engine generation (0: never compacted)."""
    if generation == 0:
        return VECTORS_DIR, TEXT_DIR
    return f"{VECTORS_DIR}.{generation}", f"{TEXT_DIR}.{generation}"


def load_engines(directory: Path, manifest: Manifest, rows: int, generation: int = 0) -> tuple[Any, Any]:
    """The index's engine and its BM25 text side, each holding exactly `rows` committed rows.

    Args:
        directory: The index directory.
        manifest: Its manifest (which engines, with which options).
        rows: The catalogue's row count (the commit point).
        generation: The catalogue's engine generation (`engine_dirs`).

    Returns:
        (engine, text_engine); for an index built with `bm25` both are the same engine, and
        text_engine is None for an index written before the text side existed.
    """
    from dse.engines.registry import engine_for

    vectors, text = engine_dirs(generation)
    engine = engine_for(manifest.kind, manifest.engine).load(directory / vectors, rows=rows, **dict(manifest.engine))
    if manifest.kind == "text":
        return engine, engine
    text_engine = None
    if "text" in manifest.store:
        text_engine = engine_for("text").load(directory / text, rows=rows, **manifest.store["text"]["engine"])
    return engine, text_engine
