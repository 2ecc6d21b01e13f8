"""Loading weights from a local directory or the Hugging Face Hub, with clear errors offline.

Also the record of the hub models this user has named (`named_models`): every hub checkpoint
loaded through `load_pretrained` is noted in `named-models.json` under `$DSE_CACHE_DIR` (else
`~/.cache/dse`), so an index built here with a hub model reopens without asking again, while an
index from elsewhere that names a model never loaded on this machine needs the user's confirmation
(`dse.retrieve.lazy_encoder`).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")

NAMED_MODELS_FILE = "named-models.json"


class ModelLoadError(RuntimeError):
    """Weights could not be loaded from a hub id or a local directory."""


class ModelNotConfirmedError(ModelLoadError):
    """An index names a model the user has not named: dse neither downloads nor runs it unasked."""


def load_pretrained(loader: Callable[..., T], model: str, what: str, **kwargs: Any) -> T:
    """Call `loader(model, **kwargs)` (a `from_pretrained`), turning failures into a clear error.

    A hub id that loads is recorded as named by the user (`named_models`).

    Args:
        loader: A `from_pretrained` function.
        model: Hub id or local directory.
        what: What is loaded, for the message ("model", "processor").
    """
    try:
        loaded = loader(model, **kwargs)
    except (OSError, ValueError) as exc:
        if Path(model).exists():
            raise ModelLoadError(f"could not load the {what} from local directory {model!r}: {exc}") from exc
        raise ModelLoadError(
            f"could not load the {what} {model!r} from the Hugging Face Hub (no network, or not a model id). "
            f"On a machine with network run `huggingface-cli download {model} --local-dir DIR`, copy DIR here "
            f"and pass that local directory as model=DIR (CLI: --model DIR). Original error: {exc}"
        ) from exc
    if not Path(model).exists():
        record_named_model(model)
    return loaded


def model_revision(model: str, config: Any = None) -> str | None:
    """The commit hash of a hub checkpoint when transformers recorded it, else None.

    transformers 5 no longer sets `config._commit_hash`; `dse.encoders.identity.hub_snapshot`
    resolves the commit from the local cache instead.
    """
    rev = getattr(config, "_commit_hash", None) if config is not None else None
    return str(rev) if rev else None


def _named_models_path() -> Path:
    root = os.environ.get("DSE_CACHE_DIR") or Path.home() / ".cache" / "dse"
    return Path(root) / NAMED_MODELS_FILE


def named_models() -> frozenset[str]:
    """Hub ids loaded on this machine by name (an unreadable record counts as empty)."""
    try:
        data = json.loads(_named_models_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return frozenset()
    return frozenset(str(m) for m in data.get("models", [])) if isinstance(data, dict) else frozenset()


def record_named_model(model: str) -> None:
    """Add a hub id to `named_models` (best effort: a read-only cache is not an error)."""
    known = named_models()
    if model in known:
        return
    path = _named_models_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".named-models-", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"models": sorted(known | {model})}, fh, indent=1)
        os.replace(tmp, path)
    except OSError:
        pass
