"""Indexes: the search engines and the self-describing index directory."""

from dse.indexes.catalogue import PageRecord
from dse.indexes.manifest import EncoderMismatchError, IndexFormatError, Manifest
from dse.indexes.store import IndexLockedError, PageIndex, ScoredPage

__all__ = [
    "EncoderMismatchError",
    "IndexFormatError",
    "IndexLockedError",
    "Manifest",
    "PageIndex",
    "PageRecord",
    "ScoredPage",
]
