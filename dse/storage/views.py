"""Committed states of an index as searches see them, and how a refresh extends one to newer commits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class IndexView:
    """One committed state of the index, as searches see it: engines, rows and tombstones together.

    A view is never changed: commits and refreshes publish a new one, so a search that holds a
    view answers from one committed state whatever is written meanwhile, and never waits for it.

    Attributes:
        engine: The visual (or, for a `bm25` index, the text) engine, holding `rows` rows.
        text_engine: The BM25 text side (the same engine for a `bm25` index; None for old indexes).
        rows: Rows committed in this state.
        deleted: int64 (n_deleted,) tombstoned rows of this state, ascending.
        generation: The engine generation (how many compactions): rows number this
            generation's engines, and are looked up only in a catalogue of the same generation.
        texts: Page id -> text layer of the pages this view's searches returned (live in this
            state), so that `PageIndex.page_texts` (the server's snippets) does not read them
            again; at most `TEXTS_KEPT`, emptied when full. A new view starts empty.
    """

    engine: Any
    text_engine: Any
    rows: int
    deleted: np.ndarray
    generation: int = 0
    texts: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def remember_texts(self, pages: Any) -> None:
        """Keep the texts of records (`PageRecord`s) of live pages of this state (a plain dict: atomic updates)."""
        texts = self.texts
        if len(texts) > TEXTS_KEPT:
            texts.clear()
        for rec in pages:
            texts[rec.page_id] = rec.text


TEXTS_KEPT = 4096
"""Texts an `IndexView` keeps of the pages its searches returned."""


def prepare(engine: Any) -> None:
    """Build an engine's lazy search structures before it is published (engines without `prepare` skip)."""
    prepare = getattr(engine, "prepare", None)
    if prepare is not None:
        prepare()


def extended(
    view: IndexView, rows: int, load: Callable[[int], tuple[Any, Any]], generation: int = 0
) -> tuple[Any, Any]:
    """Copies of the view's engines holding `rows` rows of `generation`, ready to search.

    The copies share every row already loaded and read only the newer ones; engines that cannot
    extend (no `snapshot`, fewer rows than the view, or another generation: the index was
    compacted) are reloaded with `load(rows)`, which returns (engine, text engine) as
    `dse.storage.layout.load_engines` does.
    """
    if rows == view.rows and generation == view.generation:
        return view.engine, view.text_engine
    same = view.text_engine is view.engine
    engines = [view.engine] + ([] if same or view.text_engine is None else [view.text_engine])
    try:
        if rows < view.rows or generation != view.generation or not all(hasattr(e, "snapshot") for e in engines):
            raise ValueError("reload")
        copies = [e.snapshot() for e in engines]
        for e in copies:
            e.extend(rows)
    except ValueError:
        copies = list(load(rows))
        copies = copies[:1] if same or view.text_engine is None else copies
    for e in copies:
        prepare(e)
    engine = copies[0]
    text_engine = engine if same else (copies[1] if len(copies) > 1 else None)
    return engine, text_engine
