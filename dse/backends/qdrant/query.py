"""Searches of a Qdrant collection: MaxSim after a pooled or sparse-centroids prefetch, dense, BM25 sparse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from dse.backends.qdrant.centroids import DEFAULT_N_PROBE, Coder
from dse.backends.qdrant.points import record_of, sparse_query
from dse.backends.qdrant.schema import COLS, DEFAULT_PREFETCH, DENSE, MULTI, POOLED, ROWS, SPARSE
from dse.backends.records import ScoredPage


@dataclass(frozen=True)
class FirstStage:
    """How a multi-vector search of a sparse-centroids collection starts (`QdrantIndex.search` decides)."""

    coder: Coder | None  # the codebooks queries probe (None: none applied yet, the pooled prefetch)
    exact: bool = False  # the (filtered) collection is no larger than the prefetch: exact MaxSim, no prefetch
    vector: str = ""  # the named sparse vector of the probed codebook's page vectors


def first_stage(index: Any, flt: Any, k: int) -> FirstStage | None:
    """How a multi-vector search of `index` (a `QdrantIndex`) starts: None unless sparse-centroids.

    Exact (no prefetch) when the filtered pages fit in the prefetch (one count request); else the
    complete codebook the manifest on disk names now (a writer in this process or another may have
    retrained since `index` opened: `QdrantIndex.current_manifest`, one stat per search).
    """
    from dse.backends.qdrant.centroids import CentroidsError, vector_of
    from dse.backends.qdrant.training import state_of

    if index.manifest.kind != "multi" or index.options.get("first_stage") != "sparse-centroids":
        return None
    if index.catalogue.count(flt) <= max(int(index.options.get("prefetch", DEFAULT_PREFETCH)), k):
        return FirstStage(None, exact=True)
    books = state_of(index.current_manifest().store["qdrant"])["codebooks"]
    try:
        coder = index.centroid_coder(books)
    except CentroidsError:  # replaced and removed since the manifest was read: read it again
        index.refresh()
        books = state_of(index.manifest.store["qdrant"])["codebooks"]
        coder = index.centroid_coder(books)
    return FirstStage(coder, vector=vector_of(books[-1]) if books else "")


def search(index: Any, queries: Any, k: int, flt: Any) -> list[list[ScoredPage]]:
    """`QdrantIndex.search` once its filter is built: the first stage, then `visual`.

    A writer may switch codebooks and remove the old one's vector between the manifest read and
    the request: then the search runs once more on the codebook the manifest names now.
    """
    first = first_stage(index, flt, k)
    try:
        return visual(index.client, index.collection, index.manifest.kind, queries, k, flt, index.options, first)
    except Exception:
        if first is None or not first.vector:
            raise
        index.refresh()  # the manifest file may look unchanged to a reader that read it just before the switch
        again = first_stage(index, flt, k)
        if again is None or first is None or again.vector == first.vector:
            raise
        return visual(index.client, index.collection, index.manifest.kind, queries, k, flt, index.options, again)


def visual(client: Any, name: str, kind: str, queries: Any, k: int, flt: Any, options: dict[str, Any],
           first: FirstStage | None = None) -> list[list[ScoredPage]]:
    """Top-k pages per encoded query: exact MaxSim over a prefetch (multi), dense (single), sparse (text).

    A multi-vector query prefetches `prefetch` pages by the first stage and ranks them by exact
    MaxSim over `mv`: the pooled vectors (the page mean, or with ``pooling: grid`` `prefetch` by
    the row means and `prefetch` by the column means), or with ``first_stage: sparse-centroids``
    and a trained codebook (`first`) the sparse centroid vector, plus `prefetch_pooled` pages by
    the pooled vectors (the union is rescored). `first.exact`: no prefetch, exact MaxSim over
    every (filtered) page.
    """
    from qdrant_client import models

    requests = []
    for q in queries:
        if kind == "multi":
            arr = np.asarray(q, dtype=np.float32)  # (tokens, dim)
            limit = max(int(options.get("prefetch", DEFAULT_PREFETCH)), k)
            prefetch = None if first is not None and first.exact else _prefetches(models, arr, limit, flt, options,
                                                                                  first)
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


def _prefetches(models: Any, arr: np.ndarray, limit: int, flt: Any, options: dict[str, Any],
                first: FirstStage | None) -> list[Any]:
    """The prefetch stages of one multi-vector query (see `visual`)."""
    ef = models.SearchParams(hnsw_ef=int(options["hnsw_ef"])) if options.get("hnsw_ef") else None
    out = []
    pooled = limit
    if first is not None and first.coder is not None:
        ids, values = first.coder.query(arr, int(options.get("n_probe", DEFAULT_N_PROBE)))
        out.append(models.Prefetch(query=models.SparseVector(indices=ids, values=values), using=first.vector,
                                   limit=limit, filter=flt))
        pooled = int(options.get("prefetch_pooled", 0))
    if pooled > 0 and options.get("pooling") == "grid":
        out += [models.Prefetch(query=arr.tolist(), using=field, limit=pooled, filter=flt, params=ef)
                for field in (ROWS, COLS)]
    elif pooled > 0:
        out.append(models.Prefetch(query=arr.mean(axis=0).tolist(), using=POOLED, limit=pooled, filter=flt,
                                   params=ef))
    return out


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
