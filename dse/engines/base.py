"""The interface of a search engine: the vectors of one index and the search over them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from dse.types import VectorKind


class SearchEngine(ABC):
    """Vectors of one index, rows numbered 0..n-1 in the order they were added.

    The page catalogue maps rows to pages; the engine only knows rows. Persistence is
    crash-safe by construction: `save` never damages what an earlier `save` wrote, and
    `load(directory, rows=n)` restores exactly the first `n` rows (the catalogue's count is
    the commit point, so rows written by an interrupted add are ignored).
    """

    kind: ClassVar[VectorKind]

    @abstractmethod
    def __len__(self) -> int:
        """Number of rows."""

    @abstractmethod
    def add(self, vectors: Any) -> None:
        """Append rows (single: float32 (n, dim); multi: list of (tokens_i, dim); text: token lists)."""

    @abstractmethod
    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows per query.

        Engines that support filtering and deletion also take `allowed: np.ndarray | None`
        (bool, one entry per row; False rows are never returned, and k allowed rows come back
        when k exist).

        Returns:
            scores: float32 (n_queries, min(k, len(self))), best first.
            rows: int64 (n_queries, min(k, len(self))), the matching row numbers.
        """

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Persist the rows under `directory` (files this engine owns), atomically."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, rows: int, **options: Any) -> "SearchEngine":
        """Open what `save` wrote, keeping exactly the first `rows` rows."""

    def options(self) -> dict[str, Any]:
        """Engine options recorded in the manifest."""
        return {}


def as_float32_rows(vectors: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Stack single vectors into a C-contiguous float32 (n, dim) array."""
    arr = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D array (n, dim), got shape {arr.shape}")
    return arr
