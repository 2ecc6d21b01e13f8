"""Registered tiny encoders (`tiny-dse`, `tiny-colqwen2`, ...): random weights, built offline.

Each name builds its tiny checkpoint once into a cache directory (`$DSE_CACHE_DIR`, else
`~/.cache/dse`) and loads it through the same `load_encoder(family, model=dir)` path a real
checkpoint takes, so the CLI, notebooks and tests run end to end with no download. The vectors
are deterministic (seeded) but meaningless: use them to exercise the pipeline, not to rank.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from dse.encoders.base import Encoder
from dse.encoders.registry import register_encoder

# bump when a builder changes, so stale caches are rebuilt
TINY_VERSION = "1"

# registry name -> (family registry name, builder "module:function", extra options)
TINY_MODELS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "tiny-dse": ("dse-qwen2", "dse.testing.tiny_dse:build_tiny_dse", {"dim": "hidden"}),
    "tiny-colqwen2": ("colqwen2", "dse.testing.tiny_colpali:build_tiny_colqwen2", {}),
    "tiny-colqwen2.5": ("colqwen2.5", "dse.testing.tiny_colpali:build_tiny_colqwen2_5", {}),
    "tiny-colpali": ("colpali", "dse.testing.tiny_colpali:build_tiny_colpali", {}),
    "tiny-colsmol": ("colsmol", "dse.testing.tiny_colpali:build_tiny_colsmol", {}),
    "tiny-colqwen3": ("colqwen3", "dse.testing.tiny_colqwen3:build_tiny_colqwen3", {}),
    "tiny-colqwen3.5": ("colqwen3.5", "dse.testing.tiny_colqwen3:build_tiny_colqwen3_5", {}),
    "tiny-colgemma3": ("colgemma3", "dse.testing.tiny_colgemma3:build_tiny_colgemma3", {}),
    "tiny-colmodernvbert": ("colmodernvbert", "dse.testing.tiny_colmodernvbert:build_tiny_colmodernvbert", {}),
    "tiny-bipali": ("bipali", "dse.testing.tiny_colpali:build_tiny_bipali", {}),
    "tiny-biqwen2": ("biqwen2", "dse.testing.tiny_colpali:build_tiny_biqwen2", {}),
    "tiny-biqwen2.5": ("biqwen2.5", "dse.testing.tiny_colpali:build_tiny_biqwen2_5", {}),
    "tiny-biqwen3": ("biqwen3", "dse.testing.tiny_colqwen3:build_tiny_biqwen3", {}),
    "tiny-biqwen3.5": ("biqwen3.5", "dse.testing.tiny_colqwen3:build_tiny_biqwen3_5", {}),
    "tiny-bigemma3": ("bigemma3", "dse.testing.tiny_colgemma3:build_tiny_bigemma3", {}),
    "tiny-bimodernvbert": ("bimodernvbert", "dse.testing.tiny_colmodernvbert:build_tiny_bimodernvbert", {}),
    "tiny-biidefics3": ("biidefics3", "dse.testing.tiny_colpali:build_tiny_biidefics3", {}),
    "tiny-qwen3-vl-embedding": ("qwen3-vl-embedding", "dse.testing.tiny_qwen3vl:build_tiny_qwen3vl_embedding", {}),
    "tiny-gme": ("gme-qwen2", "dse.testing.tiny_dse:build_tiny_gme", {}),
    "tiny-jina-v4": ("jina-v4", "dse.testing.tiny_jina:build_tiny_jina_v4", {}),
    "tiny-jina-v4-multi": ("jina-v4-multi", "dse.testing.tiny_jina:build_tiny_jina_v4", {}),
}


def cache_dir() -> Path:
    """Where tiny checkpoints are cached."""
    root = os.environ.get("DSE_CACHE_DIR") or Path.home() / ".cache" / "dse"
    return Path(root) / "tiny"


def tiny_checkpoint(name: str) -> Path:
    """The directory of the tiny checkpoint registered as `name`, built on first use."""
    _, builder_ref, _ = TINY_MODELS[name]
    target = cache_dir() / f"{name}-v{TINY_VERSION}"
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time (parallel tests, notebooks)
        if (target / ".complete").exists():
            return target
        module, func = builder_ref.split(":")
        build = getattr(importlib.import_module(module), func)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            build(tmp, seed=0)
            (tmp / ".complete").write_text(TINY_VERSION)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load_tiny(name: str, model: str | None = None, **options: Any) -> Encoder:
    from dse.encoders.registry import load_encoder

    family, _, extra = TINY_MODELS[name]
    label = tiny_label(name)
    builtin = model is None or model == label
    path = tiny_checkpoint(name) if builtin else Path(model)
    if extra.get("dim") == "hidden" and "dim" not in options:
        from dse.testing.tiny_dse import TINY_DSE_HIDDEN

        options["dim"] = TINY_DSE_HIDDEN
    encoder = load_encoder(family, model=str(path), **options)
    if builtin:
        encoder.model_label = label  # portable: the manifest does not name this machine's cache
    return encoder


def tiny_label(name: str) -> str:
    """The model id recorded in manifests for a built-in tiny checkpoint."""
    return f"tiny://{name}-v{TINY_VERSION}"


def _register(name: str) -> None:
    family = TINY_MODELS[name][0]

    def factory(**options: Any) -> Encoder:
        return _load_tiny(name, **options)

    factory.__name__ = f"load_{name.replace('-', '_').replace('.', '_')}"
    register_encoder(name, f"{family} with tiny random weights (offline tests and demos)")(factory)


for _name in TINY_MODELS:
    _register(_name)
