"""Indexes: the search engines and the self-describing index directory."""

from dse.indexes.catalogue import PageRecord
from dse.indexes.filters import FilterError
from dse.indexes.manifest import EncoderMismatchError, IndexFormatError, Manifest
from dse.indexes.store import DeleteReport, IndexLockedError, PageIndex, ScoredPage

__all__ = [
    "DeleteReport",
    "EncoderMismatchError",
    "FilterError",
    "IndexFormatError",
    "IndexLockedError",
    "Manifest",
    "PageIndex",
    "PageRecord",
    "ScoredPage",
]
