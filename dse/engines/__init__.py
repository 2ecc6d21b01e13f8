"""Search engines: the vectors of one index and the search over them (rows 0..n-1; the catalogue maps rows to pages).

`registry.engine_for(kind, options)` names the engine of an encoder's vector kind and the
manifest's engine options. Families: `flat` (FAISS exact or HNSW), `quantized` (binary / int8
single vectors), `bm25` (text), `maxsim` (exact late interaction), `cascade` (approximate late
interaction); `ivf` holds the inverted lists the approximate ones share.
"""

from dse.engines.base import SearchEngine
from dse.engines.registry import engine_for

__all__ = ["SearchEngine", "engine_for"]
