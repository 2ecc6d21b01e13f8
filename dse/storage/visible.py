"""Which rows a search may return: live (not tombstoned) and matching the `where` filter."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from dse.storage.catalogue import Catalogue
from dse.storage.filters import FIELDS, FilterError, compile_where, json_path


class RowMasks:
    """Builds the `allowed` bool masks that engines search under, from the catalogue.

    The tombstones come from the committed state being searched (`dse.storage.views.IndexView`),
    not from the catalogue as it is now, so an answer never mixes two states: a source updated
    meanwhile is either its old pages or its new ones, never neither. A filter is matched against
    every row (a page's fields never change), then the state's tombstones are removed. Safe to
    share across threads (it keeps no state of its own).
    """

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue

    def allowed(
        self, n_rows: int, deleted: np.ndarray, where: Mapping[str, Any] | None = None, generation: int | None = None
    ) -> np.ndarray | None:
        """Bool (n_rows,) mask of the rows a search may return, or None when every row may be.

        Args:
            n_rows: Rows of the state searched.
            deleted: int64 (n_deleted,) tombstoned rows of that state.
            where: The filter, or None.
            generation: The engine generation of the state (its rows are matched in a catalogue of it).

        Raises:
            FilterError: a malformed filter, or a metadata key no live page has.
            StaleViewError: the catalogue was compacted since the state was loaded.
        """
        if where is None:
            if deleted.size == 0:
                return None
            mask = np.ones(n_rows, dtype=bool)  # (n_rows,)
            mask[deleted[deleted < n_rows]] = False
            return mask
        compiled = compile_where(where)
        self._check_keys(compiled.metadata_keys)
        rows = np.fromiter(self.catalogue.rows_where(compiled.sql, compiled.args, live=False,
                                                          generation=generation), dtype=np.int64)  # (m,)
        mask = np.zeros(n_rows, dtype=bool)  # (n_rows,)
        mask[rows[rows < n_rows]] = True
        mask[deleted[deleted < n_rows]] = False
        return mask

    def _check_keys(self, keys: tuple[str, ...]) -> None:
        """Raise FilterError for a metadata key that no live page records (a typo, most often)."""
        for key in keys:
            if not self.catalogue.has_metadata_key(json_path(key)) and self.catalogue.counts().pages:
                known = ", ".join(list(FIELDS) + [k for k in self.catalogue.metadata_keys() if k not in FIELDS])
                raise FilterError(f"where: no page in this index has the field {key!r}; known fields: {known}")
