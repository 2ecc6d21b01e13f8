"""Tiny random checkpoints of every model family, built offline for tests and examples.

Import the builders from their modules (`dse.testing.tiny_dse.build_tiny_dse`, ...); the names
below are also reachable here, loaded lazily so `import dse.testing` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "build_tiny_dse": "dse.testing.tiny_dse",
    "TINY_DSE_HIDDEN": "dse.testing.tiny_dse",
    "build_tiny_colqwen2": "dse.testing.tiny_colpali",
    "build_tiny_colqwen2_5": "dse.testing.tiny_colpali",
    "build_tiny_colpali": "dse.testing.tiny_colpali",
    "build_tiny_colsmol": "dse.testing.tiny_colpali",
    "build_tiny_causal_lm": "dse.testing.tiny_lm",
    "tiny_checkpoint": "dse.testing.tiny",
    "TINY_MODELS": "dse.testing.tiny",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
