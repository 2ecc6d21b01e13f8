"""qdrant-edge-py as the Qdrant backend's client: a location ``edge:PATH`` is an in-process Qdrant shard.

`EdgeClient` answers the `QdrantClient` calls the backend makes (`collection_exists`,
`create_collection`, `create_vector_name`, `delete_vector_name`, `upsert`, `update_vectors`,
`query_batch_points`, `scroll`, `count`, `retrieve`, `set_payload`, `delete`,
`create_payload_index`, `close`) on `qdrant_edge.EdgeShard`s, one
shard per collection in ``PATH/<collection>``, translating the `qdrant_client.models` requests
the backend builds (`translate`). Edge is Qdrant's own engine (Rust segments, HNSW, WAL) in
this process: one process at a time may open a folder, like local mode. Updates go to the WAL
before they return (a kill -9 loses nothing that returned); HNSW graphs are built by the shard's
optimizers, run in-process by `optimize` and when the client closes after writes (until then
new points are searched by a full scan, exact).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

EDGE_PREFIX = "edge:"
_SCHEMAS = {"keyword": "Keyword", "integer": "Integer", "float": "Float", "bool": "Bool"}


def is_edge(location: str) -> bool:
    """True for an ``edge:PATH`` location."""
    return location.startswith(EDGE_PREFIX)


class EdgeClient:
    """The subset of `QdrantClient` the backend uses, served by qdrant-edge shards under one folder."""

    def __init__(self, folder: str) -> None:
        import qdrant_edge

        self.edge = qdrant_edge
        self.folder = Path(os.path.expanduser(folder))
        self._shards: dict[str, Any] = {}
        self._dirty: set[str] = set()

    # ---------------------------------------------------------------- collections
    def _path(self, name: str) -> Path:
        return self.folder / name

    def collection_exists(self, name: str) -> bool:
        return name in self._shards or (self._path(name) / "edge_config.json").exists()

    def _shard(self, name: str) -> Any:
        if name not in self._shards:
            if not self.collection_exists(name):
                raise ValueError(f"qdrant-edge: no collection {name!r} under {self.folder}")
            try:
                self._shards[name] = self.edge.EdgeShard.load(str(self._path(name)))
            except Exception as exc:  # noqa: BLE001 - qdrant-edge raises a plain Exception
                if "WouldBlock" not in str(exc):
                    raise
                from dse.storage.lock import IndexLockedError

                raise IndexLockedError(
                    f"edge:{self.folder}: collection {name!r} is open in another process (qdrant-edge allows one "
                    f"process at a time): stop the other dse index / serve, or use a Qdrant server") from None
        return self._shards[name]

    def create_collection(self, collection_name: str, vectors_config: Mapping[str, Any],
                          sparse_vectors_config: Mapping[str, Any], quantization_config: Any = None,
                          **cluster: Any) -> None:
        """A new shard (cluster settings have no meaning for one in-process shard and are refused)."""
        if cluster:
            raise ValueError(f"qdrant-edge is one in-process shard: {', '.join(cluster)} need a Qdrant server")
        e = self.edge
        config = e.EdgeConfig(vectors={k: self._vector_params(v) for k, v in vectors_config.items()},
                              sparse_vectors={k: e.EdgeSparseVectorParams(modifier=e.Modifier.Idf if v.modifier
                                                                           else None)
                                              for k, v in sparse_vectors_config.items()},
                              quantization_config=self._quantization(quantization_config))
        self._path(collection_name).parent.mkdir(parents=True, exist_ok=True)
        self._shards[collection_name] = e.EdgeShard.create(str(self._path(collection_name)), config)

    def _vector_params(self, v: Any) -> Any:
        e = self.edge
        hnsw = None
        if v.hnsw_config is not None and v.hnsw_config.m == 0:
            hnsw = e.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10000)
        multi = e.MultiVectorConfig(e.MultiVectorComparator.MaxSim) if v.multivector_config is not None else None
        return e.EdgeVectorParams(int(v.size), e.Distance.Dot, on_disk=bool(v.on_disk), multivector_config=multi,
                                  hnsw_config=hnsw)

    def _quantization(self, q: Any) -> Any:
        e = self.edge
        if q is None:
            return None
        if type(q).__name__ == "ScalarQuantization":
            return e.ScalarQuantizationConfig(e.ScalarType.Int8, always_ram=True)
        return e.BinaryQuantizationConfig(always_ram=True)

    def create_vector_name(self, name: str, vector_name: str, vector_name_config: Any) -> None:
        """A new named sparse vector (the only kind the backend adds to an existing collection)."""
        cfg = vector_name_config.sparse
        modifier = self.edge.Modifier.Idf if cfg.modifier is not None else None
        self._update(name, self.edge.UpdateOperation.create_sparse_vector(vector_name, modifier=modifier))

    def delete_vector_name(self, name: str, vector_name: str) -> None:
        """Remove a named vector and every point's value of it (none of that name: nothing to do)."""
        self._update(name, self.edge.UpdateOperation.delete_vector_name(vector_name))

    def create_payload_index(self, name: str, field_name: str, field_schema: str) -> None:
        e = self.edge
        self._update(name, e.UpdateOperation.create_field_index(field_name, getattr(e.PayloadSchemaType,
                                                                                      _SCHEMAS[field_schema])))

    # ---------------------------------------------------------------- writes
    def _update(self, name: str, op: Any) -> None:
        self._shard(name).update(op)
        self._dirty.add(name)

    def upsert(self, name: str, points: Sequence[Any], wait: bool = True) -> None:
        e = self.edge
        self._update(name, e.UpdateOperation.upsert_points(
            [e.Point(p.id, {k: translate(e, v) for k, v in p.vector.items()}, dict(p.payload or {})) for p in points]))

    def update_vectors(self, name: str, points: Sequence[Any], wait: bool = True) -> None:
        """Replace the named vectors given of existing points (the others and the payload stay)."""
        e = self.edge
        self._update(name, e.UpdateOperation.update_vectors(
            [e.PointVectors(p.id, {k: translate(e, v) for k, v in p.vector.items()}) for p in points]))

    def delete(self, name: str, points_selector: Any, wait: bool = True) -> None:
        self._update(name, self.edge.UpdateOperation.delete_points(list(points_selector.points)))

    def set_payload(self, name: str, payload: Mapping[str, Any], points: Any, wait: bool = True) -> None:
        e = self.edge
        if type(points).__name__ == "PointIdsList":
            self._update(name, e.UpdateOperation.set_payload(list(points.points), dict(payload)))
        else:
            self._update(name, e.UpdateOperation.set_payload_by_filter(translate(e, points), dict(payload)))

    def optimize(self) -> None:
        """Build what the shards' optimizers plan (HNSW graphs, merged segments), then flush."""
        for name in list(self._dirty):
            self._shards[name].optimize()
            self._shards[name].flush()
        self._dirty.clear()

    def close(self) -> None:
        """Optimize shards written to, then release them."""
        self.optimize()
        for shard in self._shards.values():
            shard.close()
        self._shards.clear()

    # ---------------------------------------------------------------- reads
    def count(self, name: str, count_filter: Any = None, exact: bool = True) -> Any:
        flt = translate(self.edge, count_filter)
        return SimpleNamespace(count=self._shard(name).count(self.edge.CountRequest(exact=True, filter=flt)))

    def scroll(self, name: str, scroll_filter: Any = None, limit: int = 10, offset: Any = None,
               with_payload: Any = True, with_vectors: Any = False) -> tuple[list[Any], Any]:
        e = self.edge
        vectors = list(with_vectors) if isinstance(with_vectors, (list, tuple)) else bool(with_vectors)
        points, nxt = self._shard(name).scroll(e.ScrollRequest(
            offset=offset, limit=limit, filter=translate(e, scroll_filter), with_payload=_with_payload(e, with_payload),
            with_vector=vectors))
        return [_point(p) for p in points], None if nxt is None else str(nxt)

    def retrieve(self, name: str, ids: Sequence[str], with_payload: Any = True, with_vectors: Any = False) -> list[Any]:
        if not ids:
            return []
        vectors = list(with_vectors) if isinstance(with_vectors, (list, tuple)) else bool(with_vectors)
        got = self._shard(name).retrieve(list(ids), with_payload=_with_payload(self.edge, with_payload),
                                         with_vector=vectors)
        return [_point(p) for p in got]

    def query_batch_points(self, name: str, requests: Sequence[Any]) -> list[Any]:
        e = self.edge
        batch = e.QueryBatchRequest([_query_request(e, r) for r in requests])
        return [SimpleNamespace(points=[_point(p) for p in hits]) for hits in self._shard(name).query_batch(batch)]


