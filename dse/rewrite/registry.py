"""The rewriter registry: rewriters are chosen by an explicit name (`load_rewriter("prf")`)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

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


def rewriter_parameters(name: str) -> frozenset[str]:
    """The keyword options the rewriter registered as `name` takes (ValueError: unknown name)."""
    import inspect

    _load_providers()
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ValueError(f"unknown rewriter {name!r}; use one of {', '.join(sorted(_REGISTRY))}")
    params = inspect.signature(spec.factory).parameters.values()
    return frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def load_rewriters(names: Sequence[str], options: Mapping[str, Any] | None = None) -> dict[str, QueryRewriter]:
    """The rewriters `names`, each built with the `options` it takes (a server's or a command's set).

    Each option goes to every named rewriter whose factory takes it (`model` and `url` to `llm`,
    `fb_docs` to `prf`, `max_new_tokens` to `llm`, ...).

    Raises:
        ValueError: an unknown name, a name given twice, or an option none of them takes.
    """
    options = dict(options or {})
    taken = check_rewriters(names, options)
    return {name: load_rewriter(name, **{k: v for k, v in options.items() if k in taken[name]}) for name in names}


def check_rewriters(names: Sequence[str], options: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """Each name's options, after checking the names exist and every option has a taker (ValueError)."""
    if len(set(names)) != len(names):
        raise ValueError(f"a rewriter is named twice: {', '.join(names)}")
    taken = {name: rewriter_parameters(name) for name in names}
    unused = sorted(set(options) - set().union(*taken.values())) if taken else sorted(options)
    if unused:
        raise ValueError(f"rewriter option(s) {', '.join(unused)} are taken by none of "
                         f"{', '.join(names) or '(no rewriter named)'}")
    return taken
