"""Which search engine stores which vector kind."""

from __future__ import annotations

import importlib

from dse.indexes.base import SearchEngine

_ENGINES = {
    "single": ("dse.indexes.flat", "FlatEngine"),
    "multi": ("dse.indexes.maxsim", "MaxSimEngine"),
    "text": ("dse.indexes.bm25", "BM25Engine"),
}


def engine_for(kind: str) -> type[SearchEngine]:
    """The engine class for an encoder's `kind`: "single" (FAISS), "multi" (MaxSim) or "text" (BM25).

    Raises:
        ValueError: `kind` is not one of the three.
    """
    try:
        module, name = _ENGINES[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown vector kind {kind!r}; expected one of {', '.join(_ENGINES)}") from None
    return getattr(importlib.import_module(module), name)
