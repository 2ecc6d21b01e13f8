"""The collection's schema: named vectors per encoder kind, cluster settings, the client.

Vectors of a point (one point per page):

- multi-vector encoders: ``mv`` (multivector, MAX_SIM, on disk, HNSW off: m=0) and the pooled
  first stage the prefetch searches (`dse.backends.qdrant.pooling`): ``pooled`` (the page's mean
  token, HNSW) with ``pooling: mean``, or ``rows`` and ``cols`` (multivectors of the grid's row
  and column means, MAX_SIM, HNSW) with ``pooling: grid``;
- single-vector encoders: ``dense`` (dot product on unit rows, HNSW, optional scalar or binary
  quantisation with rescoring);
- every index: ``bm25`` (sparse, IDF modifier) over the pages' text;
- ``first_stage: sparse-centroids``: ``centroids-<generation>``, a sparse vector per codebook
  generation, added when it is trained and removed when it is replaced (`add_sparse_vector`,
  `drop_vector`; `dse.backends.qdrant.training`).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

MULTI, POOLED, DENSE, SPARSE = "mv", "pooled", "dense", "bm25"
ROWS, COLS = "rows", "cols"  # pooling: grid
CLUSTER_KEYS = ("shard_number", "replication_factor", "write_consistency_factor", "on_disk")
OPTION_KEYS = ("qdrant", "collection", "prefetch", "hnsw_ef", "quantization", "pooling", "grid_rows", "first_stage",
               "centroid_weight", "centroid_idf", "centroids", "codebook_min_pages", "codebook_retrain", "n_probe",
               "prefetch_pooled", *CLUSTER_KEYS)  # every option of a new collection (`check_options`)
DEFAULT_PREFETCH = 200  # pooled candidates rescored by exact MaxSim per query
PAYLOAD_INDEXES = {"source": "keyword", "page_id": "keyword", "digest": "keyword", "kind": "keyword",
                   "page": "integer"}


class QdrantOptionError(ValueError):
    """A Qdrant backend option that is not valid: the message names it."""


def connect(location: str) -> Any:
    """A `QdrantClient` for a URL (server or cluster; API key from QDRANT_API_KEY) or a local-mode path,
    or an `EdgeClient` for ``edge:PATH`` (qdrant-edge-py shards in PATH)."""
    from dse.extras import require

    require(["qdrant_client"], "the Qdrant backend")
    from qdrant_client import QdrantClient

    from dse.backends.qdrant.edge import EDGE_PREFIX, EdgeClient, is_edge

    if is_edge(location):
        require(["qdrant_edge"], "the Qdrant backend's edge mode (edge:PATH)")
        return EdgeClient(location[len(EDGE_PREFIX):])
    if location.startswith(("http://", "https://")):
        return QdrantClient(url=location, api_key=os.environ.get("QDRANT_API_KEY") or None)
    return QdrantClient(path=os.path.expanduser(location))


def public_location(location: str) -> str:
    """The location as recorded in the manifest: a URL without user info or query (no secrets)."""
    from urllib.parse import urlsplit, urlunsplit

    from dse.backends.qdrant.edge import EDGE_PREFIX, is_edge

    if is_edge(location):
        return EDGE_PREFIX + os.path.abspath(os.path.expanduser(location[len(EDGE_PREFIX):]))
    if not location.startswith(("http://", "https://")):
        return os.path.abspath(os.path.expanduser(location))
    parts = urlsplit(location)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The backend's options checked: quantization, prefetch, hnsw_ef, pooling, first stage, cluster settings."""
    from dse.backends.qdrant.centroids import CentroidsError, check_centroid_options
    from dse.backends.qdrant.pooling import PoolingError, check_pooling

    out = dict(options)
    unknown = [k for k in out if k not in OPTION_KEYS]
    if unknown:
        raise QdrantOptionError(f"qdrant option {', '.join(map(repr, unknown))} is not an option of the Qdrant "
                                f"backend: use {', '.join(OPTION_KEYS)}")
    try:
        check_pooling(out)
        check_centroid_options(out)
    except (PoolingError, CentroidsError) as exc:
        raise QdrantOptionError(str(exc)) from None
    q = out.get("quantization")
    if q not in (None, "scalar", "binary"):
        raise QdrantOptionError(f"qdrant quantization {q!r}: use 'scalar', 'binary' or none")
    for key in ("prefetch", "shard_number", "replication_factor", "write_consistency_factor", "hnsw_ef"):
        if key in out and (not isinstance(out[key], int) or out[key] < 1):
            raise QdrantOptionError(f"qdrant option {key} must be an integer >= 1, got {out[key]!r}")
    return out


