"""The rewriter registry: rewriters are chosen by an explicit name (`load_rewriter("prf")`)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from dse.rewrite.base import QueryRewriter

RewriterFactory = Callable[..., QueryRewriter]


@dataclass(frozen=True)
class RewriterSpec:
    """A registered rewriter: its name, what builds it, a one-line description."""

    name: str
    factory: RewriterFactory
    description: str


_REGISTRY: dict[str, RewriterSpec] = {}
_PROVIDERS = ("dse.rewrite.prf", "dse.rewrite.llm")  # modules whose import registers rewriters


def register_rewriter(name: str, description: str = "") -> Callable[[RewriterFactory], RewriterFactory]:
    """Register a factory (a class or function returning a `QueryRewriter`) under `name`."""

    def decorate(factory: RewriterFactory) -> RewriterFactory:
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"rewriter name {name!r} is already registered")
        _REGISTRY[name] = RewriterSpec(name, factory, description or (factory.__doc__ or "").strip().split("\n")[0])
        return factory

    return decorate


def _load_providers() -> None:
    for module in _PROVIDERS:
        importlib.import_module(module)


def available_rewriters() -> dict[str, str]:
    """Registered rewriter names and their descriptions."""
    _load_providers()
    return {name: spec.description for name, spec in sorted(_REGISTRY.items())}


def load_rewriter(name: str, **options: Any) -> QueryRewriter:
    """The rewriter registered as `name`, built with `options`.

    Raises:
        ValueError: no rewriter has this name (the message lists them).
        TypeError: an option the rewriter does not take.
    """
    _load_providers()
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ValueError(f"unknown rewriter {name!r}; use one of {', '.join(sorted(_REGISTRY))}")
    rewriter = spec.factory(**options)
    if not isinstance(rewriter, QueryRewriter):
        raise TypeError(f"rewriter {name!r} built a {type(rewriter).__name__}, not a QueryRewriter")
    return rewriter
