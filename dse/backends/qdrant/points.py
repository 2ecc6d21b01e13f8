"""Pages as Qdrant points: stable ids, payloads, vectors, and BM25 term weights as sparse vectors."""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from typing import Any, Mapping, Sequence

import numpy as np

from dse.backends.qdrant.pooling import grid_pool
from dse.backends.qdrant.schema import COLS, DENSE, MULTI, POOLED, ROWS, SPARSE
from dse.backends.records import NewPage, NewSource, PageRecord

NAMESPACE = uuid.UUID("6f1c3e0a-9d5b-5a7e-8c2f-0d5e13a4b713")  # dse pages; never change (ids are stored)
BM25_K1, BM25_B = 1.5, 0.75  # bm25s's defaults; the IDF factor is Qdrant's (Modifier.IDF)
PAYLOAD_FIELDS = ("page_id", "source", "page", "image", "kind", "digest", "added", "row", "source_pages", "meta")


def point_id(page_id: str) -> str:
    """The point id of a page: uuid5 of its page id (the same page id always lands on the same point)."""
    return str(uuid.uuid5(NAMESPACE, page_id))


def term_id(token: str) -> int:
    """A token's sparse index: the first 4 bytes of its blake2b hash (stable across processes)."""
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=4).digest(), "little")


def sparse_page(tokens: Sequence[str], avg_len: float) -> tuple[list[int], list[float]]:
    """BM25's term-frequency factor of a page's tokens (Qdrant multiplies in the IDF)."""
    counts = Counter(term_id(t) for t in tokens)
    norm = BM25_K1 * (1 - BM25_B + BM25_B * len(tokens) / max(avg_len, 1.0))
    ids = sorted(counts)
    return ids, [counts[i] * (BM25_K1 + 1) / (counts[i] + norm) for i in ids]


def sparse_query(tokens: Sequence[str]) -> tuple[list[int], list[float]]:
    """A query's terms, each counted once per occurrence."""
    counts = Counter(term_id(t) for t in tokens)
    ids = sorted(counts)
    return ids, [float(counts[i]) for i in ids]


def vectors_of(kind: str, vector: Any, tokens: Sequence[str], avg_len: float,
               options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The named vectors of one page: the encoder's (by kind, pooled by `options`) and the BM25 sparse vector."""
    from qdrant_client import models

    ids, values = sparse_page(tokens, avg_len)
    out: dict[str, Any] = {SPARSE: models.SparseVector(indices=ids, values=values)}
    if kind == "multi":
        arr = np.asarray(vector, dtype=np.float32)  # (tokens, dim)
        out[MULTI] = arr.tolist()
        if (options or {}).get("pooling") == "grid":
            rows, cols = grid_pool(arr, int((options or {})["grid_rows"]))  # (rows + extra, dim), (cols + extra, dim)
            out[ROWS], out[COLS] = rows.tolist(), cols.tolist()
        else:
            out[POOLED] = arr.mean(axis=0).tolist()  # (dim,)
    elif kind == "single":
        out[DENSE] = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()  # (dim,)
    return out


def payload_of(src: NewSource, page: NewPage, row: int, added: str) -> dict[str, Any]:
    """The payload of a page: what a `PageRecord` and the `where` fields need."""
    return {"page_id": page.page_id, "source": src.path, "page": int(page.page), "text": page.text,
            "image": page.image, "kind": src.kind, "digest": src.digest, "added": added, "row": int(row),
            "source_pages": len(src.pages), "meta": dict(page.metadata)}


def record_of(payload: Mapping[str, Any]) -> PageRecord:
    """The `PageRecord` a point's payload describes."""
    return PageRecord(row=int(payload.get("row", 0)), page_id=str(payload["page_id"]), source=str(payload["source"]),
                      page=int(payload["page"]), text=str(payload.get("text", "")), image=payload.get("image"),
                      metadata=dict(payload.get("meta") or {}))
