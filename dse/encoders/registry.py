"""The encoder registry: models are chosen by an explicit name, never by matching model ids."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from dse.encoders.base import Encoder
from dse.extras import needs_extras

EncoderFactory = Callable[..., Encoder]


@dataclass(frozen=True)
class EncoderSpec:
    """A registered encoder: its name, what builds it, and a one-line description."""

    name: str
    factory: EncoderFactory
    description: str


_REGISTRY: dict[str, EncoderSpec] = {}

# Modules whose import registers encoders. Imported lazily, so `import dse` stays light.
_PROVIDERS = (
    "dse.encoders.qwen.dse_qwen2",
    "dse.encoders.qwen.qwen3_vl_embedding",
    "dse.encoders.qwen.gme_qwen2",
    "dse.encoders.colpali.col",
    "dse.encoders.colpali.bi",
    "dse.encoders.bm25",
    "dse.encoders.remote_code",
    "dse.testing.tiny",
)


def register_encoder(name: str, description: str = "") -> Callable[[EncoderFactory], EncoderFactory]:
    """Register a factory (a class or function returning an `Encoder`) under `name`.

    Example:
        >>> @register_encoder("my-encoder", "My model")
        ... class MyEncoder(Encoder): ...
    """

    def decorate(factory: EncoderFactory) -> EncoderFactory:
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"encoder name {name!r} is already registered")
        _REGISTRY[name] = EncoderSpec(name, factory, description or (factory.__doc__ or "").strip().split("\n")[0])
        return factory

    return decorate


def _load_providers() -> None:
    for module in _PROVIDERS:
        importlib.import_module(module)


def list_encoders() -> dict[str, EncoderSpec]:
    """All registered encoders, by name."""
    _load_providers()
    return dict(sorted(_REGISTRY.items()))


def load_encoder(name: str, **options: Any) -> Encoder:
    """Build the encoder registered as `name`.

    Args:
        name: Registry name, e.g. "dse-qwen2", "colqwen2", "bm25", "tiny-dse".
        **options: Passed to the encoder: `model` (hub id or local directory), `device`,
            `dtype`, `batch_size`, `dim`, `max_pixels`, ... where they apply.

    Raises:
        KeyError: `name` is not registered (the message lists the names that are).
        MissingExtraError: The encoder needs an extra that is not installed (the "visual" one for
            the visual encoders).
    """
    spec = _spec(name)
    options = {k: v for k, v in options.items() if v is not None}
    _check_options(spec, options)
    with needs_extras(f"the {name!r} encoder"):
        encoder = spec.factory(**options)
    encoder.name = name
    return encoder


def check_encoder_options(name: str, **options: Any) -> None:
    """Raise what `load_encoder(name, **options)` raises for an unknown name or option, building nothing."""
    _check_options(_spec(name), {k: v for k, v in options.items() if v is not None})


def _spec(name: str) -> EncoderSpec:
    """The registered encoder `name` (KeyError listing the registered names otherwise)."""
    _load_providers()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown encoder {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def _check_options(spec: EncoderSpec, options: dict[str, Any]) -> None:
    """Raise a clear ValueError for options the encoder does not take."""
    import inspect

    params = inspect.signature(spec.factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"encoder {spec.name!r} does not take option(s) {', '.join(unknown)}; it takes {', '.join(accepted)}"
        )
