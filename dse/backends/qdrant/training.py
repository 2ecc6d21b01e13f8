"""When the sparse-centroids codebook is trained, retrained and applied to the pages already stored.

Run by a writer after each add (under the index's write lock; `dse.backends.qdrant.writes`), like
the embedded cascade (`dse.engines.cascade.retrain`): the first codebook once the collection holds
`codebook_min_pages` pages, then a new one each time the page count crosses ``min_pages * 2**j``
(`due`), trained on a uniform sample of every stored page's tokens, so that later documents'
tokens are not left far from every centroid once the size cap is reached
(``codebook_retrain: false``: the earlier rule, a new codebook only while the size rule doubles
it, frozen at the cap). The manifest's ``store.qdrant.centroids`` records:

- ``codebooks``: the codebook searches probe (complete: every page has its vector); empty until
  the first one is applied (searches use the pooled prefetch meanwhile);
- ``next``: the codebook being applied, whose pages' vectors are written to its own named sparse
  vector beside the current one (``centroids-<generation>``; new pages get both), with ``pending``
  true and ``offset`` the scroll position reached (pages are rewritten in point-id order);
- ``stale``: replaced codebooks whose vector is still to be removed;
- ``tokens`` (page tokens added so far, for the size rule) and ``trained_at`` (pages then).

Every pass over the collection (sampling, re-encoding) scrolls it in batches of `BATCH` pages,
so memory stays bounded at any size. A writer killed mid-way leaves ``pending`` set: the next add
goes on from ``offset`` (rewriting a page twice is harmless). Once every page has the new vector,
one manifest write switches searches to it, then the old vector is removed (a reader that read
the manifest just before retries on the new one: `QdrantIndex.search`); codebook files are kept
one generation longer.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from dse.backends.qdrant import centroids as cents
from dse.backends.qdrant.schema import MULTI, add_sparse_vector, drop_vector

QdrantIndex = Any  # dse.backends.qdrant.backend.QdrantIndex (which imports this module)

BATCH = 64  # pages read back and rewritten per request (a page of 768 x 128 tokens is ~3 MB as Python floats)
SAMPLE_PER_CENTROID = 16  # k-means training tokens per centroid (8 above 4096 centroids)


def state_of(store_qdrant: dict[str, Any]) -> dict[str, Any]:
    """The centroids state a manifest's `store.qdrant` records (empty for a new index).

    A state written before a vector per generation with a re-encode under way (``pending``, no
    ``next``) goes on as it was: the newest listed codebook is the one being applied.
    """
    state = dict(store_qdrant.get("centroids") or {})
    books = list(state.get("codebooks") or [])
    nxt = state.get("next")
    if state.get("pending") and nxt is None and books:  # the layout before `next`: one vector for all
        nxt, books = books[-1], books if len(books) > 1 else []
    return {"codebooks": books, "next": nxt, "pending": nxt is not None, "offset": state.get("offset"),
            "stale": list(state.get("stale") or []), "tokens": int(state.get("tokens", 0)),
            "trained_at": state.get("trained_at")}


def targets(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The codebook records whose vectors a new page gets: the current one, and the one being applied."""
    out = {cents.vector_of(b): b for b in [*state["codebooks"][-1:], *([state["next"]] if state["next"] else [])]}
    return list(out.values())


def due(trained_at: int, pages: int, min_pages: int) -> bool:
    """True when the collection has crossed ``min_pages * 2**j`` pages since the codebook was trained."""
    level = lambda n: int(np.floor(np.log2(max(n, 1) / min_pages))) if n >= min_pages else -1  # noqa: E731
    return level(pages) > level(trained_at)


def maintain(index: QdrantIndex, added_tokens: int) -> None:
    """After an add: count its tokens, then finish, train or retrain as the module says."""
    options = index.options
    state = state_of(index.manifest.store["qdrant"])
    state["tokens"] += int(added_tokens)
    books = state["codebooks"]
    pages = index.catalogue.count()
    min_pages = int(options.get("codebook_min_pages", cents.DEFAULT_MIN_PAGES))
    size = cents.size_for(state["tokens"], int(options.get("centroids", cents.DEFAULT_MAX_CENTROIDS)))
    trained_at = int(state["trained_at"] if state["trained_at"] is not None else min_pages)
    if state["pending"]:
        _reencode(index, state)
    elif state["stale"]:
        _collect(index, state)
    elif not books and pages >= min_pages:
        _retrain(index, state, size, pages)
    elif books and options.get("codebook_retrain", True) and due(trained_at, pages, min_pages):
        _retrain(index, state, size, pages)
    elif books and not options.get("codebook_retrain", True) and size >= 2 * int(books[-1]["size"]):
        _retrain(index, state, size, pages)
    else:
        index.update_store(centroids=state)


