"""The sparse-centroids codebooks one `QdrantIndex` has loaded: each file read and checked once."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from dse.backends.qdrant.centroids import Codebook, Coder, load


class Codebooks:
    """Coders of the codebooks the manifest names: for queries (the probed list) and for pages (one each)."""

    def __init__(self, directory: Path, weight: str) -> None:
        self.directory = Path(directory)
        self.weight = weight
        self._books: dict[str, Codebook] = {}
        self._query: Coder | None = None
        self._pages: dict[str, Coder] = {}

    def _book(self, record: Mapping[str, Any]) -> Codebook:
        key = str(record["key"])
        if key not in self._books:
            self._books = {**dict(list(self._books.items())[-3:]), key: load(self.directory, record)}
        return self._books[key]

    def query_coder(self, records: Sequence[Mapping[str, Any]]) -> Coder | None:
        """The `Coder` queries probe these codebook records with (None for none)."""
        if not records:
            return None
        keys = tuple(str(r["key"]) for r in records)
        if self._query is None or tuple(b.key for b in self._query.books) != keys:
            self._query = Coder([self._book(r) for r in records], self.weight)
        return self._query

    def page_coder(self, record: Mapping[str, Any]) -> Coder:
        """The `Coder` of pages for one codebook record."""
        key = str(record["key"])
        if key not in self._pages:
            kept = list(self._pages.items())[-1:]  # the current codebook's beside the next one's
            self._pages = {**dict(kept), key: Coder([self._book(record)], self.weight)}
        return self._pages[key]
