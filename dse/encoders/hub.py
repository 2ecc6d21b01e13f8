"""Loading weights from a local directory or the Hugging Face Hub, with clear errors offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class ModelLoadError(RuntimeError):
    """Weights could not be loaded from a hub id or a local directory."""


def load_pretrained(loader: Callable[..., T], model: str, what: str, **kwargs: Any) -> T:
    """Call `loader(model, **kwargs)` (a `from_pretrained`), turning failures into a clear error.

    Args:
        loader: A `from_pretrained` function.
        model: Hub id or local directory.
        what: What is loaded, for the message ("model", "processor").
    """
    try:
        return loader(model, **kwargs)
    except (OSError, ValueError) as exc:
        if Path(model).exists():
            raise ModelLoadError(f"could not load the {what} from local directory {model!r}: {exc}") from exc
        raise ModelLoadError(
            f"could not load the {what} {model!r} from the Hugging Face Hub (no network, or not a model id). "
            f"On a machine with network run `huggingface-cli download {model} --local-dir DIR`, copy DIR here "
            f"and pass that local directory as model=DIR (CLI: --model DIR). Original error: {exc}"
        ) from exc


def model_revision(model: str, config: Any = None) -> str | None:
    """The commit hash of a hub checkpoint when transformers recorded it, else None."""
    rev = getattr(config, "_commit_hash", None) if config is not None else None
    return str(rev) if rev else None
