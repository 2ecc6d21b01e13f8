"""Searches of a Qdrant collection: MaxSim after a pooled prefetch, dense, and BM25 sparse queries."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from dse.backends.qdrant.points import record_of, sparse_query
from dse.backends.qdrant.schema import COLS, DEFAULT_PREFETCH, DENSE, MULTI, POOLED, ROWS, SPARSE
from dse.backends.records import ScoredPage


def visual(client: Any, name: str, kind: str, queries: Any, k: int, flt: Any, options: dict[str, Any]) -> list[list[ScoredPage]]:
    """Top-k pages per encoded query: exact MaxSim over the pooled prefetch (multi), dense (single), sparse (text).

    A multi-vector query prefetches `prefetch` pages by the pooled first stage (the page mean, or
    with ``pooling: grid`` `prefetch` by the row means and `prefetch` by the column means, MaxSim
    of the query's tokens over each) and ranks their union by exact MaxSim over `mv`.
    """
    from qdrant_client import models

    requests = []
    for q in queries:
        if kind == "multi":
            arr = np.asarray(q, dtype=np.float32)  # (tokens, dim)
            limit = max(int(options.get("prefetch", DEFAULT_PREFETCH)), k)
            ef = models.SearchParams(hnsw_ef=int(options["hnsw_ef"])) if options.get("hnsw_ef") else None
            if options.get("pooling") == "grid":
                prefetch: Any = [models.Prefetch(query=arr.tolist(), using=name, limit=limit, filter=flt, params=ef)
                                 for name in (ROWS, COLS)]
            else:
                prefetch = models.Prefetch(query=arr.mean(axis=0).tolist(), using=POOLED, limit=limit, filter=flt,
                                           params=ef)
            requests.append(models.QueryRequest(prefetch=prefetch, query=arr.tolist(), using=MULTI, limit=k,
                                                filter=flt, with_payload=True))
        elif kind == "single":
            params = models.SearchParams(hnsw_ef=options.get("hnsw_ef"), quantization=models.QuantizationSearchParams(
                rescore=True) if options.get("quantization") else None)
            requests.append(models.QueryRequest(query=np.asarray(q, np.float32).reshape(-1).tolist(), using=DENSE,
                                                limit=k, filter=flt, params=params, with_payload=True))
        else:
            requests.append(_sparse_request(models, q, k, flt))
    return _scored(client.query_batch_points(name, requests=requests))


def text(client: Any, name: str, token_lists: Sequence[Sequence[str]], k: int, flt: Any) -> list[list[ScoredPage]]:
    """Top-k pages by BM25 (sparse, IDF modifier) per tokenized query."""
    from qdrant_client import models

    requests = [_sparse_request(models, tokens, k, flt) for tokens in token_lists]
    return _scored(client.query_batch_points(name, requests=requests))


def _sparse_request(models: Any, tokens: Sequence[str], k: int, flt: Any) -> Any:
    ids, values = sparse_query(tokens)
    return models.QueryRequest(query=models.SparseVector(indices=ids, values=values), using=SPARSE, limit=k,
                               filter=flt, with_payload=True)


def _scored(responses: Sequence[Any]) -> list[list[ScoredPage]]:
    return [[ScoredPage(record_of(p.payload), float(p.score)) for p in r.points] for r in responses]
