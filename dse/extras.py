"""The optional parts of dse (pip extras) and the error raised when one is not installed.

`pip install dse-search` is the core: PDFs, office documents and images, BM25, the CLI, the
HTTP and MCP servers, evaluation on local test sets. The rest comes with extras, e.g.
`pip install 'dse-search[visual]'`:

- `visual`: the visual encoders (torch, transformers, colpali-engine, ...) and their engines
  (FAISS, the numba kernels of the cascade and the quantized engines);
- `web`: web pages (Playwright driving Chromium);
- `vidore`: ViDoRe test sets (the Hugging Face `datasets` library);
- `mteb`: ViDoRe through mteb's own tasks; `qdrant`: the Qdrant backend's clients;
- `notebooks`, `test`, and `all` (everything).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

DISTRIBUTION = "dse-search"
"""The name dse is installed by (`pip install dse-search`); the import packages are `dse` and `ingest`."""

EXTRA_OF: dict[str, str] = {
    "torch": "visual",
    "torchvision": "visual",
    "transformers": "visual",
    "colpali_engine": "visual",
    "peft": "visual",
    "qwen_vl_utils": "visual",
    "faiss": "visual",
    "numba": "visual",
    "scipy": "visual",
    "playwright": "web",
    "datasets": "vidore",
    "mteb": "mteb",
    "qdrant_client": "qdrant",
    "qdrant_edge": "qdrant",
}
"""The extra that installs each optional top-level module."""


def install_command(extra: str) -> str:
    """The command that installs `extra`, e.g. `pip install 'dse-search[visual]'`."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


class MissingExtraError(ImportError):
    """A feature needs an extra that is not installed; the message names it and how to install it.

    Attributes:
        extra: The extra to install ("visual", "web", ...).
        module: The missing module.
    """

    def __init__(self, what: str, module: str) -> None:
        self.extra = EXTRA_OF[module]
        self.module = module
        super().__init__(
            f"{what} needs the {self.extra!r} extra ({module} is not installed): {install_command(self.extra)}",
            name=module,
        )


def require(modules: Iterable[str], what: str) -> None:
    """Raise `MissingExtraError` for the first of `modules` that is not installed (nothing is imported).

    Args:
        modules: Top-level module names, keys of `EXTRA_OF`.
        what: What needs them, for the message ("searching single-vector indexes").
    """
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken or half-imported package: let its import say why
            found = True
        if not found:
            raise MissingExtraError(what, module)


@contextmanager
def needs_extras(what: str) -> Iterator[None]:
    """Turn a `ModuleNotFoundError` for a module an extra installs into a `MissingExtraError` naming it.

    Args:
        what: What runs in the block, for the message ("the 'dse-qwen2' encoder").
    """
    try:
        yield
    except MissingExtraError as exc:  # raised by a nested block (a tiny encoder loading its family's): name this one
        raise MissingExtraError(what, exc.module) from exc
    except ModuleNotFoundError as exc:
        module = (exc.name or "").split(".")[0]
        if module not in EXTRA_OF:
            raise
        raise MissingExtraError(what, module) from exc