def _retrain(index: QdrantIndex, state: dict[str, Any], size: int, pages: int) -> None:
    """Train a codebook of `size` on a sample of the stored tokens, add its vector, re-encode every page."""
    last = [b for b in (*state["codebooks"], *state["stale"]) if b]
    generation = max((int(b["generation"]) for b in last), default=0) + 1
    book = cents.train(_sample(index, size, state["tokens"], pages, generation), size, generation)
    cents.save(index.directory, book)
    add_sparse_vector(index.client, index.collection, book.vector, bool(index.options.get("centroid_idf")))
    state.update(next=book.record(), pending=True, offset=None, trained_at=pages)
    index.update_store(centroids=state)  # from now on new pages get both vectors
    _reencode(index, state)


def _sample(index: QdrantIndex, size: int, tokens: int, pages: int, seed: int) -> np.ndarray:
    """A uniform sample of stored page tokens for a codebook of `size`: float32 (n, dim).

    Pages are drawn uniformly by their position in one scroll over point ids (only the drawn ids
    are kept), read back in batches, and their tokens sub-sampled uniformly to the target.
    """
    per = SAMPLE_PER_CENTROID if size <= 4096 else SAMPLE_PER_CENTROID // 2
    want = size * per
    avg = max(1.0, tokens / max(pages, 1))
    rng = np.random.default_rng(seed)
    n_pages = min(pages, int(np.ceil(want / avg)) + 1)
    drawn = set(rng.choice(pages, n_pages, replace=False).tolist()) if pages else set()
    picked = [pid for pos, pid in enumerate(_ids(index)) if pos in drawn]
    parts = [t for start in range(0, len(picked), BATCH) for _, t in _vectors(index, picked[start:start + BATCH])]
    sample = np.concatenate(parts)  # (n, dim)
    if len(sample) > want:
        sample = sample[np.sort(rng.choice(len(sample), want, replace=False))]
    return sample


def _reencode(index: QdrantIndex, state: dict[str, Any]) -> None:
    """Write the `next` codebook's vector of every page from `offset` on, then switch searches to it."""
    from qdrant_client import models

    record = state["next"]
    coder = index.page_coder(record)
    vector = cents.vector_of(record)
    offset = state["offset"]
    while True:
        points, offset = index.client.scroll(index.collection, limit=BATCH, offset=offset, with_payload=False,
                                             with_vectors=[MULTI])
        got = [(str(p.id), np.asarray(p.vector[MULTI], np.float32)) for p in points if p.vector]  # (tokens, dim)
        if got:
            sparse = coder.pages([t for _, t in got])
            index.client.update_vectors(index.collection, points=[
                models.PointVectors(id=pid, vector={vector: models.SparseVector(indices=i, values=v)})
                for (pid, _), (i, v) in zip(got, sparse)], wait=True)
        if offset is None:
            break
        state["offset"] = str(offset)
        index.update_store(recount=False, centroids=state)  # a killed writer goes on from here
    replaced = [b for b in state["codebooks"] if b["key"] != record["key"]]
    state.update(codebooks=[record], next=None, pending=False, offset=None, stale=[*state["stale"], *replaced])
    index.update_store(centroids=state)  # searches use the new vector from now on
    _collect(index, state)


def _collect(index: QdrantIndex, state: dict[str, Any]) -> None:
    """Remove the vectors of replaced codebooks (not the current one's) and codebook files two generations old."""
    live = {cents.vector_of(b) for b in targets(state)}
    for book in state["stale"]:
        if cents.vector_of(book) not in live:
            drop_vector(index.client, index.collection, cents.vector_of(book))
    keep = {b["key"] for b in (*targets(state), *state["stale"])}  # the previous file: readers may still load it
    for path in index.directory.glob("qdrant-centroids-*.npy"):
        if path.stem.rsplit("-", 1)[-1] not in keep:
            path.unlink(missing_ok=True)
    state["stale"] = []
    index.update_store(centroids=state)


def _ids(index: QdrantIndex) -> Iterator[str]:
    """Every point id, in point-id order, `BATCH` per scroll request."""
    offset = None
    while True:
        points, offset = index.client.scroll(index.collection, limit=BATCH, offset=offset, with_payload=False,
                                             with_vectors=False)
        yield from (str(p.id) for p in points)
        if offset is None:
            return


def _vectors(index: QdrantIndex, ids: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    """(point id, float32 (tokens, dim)) of the stored pages `ids` (pages deleted meanwhile are skipped)."""
    for r in index.client.retrieve(index.collection, ids, with_payload=False, with_vectors=[MULTI]):
        yield str(r.id), np.asarray(r.vector[MULTI], np.float32)  # (tokens, dim)
