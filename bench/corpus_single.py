"""Bench corpora for single-vector search (bench/single.py): a realistic generator and the old easy one.

`RealisticSingle` (the default) has, each as a parameter (`--gen key=value,...`), the properties
that make real DSE page vectors hard for approximate search:

- documents of many consecutive pages (geometric lengths, mean `doc_pages`), as `dse index`
  commits them; each page is its document's vector plus a small page-specific part
  (`page_part`), so siblings are near-duplicates (cosine about 0.9);
- documents grouped in `topics` (about `docs_per_topic` documents each): a document vector is
  its topic centre plus `doc_spread` of noise;
- a shared cone: every page has `cone` of one common mean direction, as real embeddings do
  (cosine between random pages about 0.2-0.4);
- queries offset by a modality gap: a query is ``q_page * specific part of its target
  + q_doc * its document + gap * g + q_noise * noise`` with `g` one global "query" direction, so
  its cosine to the right page is about 0.4-0.7 and only a little above its siblings';
  `q_topic` (default 0) adds its topic centre, so that other documents of the topic compete
  with the siblings for the top 10 (a query about a subject rather than one document).

Noise is N(0, I / dim) (norm about 1). Pages are generated in fixed seeded chunks of `CHUNK`
pages, so any range can be regenerated and a query's target re-derived without holding the
corpus. `EasySingle` is the generator bench/single.py used before (pages around random topic
centres, queries ``page + 0.6 * noise``): labelled "easy", it flatters every approximate index.
"""

from __future__ import annotations

import numpy as np

from corpus_late import documents

CHUNK = 4096  # pages generated together (the unit of reproducibility)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def parse_gen(text: str) -> dict[str, float]:
    """Generator parameters from "key=value,..." (ints stay ints)."""
    out: dict[str, float] = {}
    for kv in (s for s in text.split(",") if s):
        key, value = kv.split("=")
        out[key] = float(value) if any(c in value for c in ".e") else int(value)
    return out


