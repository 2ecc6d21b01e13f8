"""Storage: the self-describing index directory (manifest, page catalogue, stored images, engine files).

`page_index.PageIndex` opens one; it implements `dse.backends.IndexBackend`.
"""

from dse.storage.filters import FilterError
from dse.storage.lock import IndexLockedError
from dse.storage.manifest import EncoderMismatchError, IndexFormatError, Manifest
from dse.storage.page_index import PageIndex

__all__ = ["EncoderMismatchError", "FilterError", "IndexFormatError", "IndexLockedError", "Manifest", "PageIndex"]
