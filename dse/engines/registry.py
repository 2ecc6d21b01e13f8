"""Which search engine stores which vector kind, and which engine mode serves it."""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from dse.engines.base import SearchEngine
from dse.extras import require

_ENGINES = {
    "single": ("dse.engines.flat.engine", "FlatEngine"),
    "multi": ("dse.engines.maxsim", "MaxSimEngine"),
    "text": ("dse.engines.bm25.engine", "BM25Engine"),
}
# engine options {"mode": ...} other than the default (exact) engine of a kind
_MODES = {
    ("multi", "cascade"): ("dse.engines.cascade.engine", "CascadeEngine"),
    ("single", "binary"): ("dse.engines.quantized.engine", "QuantizedFlatEngine"),
    ("single", "int8"): ("dse.engines.quantized.engine", "QuantizedFlatEngine"),
}
# the optional modules (the "visual" extra) each engine module needs
_NEEDS = {
    "dse.engines.flat.engine": ("faiss",),
    "dse.engines.cascade.engine": ("faiss", "numba", "scipy"),
    "dse.engines.quantized.engine": ("faiss", "numba"),
    "dse.engines.maxsim": ("numba",),  # its dense MaxSim lives with the numba kernels
}


def engine_for(kind: str, options: Mapping[str, Any] | None = None) -> type[SearchEngine]:
    """The engine class for an encoder's `kind` and the manifest's engine `options`.

    Without a "mode" option: "single" -> FAISS (exact, or HNSW with
    {"hnsw": True}), "multi" -> exact MaxSim, "text" -> BM25. Modes: "cascade" (multi: binary
    candidates + MaxSim rescoring), "binary" / "int8" (single: quantized scan + exact rescoring).

    Raises:
        ValueError: `kind` is not one of the three, or the mode does not exist for it.
        MissingExtraError: The engine needs the "visual" extra and it is not installed.
    """
    try:
        default = _ENGINES[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown vector kind {kind!r}; expected one of {', '.join(_ENGINES)}") from None
    mode = (options or {}).get("mode")
    if mode is None:
        module, name = default
    elif (kind, mode) in _MODES:
        module, name = _MODES[kind, mode]
    else:
        modes = [m for k, m in _MODES if k == kind]
        raise ValueError(
            f"unknown engine mode {mode!r} for {kind} vectors; expected one of {modes} (or no mode: exact search)"
        )
    require(_NEEDS.get(module, ()), f"searching {kind}-vector indexes" + (f" in {mode} mode" if mode else ""))
    return getattr(importlib.import_module(module), name)
