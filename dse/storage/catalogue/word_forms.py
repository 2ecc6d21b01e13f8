"""The catalogue's word forms (`dse.text.forms`): recorded by commits, renumbered by compaction, looked up by snippets.

Table `word_forms` (token, word) and `store_meta`'s `word_forms_rows` N (`dse.storage.catalogue.database`):
the words of rows [0, N) are recorded. A commit records its pages' words, and moves N past its
rows, only when N equals its first row; so rows committed without them (by a dse from before
word forms) stay uncovered for good, and a lookup over them answers None (the caller tokenizes).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from dse.storage.catalogue.database import WORD_FORMS_ROWS

MAX_FORM_TOKENS = 900
"""Tokens looked up in one statement at most (SQLite's 999 bound parameters)."""


class WordForms:
    """Word-form methods of `dse.storage.catalogue.Catalogue` (a mixin: `_db` is its connection)."""

    _db: sqlite3.Connection

    def _forms_rows(self, cur: sqlite3.Cursor | None = None) -> int | None:
        """N: the word forms of rows [0, N) are recorded (None: this catalogue records none)."""
        try:
            row = (cur or self._db).execute("SELECT value FROM store_meta WHERE key = ?", (WORD_FORMS_ROWS,)).fetchone()
        except sqlite3.OperationalError:  # no store_meta table: a catalogue from before word forms
            return None
        return None if row is None else int(row[0])

    def records_forms_from(self, row: int) -> bool:
        """True when a commit whose first row is `row` would record its pages' word forms."""
        return self._forms_rows() == row

    def _record_forms(self, cur: sqlite3.Cursor, first: int, stop: int, forms: Sequence[tuple[str, str]] | None) -> None:
        """Inside a commit's transaction: record the forms of rows [first, stop) if [0, first) are covered."""
        if forms is not None and self._forms_rows(cur) == first:
            cur.executemany("INSERT OR IGNORE INTO word_forms(token, word) VALUES (?, ?)", forms)
            cur.execute("UPDATE store_meta SET value = ? WHERE key = ?", (str(stop), WORD_FORMS_ROWS))

    def _renumber_forms(self, cur: sqlite3.Cursor, live: Sequence[int]) -> None:
        """Inside a compaction's transaction: the live rows under N keep their order, so they become 0..N'-1."""
        covered = self._forms_rows(cur)
        if covered is not None:
            cur.execute("UPDATE store_meta SET value = ? WHERE key = ?",
                        (str(sum(1 for r in live if r < covered)), WORD_FORMS_ROWS))

    def word_forms(self, tokens: Iterable[str], rows: int) -> dict[str, frozenset[str]] | None:
        """The recorded words that give each of `tokens` (none: an empty set), read with the coverage.

        None when the words of some of the first `rows` rows are not recorded (a catalogue from
        before word forms, or rows a dse without them committed): the caller tokenizes instead.
        """
        tokens = list(dict.fromkeys(tokens))
        found: list[tuple[Any, Any]] = []
        try:  # the first statement reads the coverage too; later ones can only find more words (harmless)
            for start in range(0, max(len(tokens), 1), MAX_FORM_TOKENS):
                chunk = tokens[start : start + MAX_FORM_TOKENS]
                meta = "SELECT NULL, value FROM store_meta WHERE key = ? UNION ALL " if not start else ""
                found += self._db.execute(
                    f"{meta}SELECT token, word FROM word_forms WHERE token IN ({','.join('?' * len(chunk))})",
                    [WORD_FORMS_ROWS, *chunk] if not start else chunk).fetchall()
        except sqlite3.OperationalError:  # no store_meta or word_forms table: a catalogue from before them
            return None
        covered = [int(value) for token, value in found if token is None]
        if not covered or covered[0] < rows:
            return None
        words: dict[str, set[str]] = {t: set() for t in tokens}
        for token, word in found:
            if token is not None:
                words[token].add(word)
        return {t: frozenset(w) for t, w in words.items()}
