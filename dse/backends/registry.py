"""Which class serves an index backend by name: the embedded index directory, or Qdrant."""

from __future__ import annotations

import importlib
from pathlib import Path

from dse.backends.base import IndexBackend

DEFAULT_BACKEND = "directory"
_BACKENDS = {
    "directory": ("dse.storage.page_index", "PageIndex"),  # manifest, catalogue, images and engine shards on disk
    "qdrant": ("dse.backends.qdrant.backend", "QdrantIndex"),  # manifest and images on disk, vectors in Qdrant
}


def backend_class(name: str = DEFAULT_BACKEND) -> type[IndexBackend]:
    """The `IndexBackend` class registered under `name`.

    Raises:
        ValueError: no backend has this name.
    """
    try:
        module, attr = _BACKENDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown index backend {name!r}; expected one of {', '.join(_BACKENDS)}") from None
    return getattr(importlib.import_module(module), attr)


def backend_name(directory: str | Path) -> str:
    """The backend an index directory's manifest names (`store.backend`; none: the embedded one).

    Raises:
        IndexFormatError: not an index (no readable manifest).
    """
    from dse.storage.manifest import read_manifest

    return str(read_manifest(Path(directory).expanduser()).store.get("backend") or DEFAULT_BACKEND)


def open_backend(directory: str | Path, read_only: bool | None = None) -> IndexBackend:
    """Open an index with the backend its manifest names."""
    return backend_class(backend_name(directory)).open(directory, read_only=read_only)


def index_exists(directory: str | Path) -> bool:
    """True if `directory` holds an index of any backend (it has a manifest)."""
    return (Path(directory).expanduser() / "manifest.json").is_file()
