"""The page catalogue (SQLite, `catalogue.sqlite`): rows <-> pages and sources, and the words of the pages.

`database`: the file, its schema and migration, one connection per thread. `pages`: the
`Catalogue` (commits, tombstones, lookups, compaction's renumbering). `word_forms`: which words
give each BM25 token, recorded by commits for snippets.
"""

from dse.storage.catalogue.database import CATALOGUE_NAME, CatalogueFile, StaleViewError
from dse.storage.catalogue.pages import Catalogue

__all__ = ["CATALOGUE_NAME", "Catalogue", "CatalogueFile", "StaleViewError"]
