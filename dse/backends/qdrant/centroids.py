"""The ``first_stage: sparse-centroids`` option: pages as bags of visual words, a Qdrant sparse vector each.

A k-means codebook of page tokens (FAISS, spherical) is stored in the index directory
(``qdrant-centroids-<key>.npy``, key = 16 hex digits of the sha256 of its content; the manifest
records the key, the size and the generation, never a path, and a load checks all three). Every
page token is assigned its nearest centroid; the page's sparse vector (`Codebook.vector`) holds one
entry per distinct centroid, weighted by `centroid_weight`:

- ``"presence"``: 1;
- ``"count"``: the number of the page's tokens in that centroid;
- ``"sim"`` (default): the best cosine of the page's tokens with that centroid (how well the
  centroid stands for the page's token).

A query token probes its `n_probe` most similar centroids with weight = that similarity; one
sparse dot product then scores a page as the sum, over query tokens, of the similarity of each
probed centroid the page holds (times its page weight): PLAID's centroid interaction with the
max over a page's centroids relaxed to a sum (exact with n_probe=1, where each query token
meets at most one centroid). Qdrant serves it from its sparse inverted index; the candidates are
then ranked by exact MaxSim over the multivector field (`dse.backends.qdrant.query`).

Each generation has its own named sparse vector (``centroids-<generation>``, `Codebook.vector`;
collections made before generations had their own hold every generation in ``centroids``), so
a retrained codebook's vectors are written beside the current ones and queries switch to them
once every page has one (`dse.backends.qdrant.training`). Sparse ids also carry the generation
in their high bits (``generation << 14 | centroid``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

FIRST_STAGES = ("pooled", "sparse-centroids")
WEIGHTS = ("presence", "count", "sim")
DEFAULT_WEIGHT = "sim"
DEFAULT_N_PROBE = 4
DEFAULT_MIN_PAGES = 256  # pages before the first codebook is trained (until then: the pooled prefetch)
DEFAULT_MAX_CENTROIDS = 8192
LEGACY_VECTOR = "centroids"  # the one sparse vector of collections made before a vector per generation
CENTROID_BITS = 14  # ids of one generation: 0 .. 16383
_KEY = re.compile(r"^[0-9a-f]{16}$")


class CentroidsError(ValueError):
    """A sparse-centroids option or codebook file that is not valid: the message names it."""


def check_centroid_options(options: Mapping[str, Any]) -> None:
    """Raise `CentroidsError` unless the first-stage options go together."""
    stage = options.get("first_stage", "pooled")
    if stage not in FIRST_STAGES:
        raise CentroidsError(f"qdrant first_stage {stage!r}: use one of {', '.join(FIRST_STAGES)}")
    own = ("centroid_weight", "centroid_idf", "centroids", "codebook_min_pages", "codebook_retrain")
    if stage != "sparse-centroids":
        given = [k for k in own if k in options]
        if given:
            raise CentroidsError(f"qdrant {', '.join(given)}: only read with first_stage: sparse-centroids")
    if options.get("centroid_weight", DEFAULT_WEIGHT) not in WEIGHTS:
        raise CentroidsError(f"qdrant centroid_weight {options['centroid_weight']!r}: use one of {', '.join(WEIGHTS)}")
    for key in ("centroid_idf", "codebook_retrain"):
        if not isinstance(options.get(key, False), bool):
            raise CentroidsError(f"qdrant {key} must be true or false, got {options[key]!r}")
    for key, low, high in (("centroids", 16, 1 << CENTROID_BITS), ("codebook_min_pages", 1, None),
                           ("n_probe", 1, 1 << CENTROID_BITS), ("prefetch_pooled", 0, None)):
        value = options.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low
                                  or (high is not None and value > high)):
            raise CentroidsError(f"qdrant option {key} must be an integer in [{low}, {high or 'inf'}], got {value!r}")


def size_for(tokens: int, cap: int) -> int:
    """Codebook size for `tokens` page tokens: a power of two near 8 sqrt(tokens), in [16, cap] (PLAID's rule, halved)."""
    target = max(8.0 * np.sqrt(max(tokens, 1)), 16.0)
    return int(min(1 << int(np.floor(np.log2(target))), cap))


def vector_for(generation: int) -> str:
    """The named sparse vector of a generation's page vectors."""
    return f"{LEGACY_VECTOR}-{int(generation)}"


def vector_of(record: Mapping[str, Any]) -> str:
    """The named sparse vector a manifest codebook record's pages are in (older records: ``centroids``)."""
    return str(record.get("vector") or LEGACY_VECTOR)


@dataclass(frozen=True)
class Codebook:
    """One trained codebook: its key (file name), generation (sparse id high bits), unit centroids and
    the named sparse vector its page vectors are written to."""

    key: str
    generation: int
    centroids: np.ndarray  # (size, dim) float32
    vector: str = LEGACY_VECTOR

    def record(self) -> dict[str, Any]:
        """What the manifest keeps of it."""
        return {"key": self.key, "generation": self.generation, "size": len(self.centroids),
                "dim": int(self.centroids.shape[1]), "vector": self.vector}


def train(sample: np.ndarray, size: int, generation: int, seed: int = 0) -> Codebook:
    """Spherical k-means (FAISS) of `size` centroids over a token sample (float32 (n, dim))."""
    import faiss

    x = np.ascontiguousarray(sample, np.float32)  # (n, dim)
    size = min(size, len(x))
    kmeans = faiss.Kmeans(x.shape[1], size, niter=6 if size <= 4096 else 4, spherical=True, seed=seed, verbose=False,
                          max_points_per_centroid=max(1, len(x) // size), min_points_per_centroid=1)
    kmeans.train(x)
    c = np.ascontiguousarray(kmeans.centroids, np.float32)  # (size, dim)
    return Codebook(hashlib.sha256(c.tobytes()).hexdigest()[:16], generation, c, vector_for(generation))


def file_of(directory: Path, key: str) -> Path:
    """The codebook file of `key` in the index directory (the key is checked: never a path)."""
    if not _KEY.match(str(key)):
        raise CentroidsError(f"{directory}: manifest codebook key {key!r} is not 16 hex digits")
    return Path(directory) / f"qdrant-centroids-{key}.npy"


def save(directory: Path, book: Codebook) -> None:
    """Write the codebook file (atomically: a temporary file renamed)."""
    path = file_of(directory, book.key)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, book.centroids)
    tmp.replace(path)


def load(directory: Path, record: Mapping[str, Any]) -> Codebook:
    """The codebook a manifest record names, checked against it (size, dim, content hash)."""
    path = file_of(directory, str(record.get("key")))
    try:
        c = np.ascontiguousarray(np.load(path, allow_pickle=False), np.float32)  # (size, dim)
    except (OSError, ValueError) as exc:
        raise CentroidsError(f"{path}: the codebook the manifest names cannot be read ({exc}); "
                             f"re-create the index") from None
    if (c.ndim != 2 or len(c) != int(record["size"]) or c.shape[1] != int(record["dim"])
            or hashlib.sha256(c.tobytes()).hexdigest()[:16] != record["key"]):
        raise CentroidsError(f"{path}: the codebook does not match the manifest (size {record['size']}, dim "
                             f"{record['dim']}, key {record['key']}): the file was changed; re-create the index")
    return Codebook(str(record["key"]), int(record["generation"]), c, vector_of(record))


class Coder:
    """Sparse vectors of pages (newest codebook) and of queries (every listed codebook: one, but for
    a collection whose retrain was interrupted before a vector per generation)."""

    def __init__(self, books: Sequence[Codebook], weight: str = DEFAULT_WEIGHT) -> None:
        self.books = list(books)
        self.weight = weight
        self._index: dict[str, Any] = {}

    def _assign(self, book: Codebook, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cosine, centroid) of each token's nearest centroid: float32 (T,), int64 (T,)."""
        import faiss

        if book.key not in self._index:
            dim = book.centroids.shape[1]
            if len(book.centroids) > 4096:
                index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction, index.hnsw.efSearch = 64, 48
            else:
                index = faiss.IndexFlatIP(dim)
            index.add(book.centroids)
            self._index[book.key] = index
        sims, codes = self._index[book.key].search(np.ascontiguousarray(tokens, np.float32), 1)  # (T, 1) each
        return sims[:, 0], codes[:, 0]

    def pages(self, pages: Sequence[np.ndarray]) -> list[tuple[list[int], list[float]]]:
        """(indices, values) of each page's sparse vector over the newest codebook."""
        book = self.books[-1]
        arrays = [np.asarray(p, np.float32).reshape(-1, book.centroids.shape[1]) for p in pages]
        sims, codes = self._assign(book, np.concatenate(arrays))  # (T,), (T,)
        out, start = [], 0
        for arr in arrays:
            s, c = sims[start:start + len(arr)], codes[start:start + len(arr)]
            start += len(arr)
            ids, inverse, counts = np.unique(c, return_inverse=True, return_counts=True)
            if self.weight == "presence":
                values = np.ones(len(ids), np.float32)
            elif self.weight == "count":
                values = counts.astype(np.float32)
            else:
                values = np.full(len(ids), -np.inf, np.float32)
                np.maximum.at(values, inverse, s)
                values = np.maximum(values, 1e-3)  # Qdrant scores by dot product: keep weights positive
            out.append(((ids + (book.generation << CENTROID_BITS)).tolist(), values.tolist()))
        return out

    def query(self, tokens: np.ndarray, n_probe: int) -> tuple[list[int], list[float]]:
        """The sparse vector of a query: each token's `n_probe` best centroids of every codebook, by cosine."""
        q = np.asarray(tokens, np.float32)  # (nq, dim)
        ids: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        for book in self.books:
            sims = q @ book.centroids.T  # (nq, size)
            n = min(n_probe, sims.shape[1])
            top = np.argpartition(-sims, n - 1, axis=1)[:, :n]  # (nq, n)
            ids.append(top.reshape(-1) + (book.generation << CENTROID_BITS))
            vals.append(np.take_along_axis(sims, top, axis=1).reshape(-1))
        all_ids, all_vals = np.concatenate(ids), np.maximum(np.concatenate(vals), 0.0)
        uniq, inverse = np.unique(all_ids, return_inverse=True)
        summed = np.zeros(len(uniq), np.float64)
        np.add.at(summed, inverse, all_vals)  # a centroid probed by several query tokens counts for each
        keep = summed > 0
        return uniq[keep].tolist(), summed[keep].tolist()


class Codebooks:
    """Coders of the codebooks the manifest names: for queries (the probed list) and for pages (one each)."""

    def __init__(self, directory: Path, weight: str) -> None:
        self.directory = Path(directory)
        self.weight = weight
        self._books: dict[str, Codebook] = {}
        self._query: Coder | None = None
        self._pages: dict[str, Coder] = {}

    def _book(self, record: Mapping[str, Any]) -> Codebook:
        key = str(record["key"])
        if key not in self._books:
            self._books = {**dict(list(self._books.items())[-3:]), key: load(self.directory, record)}
        return self._books[key]

    def query_coder(self, records: Sequence[Mapping[str, Any]]) -> Coder | None:
        """The `Coder` queries probe these codebook records with (None for none)."""
        if not records:
            return None
        keys = tuple(str(r["key"]) for r in records)
        if self._query is None or tuple(b.key for b in self._query.books) != keys:
            self._query = Coder([self._book(r) for r in records], self.weight)
        return self._query

    def page_coder(self, record: Mapping[str, Any]) -> Coder:
        """The `Coder` of pages for one codebook record."""
        key = str(record["key"])
        if key not in self._pages:
            kept = list(self._pages.items())[-1:]  # the current codebook's beside the next one's
            self._pages = {**dict(kept), key: Coder([self._book(record)], self.weight)}
        return self._pages[key]
