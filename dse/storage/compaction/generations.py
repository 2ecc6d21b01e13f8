"""Engine generations: which directories a committed state names, loading them, views that outlive one.

A compaction writes the engines of generation N+1 (`vectors.N+1/`, `text.N+1/`) beside those of N,
then switches with one catalogue transaction that renumbers the rows and records N+1
(`Catalogue.compact`), then removes generation N's directories. So a state is (generation, rows,
tombstones), read in one transaction (`Catalogue.state`), and a view's rows are resolved only in a
catalogue of its generation (`Catalogue.at_generation`): a search on a view outdated by a
compaction refreshes and runs again on the compacted state (`consistent`), never mapping old rows
to the renumbered pages. Loading retries when a compaction removed the directories it was
reading meanwhile.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable, TypeVar

from dse.storage.catalogue import Catalogue, StaleViewError
from dse.storage.layout import GENERATION_DIR, engine_dirs, load_engines
from dse.storage.manifest import Manifest
from dse.storage.views import IndexView, extended

ATTEMPTS = 3  # a view or a load outdated by compactions this many times in a row is an error
T = TypeVar("T")


def load_current(
    directory: Path, manifest: Manifest, catalogue: Catalogue, view: IndexView | None = None
) -> tuple[tuple[Any, Any], tuple[int, int, list[int]]]:
    """The engines at the catalogue's current state, and that state (generation, rows, tombstones).

    Args:
        directory: The index directory.
        manifest: Its manifest.
        catalogue: Its catalogue.
        view: A view to extend (its engines' copies share the rows it holds; reloaded when the
            state is of another generation), or None to load anew.
    """
    for attempt in range(ATTEMPTS):
        state = catalogue.state()
        generation, rows = state[0], state[1]

        def load(n: int) -> tuple[Any, Any]:
            return load_engines(directory, manifest, n, generation)

        try:
            engines = load(rows) if view is None else extended(view, rows, load, generation)
            return engines, state
        except (OSError, ValueError):
            if attempt == ATTEMPTS - 1 or catalogue.generation() == generation:
                raise  # not a compaction that removed the files meanwhile: a damaged index
    raise AssertionError("unreachable")


def consistent(index: Any, fn: Callable[[IndexView], T], view: IndexView | None = None) -> T:
    """`fn(view)` (None: the index's current view); on StaleViewError, refresh and run it on the new view."""
    view = view or index.view()
    for attempt in range(ATTEMPTS):
        try:
            return fn(view)
        except StaleViewError:
            if attempt == ATTEMPTS - 1:
                raise
            index.refresh()
            view = index.view()
    raise AssertionError("unreachable")


def generation_dirs(directory: Path) -> dict[int, list[Path]]:
    """The engine directories in the index, by generation."""
    found: dict[int, list[Path]] = {}
    for entry in Path(directory).iterdir():
        m = GENERATION_DIR.match(entry.name)
        if m and entry.is_dir() and not entry.is_symlink():
            found.setdefault(int(m.group(2) or 0), []).append(entry)
    return found


def stale_dirs(directory: Path, generation: int) -> list[Path]:
    """Engine directories of generations other than `generation`: a finished compaction's old ones
    (removed after its switch), or an interrupted one's half-written new ones."""
    return sorted(p for g, paths in generation_dirs(directory).items() if g != generation for p in paths)


def remove_dirs(paths: list[Path]) -> None:
    """Remove engine directories (readers holding their files memory-mapped keep them until they close)."""
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def dir_bytes(paths: list[Path]) -> int:
    """Bytes of the regular files under `paths`."""
    total = 0
    for path in paths:
        for root, _, files in os.walk(path):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_size
                except OSError:
                    pass
    return total


def current_dirs(directory: Path, generation: int, text_side: bool) -> list[Path]:
    """The engine directories of `generation` (the text one only if the index has a separate text side)."""
    vectors, text = engine_dirs(generation)
    return [Path(directory) / vectors] + ([Path(directory) / text] if text_side else [])
