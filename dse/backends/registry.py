"""Which class serves an index backend by name (the embedded index directory, today the only one)."""

from __future__ import annotations

import importlib

from dse.backends.base import IndexBackend

DEFAULT_BACKEND = "directory"
_BACKENDS = {
    "directory": ("dse.storage.page_index", "PageIndex"),  # manifest, catalogue, images and engine shards on disk
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
