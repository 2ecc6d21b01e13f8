"""Index backends: the interface an index offers the Retriever, the server and the CLI, and the records it exchanges.

`IndexBackend` (`base`) is implemented by the embedded index directory
(`dse.storage.page_index.PageIndex`); `backend_class` (`registry`) names the class of a backend.
"""

from dse.backends.base import DEFAULT_IMAGE_SIZE, IndexBackend
from dse.backends.records import (
    CompactReport, Counts, DeleteReport, NewPage, NewSource, PageRecord, Reclaimable, ScoredPage,
)
from dse.backends.registry import DEFAULT_BACKEND, backend_class, backend_name, index_exists, open_backend

__all__ = [
    "DEFAULT_BACKEND", "DEFAULT_IMAGE_SIZE", "CompactReport", "Counts", "DeleteReport", "IndexBackend", "NewPage",
    "NewSource", "PageRecord", "Reclaimable", "ScoredPage", "backend_class", "backend_name", "index_exists", "open_backend",
]
