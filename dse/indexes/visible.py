"""Which rows a search may return: live (not tombstoned) and matching the `where` filter."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from dse.indexes.catalogue import Catalogue
from dse.indexes.filters import FIELDS, FilterError, compile_where, json_path


class RowMasks:
    """Builds the `allowed` bool masks that engines search under, from the catalogue.

    The tombstone mask is cached until the catalogue changes (SQLite's `data_version` for
    commits by other processes, `invalidate()` for this process's own). Masks have one entry
    per engine row: rows the catalogue committed after the engines were loaded are ignored,
    so a reader searches a consistent snapshot until it refreshes.
    """

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self._key: tuple[int, int] | None = None
        self._deleted = np.zeros(0, np.int64)  # (n_deleted,) rows

    def invalidate(self) -> None:
        """Forget cached tombstones (call after this process writes to the catalogue)."""
        self._key = None

    def allowed(self, n_rows: int, where: Mapping[str, Any] | None = None) -> np.ndarray | None:
        """Bool (n_rows,) mask of the rows a search may return, or None when every row may be.

        Raises:
            FilterError: a malformed filter, or a metadata key no live page has.
        """
        if where is None:
            deleted = self._tombstones()
            deleted = deleted[deleted < n_rows]  # (n_deleted',)
            if deleted.size == 0:
                return None
            mask = np.ones(n_rows, dtype=bool)  # (n_rows,)
            mask[deleted] = False
            return mask
        compiled = compile_where(where)
        self._check_keys(compiled.metadata_keys)
        rows = np.fromiter(self.catalogue.rows_where(compiled.sql, compiled.args), dtype=np.int64)  # (m,)
        mask = np.zeros(n_rows, dtype=bool)  # (n_rows,)
        mask[rows[rows < n_rows]] = True
        return mask

    def _tombstones(self) -> np.ndarray:
        key = (self.catalogue.data_version(), len(self.catalogue))
        if key != self._key:
            self._deleted = np.asarray(self.catalogue.deleted_rows(), dtype=np.int64)  # (n_deleted,)
            self._key = key
        return self._deleted

    def _check_keys(self, keys: tuple[str, ...]) -> None:
        """Raise FilterError for a metadata key that no live page records (a typo, most often)."""
        for key in keys:
            if not self.catalogue.has_metadata_key(json_path(key)) and self.catalogue.counts().pages:
                known = ", ".join(list(FIELDS) + [k for k in self.catalogue.metadata_keys() if k not in FIELDS])
                raise FilterError(f"where: no page in this index has the field {key!r}; known fields: {known}")
