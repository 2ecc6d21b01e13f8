"""The Qdrant backend's writes: add (upsert, then drop replaced versions), move and delete sources.

Every write is waited for (`wait=True`), so what returns is searchable. An add upserts the new
pages first (stable point ids: re-adding a page overwrites its point) and only then deletes the
pages of the versions it replaces, so a write killed halfway loses nothing indexed: the re-run
redoes it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

from dse.backends.qdrant.centroids import vector_of
from dse.backends.qdrant.filters import payload_key
from dse.backends.qdrant.points import payload_of, point_id, vectors_of
from dse.backends.qdrant.training import maintain, state_of, targets
from dse.backends.records import DeleteReport, NewSource
from dse.storage import images
from dse.storage.layout import image_file

QdrantIndex = Any  # dse.backends.qdrant.backend.QdrantIndex (which imports this module)

BATCH = 64  # points per upsert request


def add_sources(index: QdrantIndex, sources: Sequence[NewSource], vectors: Sequence[Any]) -> list[list[int]]:
    """Commit sources (see `IndexBackend.add_sources`); returns the rows given to each source's pages."""
    from qdrant_client import models

    images.check_new_sources(sources, vectors)
    images.sync(index.directory, [p.image for src in sources for p in src.pages])
    q = index.manifest.store["qdrant"]
    tokens = [index.bm25_tokens(src, vecs) for src, vecs in zip(sources, vectors)]
    avg_len = q.get("avg_len") or max(1.0, sum(len(t) for ts in tokens for t in ts) /
                                      max(1, sum(len(ts) for ts in tokens)))
    row, added, out = int(q["rows"]), datetime.now(timezone.utc).isoformat(timespec="seconds"), []
    new_ids = {point_id(p.page_id) for src in sources for p in src.pages}
    sparse = index.manifest.kind == "multi" and index.options.get("first_stage") == "sparse-centroids"
    books = targets(state_of(q)) if sparse else []  # the current codebook's vector, and the next one's
    for src, vecs, toks in zip(sources, vectors, tokens):
        points, rows = [], []
        bags = [index.page_coder(b).pages(list(vecs)) if len(vecs) else [] for b in books]
        for j, (page, vec, tok) in enumerate(zip(src.pages, vecs, toks)):
            vector = vectors_of(index.manifest.kind, vec, tok, avg_len, index.options)
            for book, bag in zip(books, bags):
                vector[vector_of(book)] = models.SparseVector(indices=bag[j][0], values=bag[j][1])
            points.append(models.PointStruct(id=point_id(page.page_id), payload=payload_of(src, page, row, added),
                                             vector=vector))
            rows.append(row)
            row += 1
        for key, value in {k: v for p in src.pages for k, v in p.metadata.items()}.items():
            from dse.backends.qdrant.schema import index_payload_field

            index_payload_field(index.client, index.collection, key, value)
        for i in range(0, len(points), BATCH):
            index.client.upsert(index.collection, points=points[i:i + BATCH], wait=True)
        out.append(rows)
    old = index.catalogue.pages_at(list(dict.fromkeys(p for src in sources for p in (src.path, *src.replaces))))
    stale = [(pid, payload) for pid, payload in old if pid not in new_ids]
    _drop(index, stale)
    index.update_store(rows=row, avg_len=avg_len, deleted_pages=int(q["deleted_pages"]) + len(stale),
                       deleted_sources=int(q["deleted_sources"]) + len({p["source"] for _, p in stale}))
    if sparse:  # train, retrain or finish applying the codebook (`dse.backends.qdrant.training`)
        maintain(index, sum(len(v) for vecs in vectors for v in vecs))
    return out


def move_source(index: QdrantIndex, old: str, new: str, replaces: Sequence[str] = ()) -> bool:
    """Record the source at `old` under `new`, dropping the pages at `new` and `replaces` (not `old`'s)."""
    from qdrant_client import models

    moving = index.catalogue.pages_at([old])
    if not moving:
        return False
    stale_paths = [p for p in dict.fromkeys((new, *replaces)) if p != old]
    stale = index.catalogue.pages_at(stale_paths)
    _drop(index, stale)
    index.client.set_payload(index.collection, payload={"source": new},
                             points=models.PointIdsList(points=[pid for pid, _ in moving]), wait=True)
    q = index.manifest.store["qdrant"]
    index.update_store(deleted_pages=int(q["deleted_pages"]) + len(stale),
                       deleted_sources=int(q["deleted_sources"]) + len({p["source"] for _, p in stale}))
    return True


def delete(index: QdrantIndex, page_ids: Sequence[str], sources: Sequence[str], as_indexed: bool) -> DeleteReport:
    """Delete pages by id and sources by path (see `IndexBackend.delete`)."""
    given: dict[str, str] = {}
    unknown: list[str] = []
    for source in (str(s) for s in sources):
        path = source if as_indexed else index.find_source(source)
        if path is None:
            unknown.append(source)
        else:
            given.setdefault(path, source)
    found = {pid: p for pid, p in index.catalogue.pages_at(list(given))}
    got = index.client.retrieve(index.collection, [point_id(p) for p in page_ids], with_payload=True) if page_ids else []
    found.update({str(r.id): r.payload for r in got})
    live_ids = {p["page_id"] for p in found.values()}
    paths = {p["source"] for p in found.values()}
    missing = [p for p in page_ids if p not in live_ids] + [given[p] for p in given if p not in paths] + unknown
    _drop(index, list(found.items()))
    gone = []
    for path in paths:  # a source keeps its remaining pages complete (a re-run must not re-add deleted ones)
        left = index.catalogue.count(index.catalogue.where("source", path))
        if left == 0:
            gone.append(path)
        else:
            index.client.set_payload(index.collection, payload={"source_pages": left},
                                     points=index.catalogue.where("source", path), wait=True)
    q = index.manifest.store["qdrant"]
    index.update_store(deleted_pages=int(q["deleted_pages"]) + len(found),
                       deleted_sources=int(q["deleted_sources"]) + len(gone))
    return DeleteReport(len(found), len(gone), tuple(missing))


def _drop(index: QdrantIndex, points: Sequence[tuple[str, Any]]) -> None:
    """Delete points (waited for), then their stored images."""
    from qdrant_client import models

    if not points:
        return
    files = [image_file(index.directory, int(p.get("row", 0)), p["page_id"], p.get("image")) for _, p in points]
    index.client.delete(index.collection, points_selector=models.PointIdsList(points=[pid for pid, _ in points]),
                        wait=True)
    images.remove(files)


__all__ = ["add_sources", "delete", "move_source", "payload_key"]