def _point(p: Any) -> Any:
    """A record with a string id (edge gives UUID objects), its payload, score and named vectors."""
    return SimpleNamespace(id=str(p.id), payload=p.payload or {}, score=float(getattr(p, "score", 0.0) or 0.0),
                           vector=getattr(p, "vector", None))


def _with_payload(e: Any, with_payload: Any) -> Any:
    return e.PayloadSelector.Include(list(with_payload)) if isinstance(with_payload, (list, tuple)) else bool(with_payload)


def _query_request(e: Any, r: Any) -> Any:
    prefetch = r.prefetch if isinstance(r.prefetch, list) else [r.prefetch] if r.prefetch is not None else []
    return e.QueryRequest(limit=int(r.limit), query=e.Query.Nearest(translate(e, r.query), using=r.using),
                          prefetches=[_prefetch(e, p) for p in prefetch] or None, filter=translate(e, r.filter),
                          params=_params(e, r.params), with_payload=True)


def _prefetch(e: Any, p: Any) -> Any:
    return e.Prefetch(limit=int(p.limit), query=e.Query.Nearest(translate(e, p.query), using=p.using),
                      filter=translate(e, p.filter), params=_params(e, p.params))


def _params(e: Any, params: Any) -> Any:
    if params is None:
        return None
    quant = e.QuantizationSearchParams(rescore=True) if params.quantization is not None else None
    return e.SearchParams(hnsw_ef=params.hnsw_ef, quantization=quant)


def translate(e: Any, obj: Any) -> Any:
    """A `qdrant_client.models` filter, condition or vector as its qdrant-edge counterpart."""
    kind = type(obj).__name__
    if obj is None or isinstance(obj, (list, float, int, str)):
        return obj
    if kind == "SparseVector":
        return e.SparseVector(list(obj.indices), list(obj.values))
    if kind == "Filter":
        return e.Filter(must=_all(e, obj.must), should=_all(e, obj.should), must_not=_all(e, obj.must_not))
    if kind == "FieldCondition":
        if obj.range is not None:
            r = obj.range
            return e.FieldCondition(obj.key, range=e.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt))
        m = obj.match
        match = e.MatchAny(list(m.any)) if type(m).__name__ == "MatchAny" else e.MatchValue(m.value)
        return e.FieldCondition(obj.key, match=match)
    if kind == "IsEmptyCondition":
        return e.IsEmptyCondition(obj.is_empty.key)
    if kind == "HasIdCondition":
        return e.HasIdCondition({str(i) for i in obj.has_id})
    raise TypeError(f"qdrant-edge: no translation for {kind}")


def _all(e: Any, items: Any) -> Any:
    return None if items is None else [translate(e, c) for c in items]
