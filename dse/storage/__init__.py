"""Storage: the self-describing index directory (manifest, page catalogue, stored images, engine files)."""

from dse.storage.catalogue import PageRecord
from dse.storage.filters import FilterError
from dse.storage.manifest import EncoderMismatchError, IndexFormatError, Manifest
from dse.storage.page_index import DeleteReport, IndexLockedError, PageIndex, ScoredPage

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
