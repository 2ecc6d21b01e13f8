"""The layout of the code (docs/architecture.md): layers, no import cycles, module and folder sizes.

Imports are read from the source (every `import` and `from ... import`, at module level or inside
a function: a lazy import is still a dependency), nothing is run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dse", "ingest")
MAX_LINES = 340  # "about 300"
MAX_MODULES = 13  # "about a dozen" per folder, __init__.py included


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules `name` imports (a `from pkg import sub` names pkg.sub when it is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _package_edges() -> set[tuple[str, str]]:
    """Edges between modules, a package's `__init__` left out (it re-exports what lies below it)."""
    return {(a, b) for a, targets in GRAPH.items() for b in targets
            if MODULES[b].name != "__init__.py" and MODULES[a].name != "__init__.py"}


def test_no_import_cycles() -> None:
    edges: dict[str, set[str]] = {}
    for a, b in _package_edges():
        edges.setdefault(a, set()).add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(MODULES):
        if v not in index:
            strongconnect(v)
    assert not cycles, f"modules importing each other in a circle: {cycles}"


LOWER_LAYERS = {  # package -> packages it must never import
    "dse.kernels": ("dse.engines", "dse.storage", "dse.backends", "dse.encoders", "dse.retrieve", "dse.serve",
                    "dse.cli", "dse.evaluate", "ingest"),
    "dse.engines": ("dse.storage", "dse.backends", "dse.encoders", "dse.retrieve", "dse.serve", "dse.cli",
                    "dse.evaluate", "ingest"),
    "dse.storage": ("dse.encoders", "dse.retrieve", "dse.serve", "dse.cli", "dse.evaluate"),
    "dse.backends": ("dse.encoders", "dse.retrieve", "dse.serve", "dse.cli", "dse.evaluate"),
    "dse.encoders": ("dse.storage", "dse.engines", "dse.backends", "dse.retrieve", "dse.serve", "dse.cli",
                     "dse.evaluate"),
    "dse.retrieve": ("dse.serve", "dse.cli", "dse.evaluate"),
    "dse.serve": ("dse.cli",),
    "ingest": ("dse",),
}


@pytest.mark.parametrize("package", sorted(LOWER_LAYERS))
def test_layers_import_only_downwards(package: str) -> None:
    def inside(module: str, prefix: str) -> bool:
        return module == prefix or module.startswith(prefix + ".")

    wrong = sorted(f"{a} -> {b}" for a, targets in GRAPH.items() if inside(a, package) for b in targets
                   if any(inside(b, upper) for upper in LOWER_LAYERS[package]))
    assert not wrong, f"{package} imports a layer above it: {wrong}"


def test_modules_are_about_300_lines() -> None:
    long = {name: n for name, path in MODULES.items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by responsibility): {long}"


def test_folders_hold_about_a_dozen_modules() -> None:
    per_folder: dict[Path, int] = {}
    for path in MODULES.values():
        per_folder[path.parent] = per_folder.get(path.parent, 0) + 1
    crowded = {str(folder.relative_to(ROOT)): n for folder, n in per_folder.items() if n > MAX_MODULES}
    assert not crowded, f"folders over {MAX_MODULES} modules (give them subfolders): {crowded}"
