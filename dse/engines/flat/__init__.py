"""Exact and HNSW single-vector search with FAISS (`engine.FlatEngine`), the HNSW graph cached beside the shards."""

from dse.engines.flat.engine import FlatEngine

__all__ = ["FlatEngine"]
