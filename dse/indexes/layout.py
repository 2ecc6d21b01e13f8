"""The index directory's layout: its subdirectory names, and loading its engines from them.

Shared by the read path (`dse.indexes.store`) and the write path (`dse.indexes.writer`); paths
are relative so the directory can be moved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dse.indexes.manifest import Manifest

DEFAULT_IMAGE_SIZE = 768
IMAGES_DIR = "images"
VECTORS_DIR = "vectors"
TEXT_DIR = "text"
LOCK_NAME = ".lock"


def load_engines(directory: Path, manifest: Manifest, rows: int) -> tuple[Any, Any]:
    """The index's engine and its BM25 text side, each holding exactly `rows` committed rows.

    Args:
        directory: The index directory.
        manifest: Its manifest (which engines, with which options).
        rows: The catalogue's row count (the commit point).

    Returns:
        (engine, text_engine); for an index built with `bm25` both are the same engine, and
        text_engine is None for an index written before the text side existed.
    """
    from dse.indexes.engines import engine_for

    engine = engine_for(manifest.kind, manifest.engine).load(directory / VECTORS_DIR, rows=rows, **dict(manifest.engine))
    if manifest.kind == "text":
        return engine, engine
    text_engine = None
    if "text" in manifest.store:
        text_engine = engine_for("text").load(directory / TEXT_DIR, rows=rows, **manifest.store["text"]["engine"])
    return engine, text_engine