class RealisticSingle:
    """Documents of near-duplicate pages, grouped in topics, in a shared cone; modality-gapped queries."""

    def __init__(
        self, pages: int, seed: int = 0, dim: int = 1536, doc_pages: float = 24.0, docs_per_topic: float = 12.0,
        doc_spread: float = 1.0, page_part: float = 0.5, cone: float = 0.75, q_page: float = 0.08,
        q_doc: float = 0.5, gap: float = 0.45, q_noise: float = 0.6, q_topic: float = 0.0,
    ) -> None:
        self.n, self.seed, self.dim = pages, seed, dim
        self.params = {"doc_pages": doc_pages, "docs_per_topic": docs_per_topic, "doc_spread": doc_spread,
                       "page_part": page_part, "cone": cone, "q_page": q_page, "q_doc": q_doc, "gap": gap,
                       "q_noise": q_noise, "q_topic": q_topic}
        self.page_part, self.cone = page_part, cone
        self.q_page, self.q_doc, self.gap, self.q_noise, self.q_topic = q_page, q_doc, gap, q_noise, q_topic
        rng = np.random.default_rng([seed, 1 << 30])
        self.doc_starts, self.doc_of = documents(rng, pages, doc_pages)
        n_docs = len(self.doc_starts) - 1
        n_topics = max(1, int(round(n_docs / docs_per_topic)))
        self.mean = _unit(rng.standard_normal((1, dim)))[0]  # (dim,) the cone's axis
        self.query_dir = _unit(rng.standard_normal((1, dim)))[0]  # (dim,) the modality gap's direction
        topics = _unit(rng.standard_normal((n_topics, dim)))  # (topics, dim)
        topic_of = rng.integers(0, n_topics, n_docs)  # (docs,)
        self.docs = _unit(topics[topic_of] + doc_spread * self._noise(rng, n_docs))  # (docs, dim)
        self.topic_dirs = topics[topic_of]  # (docs, dim) each document's topic centre
        self.n_topics = n_topics
        self._cached: tuple[int, np.ndarray] | None = None

    def _noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.standard_normal((n, self.dim), dtype=np.float32) / np.float32(np.sqrt(self.dim))  # (n, dim)

    def _specific(self, chunk: int) -> np.ndarray:
        """Page-specific parts of chunk `chunk`'s pages: float32 (<= CHUNK, dim)."""
        if self._cached is None or self._cached[0] != chunk:
            n = min(CHUNK, self.n - chunk * CHUNK)
            self._cached = (chunk, self._noise(np.random.default_rng([self.seed, 2, chunk]), n))
        return self._cached[1]

    def pages(self, a: int, b: int) -> np.ndarray:
        """Unit page vectors [a, b): float32 (b - a, dim)."""
        out = np.empty((b - a, self.dim), np.float32)  # (b - a, dim)
        for c in range(a // CHUNK, (b - 1) // CHUNK + 1 if b > a else a // CHUNK):
            lo, hi = max(a, c * CHUNK), min(b, (c + 1) * CHUNK)
            spec = self._specific(c)[lo - c * CHUNK : hi - c * CHUNK]  # (hi - lo, dim)
            raw = self.cone * self.mean + self.docs[self.doc_of[lo:hi]] + self.page_part * spec
            out[lo - a : hi - a] = _unit(raw)
        return out

    def queries(self, targets: np.ndarray) -> np.ndarray:
        """One query per target page: float32 (len(targets), dim), unit rows."""
        rng = np.random.default_rng([self.seed, 3])
        out = np.empty((len(targets), self.dim), np.float32)  # (nq, dim)
        for j, t in enumerate(np.asarray(targets, np.int64)):
            spec = self._specific(int(t) // CHUNK)[int(t) % CHUNK]  # (dim,)
            doc = self.doc_of[t]
            raw = (self.q_page * spec + self.q_doc * self.docs[doc] + self.q_topic * self.topic_dirs[doc]
                   + self.gap * self.query_dir + self.q_noise * self._noise(rng, 1)[0])
            out[j] = _unit(raw[None])[0]
        return out

    def describe(self) -> dict:
        return {"kind": "realistic", "pages": self.n, "dim": self.dim, "documents": len(self.doc_starts) - 1,
                "topics": self.n_topics, **self.params}


class EasySingle:
    """The earlier generator: pages ``centre + noise * g`` around `topics` random centres, queries
    ``page + 0.6 * g`` of a target page (labelled "easy")."""

    def __init__(self, pages: int, seed: int = 0, dim: int = 1536, topics: int = 2000, noise: float = 0.8) -> None:
        self.n, self.seed, self.dim, self.topics, self.noise = pages, seed, dim, topics, noise
        self.centres = _unit(np.random.default_rng([seed, 1]).standard_normal((topics, dim)))  # (topics, dim)
        self.doc_starts = np.arange(pages + 1, dtype=np.int64)  # one page a document

    def _chunk(self, c: int) -> np.ndarray:
        n = min(CHUNK, self.n - c * CHUNK)
        rng = np.random.default_rng([self.seed, c * CHUNK])
        g = rng.standard_normal((n, self.dim), dtype=np.float32) / np.sqrt(self.dim)  # (n, dim)
        return _unit(self.centres[rng.integers(0, self.topics, n)] + self.noise * g)

    def pages(self, a: int, b: int) -> np.ndarray:
        if b <= a:
            return np.zeros((0, self.dim), np.float32)
        parts = [self._chunk(c) for c in range(a // CHUNK, (b - 1) // CHUNK + 1)]
        return np.concatenate(parts)[a - (a // CHUNK) * CHUNK : b - (a // CHUNK) * CHUNK]  # (b - a, dim)

    def queries(self, targets: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 3])
        rows = np.stack([self.pages(int(t), int(t) + 1)[0] for t in targets])  # (nq, dim)
        return _unit(rows + 0.6 * rng.standard_normal(rows.shape).astype(np.float32) / np.sqrt(self.dim))

    def describe(self) -> dict:
        return {"kind": "easy", "pages": self.n, "dim": self.dim, "topics": self.topics, "noise": self.noise}


def cosines(corpus, vectors: np.ndarray, queries: np.ndarray, targets: np.ndarray, seed: int = 0) -> dict:  # noqa: ANN001
    """Typical cosines of a corpus: random page pairs, sibling pages, a query to its target and to
    the best sibling of its target (pages of the same document)."""
    rng = np.random.default_rng([seed, 7])
    n = len(vectors)
    a, b = rng.integers(0, n, 2000), rng.integers(0, n, 2000)
    starts = corpus.doc_starts
    doc = np.searchsorted(starts, targets, side="right") - 1  # (nq,)
    q_target, q_sibling, sib = [], [], []
    for j, t in enumerate(targets):
        lo, hi = int(starts[doc[j]]), int(starts[doc[j] + 1])
        s = vectors[lo:hi] @ queries[j]  # (doc pages,)
        q_target.append(float(s[t - lo]))
        if hi - lo > 1:
            q_sibling.append(float(np.max(np.delete(s, t - lo))))
            sib.append(float(np.mean(np.delete(vectors[lo:hi] @ vectors[t], t - lo))))
    return {"random_pages": float(np.mean(np.sum(vectors[a] * vectors[b], axis=1))),
            "sibling_pages": float(np.mean(sib)) if sib else None,
            "query_target": float(np.mean(q_target)),
            "query_best_sibling": float(np.mean(q_sibling)) if q_sibling else None}
