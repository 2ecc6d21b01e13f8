"""When the sparse-centroids codebook is trained, retrained and applied to the pages already stored.

Run by a writer after each add (under the index's write lock; `dse.backends.qdrant.writes`). The
manifest's ``store.qdrant.centroids`` records ``codebooks`` (the ones queries probe, newest last),
``tokens`` (page tokens added so far) and ``pending`` (a re-encode is under way). Steps:

- no codebook yet and at least `codebook_min_pages` pages: train one (generation 1); until then
  searches use the pooled prefetch;
- the corpus has grown so that `centroids.size_for` gives at least twice the codebook's size:
  train a new generation on a sample of the stored tokens (read back from the multivector field);
- after training, every stored page's sparse vector is rewritten with the new codebook in batches
  (``update_vectors``), while the manifest lists both codebooks so queries probe both and every
  page is found by the one it is encoded with; then the old one is dropped from the manifest.

A writer killed mid-way leaves ``pending`` set and both codebooks listed: the next add finishes
the re-encode (rewriting a page twice is harmless). Codebook files are only removed two
generations later, so a reader that read the manifest just before a swap still finds its file.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from dse.backends.qdrant import centroids as cents
from dse.backends.qdrant.schema import CENTROIDS, MULTI

QdrantIndex = Any  # dse.backends.qdrant.backend.QdrantIndex (which imports this module)

BATCH = 256  # pages read back and rewritten per request
SAMPLE_PER_CENTROID = 16  # k-means training tokens per centroid (8 above 4096 centroids)


def state_of(store_qdrant: dict[str, Any]) -> dict[str, Any]:
    """The centroids state a manifest's `store.qdrant` records (empty for a new index)."""
    state = dict(store_qdrant.get("centroids") or {})
    return {"codebooks": list(state.get("codebooks") or []), "tokens": int(state.get("tokens", 0)),
            "pending": bool(state.get("pending", False))}


def maintain(index: QdrantIndex, added_tokens: int) -> None:
    """After an add: count its tokens, then train, retrain or finish a re-encode as the module says."""
    options = index.options
    state = state_of(index.manifest.store["qdrant"])
    state["tokens"] += int(added_tokens)
    books = state["codebooks"]
    pages = index.catalogue.count()
    size = cents.size_for(state["tokens"], int(options.get("centroids", cents.DEFAULT_MAX_CENTROIDS)))
    if state["pending"]:
        _reencode(index, state)
    elif not books and pages >= int(options.get("codebook_min_pages", cents.DEFAULT_MIN_PAGES)):
        _retrain(index, state, size, pages)
    elif books and size >= 2 * int(books[-1]["size"]):
        _retrain(index, state, size, pages)
    else:
        index.update_store(centroids=state)


def _retrain(index: QdrantIndex, state: dict[str, Any], size: int, pages: int) -> None:
    """Train a codebook of `size` on stored tokens, list it beside the old one, re-encode every page."""
    generation = int(state["codebooks"][-1]["generation"]) + 1 if state["codebooks"] else 1
    per = SAMPLE_PER_CENTROID if size <= 4096 else SAMPLE_PER_CENTROID // 2
    avg = max(1.0, state["tokens"] / max(pages, 1))
    ids = [pid for pid, _ in index.catalogue.scroll(fields=["page_id"])]
    rng = np.random.default_rng(generation)
    want = min(len(ids), int(np.ceil(size * per / avg)) + 1)
    picked = sorted(rng.choice(len(ids), want, replace=False).tolist())
    sample = np.concatenate([t for _, t in _tokens(index, [ids[i] for i in picked])])  # (n, dim)
    if len(sample) > size * per:
        sample = sample[np.sort(rng.choice(len(sample), size * per, replace=False))]
    book = cents.train(sample, size, generation)
    cents.save(index.directory, book)
    state["codebooks"] = [*state["codebooks"][-1:], book.record()]
    state["pending"] = True
    index.update_store(centroids=state)  # queries now probe both generations
    _reencode(index, state, ids)


def _reencode(index: QdrantIndex, state: dict[str, Any], ids: Sequence[str] | None = None) -> None:
    """Rewrite every page's sparse vector with the newest codebook, then drop the older ones."""
    from qdrant_client import models

    newest = state["codebooks"][-1]
    coder = cents.Coder([cents.load(index.directory, newest)], index.options.get("centroid_weight",
                                                                                 cents.DEFAULT_WEIGHT))
    if ids is None:
        ids = [pid for pid, _ in index.catalogue.scroll(fields=["page_id"])]
    for start in range(0, len(ids), BATCH):
        got = list(_tokens(index, ids[start:start + BATCH]))
        if not got:
            continue
        sparse = coder.pages([t for _, t in got])
        index.client.update_vectors(index.collection, points=[
            models.PointVectors(id=pid, vector={CENTROIDS: models.SparseVector(indices=i, values=v)})
            for (pid, _), (i, v) in zip(got, sparse)], wait=True)
    keep = {b["key"] for b in state["codebooks"]}  # the newest and the one it replaces
    state["codebooks"] = [newest]
    state["pending"] = False
    index.update_store(centroids=state)
    for path in index.directory.glob("qdrant-centroids-*.npy"):  # two generations old: no reader needs it
        if path.stem.rsplit("-", 1)[-1] not in keep:
            path.unlink(missing_ok=True)


def _tokens(index: QdrantIndex, ids: Sequence[str]) -> Iterator[tuple[str, np.ndarray]]:
    """(point id, float32 (tokens, dim)) of the stored pages `ids` (pages deleted meanwhile are skipped)."""
    for start in range(0, len(ids), BATCH):
        for r in index.client.retrieve(index.collection, list(ids[start:start + BATCH]), with_payload=False,
                                       with_vectors=[MULTI]):
            yield str(r.id), np.asarray(r.vector[MULTI], np.float32)  # (tokens, dim)
