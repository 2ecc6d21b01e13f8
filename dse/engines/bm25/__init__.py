"""Lexical search: BM25 over the pages' token lists (`engine.BM25Engine`), one postings segment per shard."""

from dse.engines.bm25.engine import METHODS, BM25Engine

__all__ = ["METHODS", "BM25Engine"]