def create_collection(client: Any, name: str, kind: str, dim: int | None, options: Mapping[str, Any]) -> None:
    """Create the collection for an encoder kind ("single", "multi", "text") with its payload indexes."""
    from qdrant_client import models

    on_disk = bool(options.get("on_disk", kind == "multi"))
    vectors: dict[str, Any] = {}
    if kind == "multi":
        vectors[MULTI] = models.VectorParams(
            size=int(dim), distance=models.Distance.DOT, on_disk=True,
            multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
            hnsw_config=models.HnswConfigDiff(m=0))
        if options.get("pooling") == "grid":
            for field in (ROWS, COLS):
                vectors[field] = models.VectorParams(
                    size=int(dim), distance=models.Distance.DOT, on_disk=on_disk,
                    multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM))
        else:
            vectors[POOLED] = models.VectorParams(size=int(dim), distance=models.Distance.DOT, on_disk=on_disk)
    elif kind == "single":
        vectors[DENSE] = models.VectorParams(size=int(dim), distance=models.Distance.DOT, on_disk=on_disk)
    quant = None
    if options.get("quantization") == "scalar":
        quant = models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
            type=models.ScalarType.INT8, always_ram=True))
    elif options.get("quantization") == "binary":
        quant = models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
    sparse = {SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)}
    cluster = {k: int(options[k]) for k in CLUSTER_KEYS[:3] if k in options}
    client.create_collection(
        collection_name=name, vectors_config=vectors, sparse_vectors_config=sparse,
        quantization_config=quant, **cluster)
    if _local(client):
        return  # local mode scans payloads (it warns that payload indexes have no effect)
    for field, schema in PAYLOAD_INDEXES.items():
        client.create_payload_index(name, field_name=field, field_schema=schema)


def add_sparse_vector(client: Any, name: str, vector: str, idf: bool) -> None:
    """Add the named sparse vector `vector` to the collection, empty (one a killed writer made is replaced).

    A server needs the vector-name API (`create_vector_name`) that qdrant-client 1.20 calls; local
    and edge mode have it.
    """
    from qdrant_client import models

    drop_vector(client, name, vector)
    config = models.SparseVectorNameConfig(sparse=models.SparseVectorConfig(
        modifier=models.Modifier.IDF if idf else None))
    client.create_vector_name(name, vector, config)


def drop_vector(client: Any, name: str, vector: str) -> None:
    """Remove the named vector `vector` and every point's value of it (none: nothing to do, as on a server)."""
    client.delete_vector_name(name, vector)


def index_payload_field(client: Any, name: str, key: str, value: Any) -> None:
    """A payload index on a metadata key a filter reads (keyword, integer, float or bool by value)."""
    if _local(client):
        return
    schema = ("bool" if isinstance(value, bool) else "integer" if isinstance(value, int)
              else "float" if isinstance(value, float) else "keyword")
    try:
        client.create_payload_index(name, field_name=f"meta.{key}", field_schema=schema)
    except Exception:  # noqa: BLE001 - an index of another type already exists: filters still work without it
        pass


def _local(client: Any) -> bool:
    """True for qdrant-client's embedded local mode (no server)."""
    return type(getattr(client, "_client", None)).__name__ == "QdrantLocal"
