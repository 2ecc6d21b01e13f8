"""A seeded synthetic corpus shaped like ColQwen2 page embeddings, generated page by page.

How it is built (all vectors L2-normalised, dim 128 by default):
- `topics` global topic directions (random unit vectors), and 8 global "background" directions
  (blank margins, white space: near-duplicate patches shared by every page).
- Page i (its own generator seeded with (seed, i), so any page can be regenerated alone) draws
  3 topics and 24 page centroids, each ``topic + 0.8 * g`` (g ~ N(0, I/dim), |g| ~ 1).
- Its 768 tokens: 75% content tokens ``centroid + 0.6 * g``, 25% background ``bg + 0.2 * g``.
- A query for target page i: 20 fresh (held-out) content tokens of page i, drawn from its
  centroids with the same noise (the stored tokens never appear in the query).
"""

from __future__ import annotations

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class Corpus:
    """Deterministic generator of pages and queries (see the module docstring)."""

    def __init__(self, seed: int = 0, tokens: int = 768, dim: int = 128, topics: int = 256) -> None:
        rng = np.random.default_rng([seed, 1 << 30])
        self.seed, self.tokens, self.dim = seed, tokens, dim
        self.topics = _unit(rng.standard_normal((topics, dim)))  # (topics, dim)
        self.background = _unit(rng.standard_normal((8, dim)))  # (8, dim)

    def _noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.standard_normal((n, self.dim), dtype=np.float32) / np.sqrt(self.dim)  # (n, dim)

    def _centroids(self, rng: np.random.Generator) -> np.ndarray:
        topics = self.topics[rng.choice(len(self.topics), 3, replace=False)]  # (3, dim)
        return _unit(topics[rng.integers(0, 3, 24)] + 0.8 * self._noise(rng, 24))  # (24, dim)

    def page(self, i: int) -> np.ndarray:
        """Page i: float32 (tokens, dim)."""
        rng = np.random.default_rng([self.seed, i])
        centroids = self._centroids(rng)
        n_bg = self.tokens // 4
        content = centroids[rng.integers(0, 24, self.tokens - n_bg)] + 0.6 * self._noise(rng, self.tokens - n_bg)
        background = self.background[rng.integers(0, 8, n_bg)] + 0.2 * self._noise(rng, n_bg)
        return _unit(np.concatenate([content, background]))  # (tokens, dim)

    def query(self, target: int, n_tokens: int = 20) -> np.ndarray:
        """A query for page `target`: float32 (n_tokens, dim) of held-out content tokens."""
        rng = np.random.default_rng([self.seed, target])
        centroids = self._centroids(rng)  # the same draws as `page`
        qrng = np.random.default_rng([self.seed, target, 7])
        return _unit(centroids[qrng.integers(0, 24, n_tokens)] + 0.6 * self._noise(qrng, n_tokens))


def maxsim(queries: list[np.ndarray], pages: list[np.ndarray]) -> np.ndarray:
    """Exact MaxSim float32 (n_queries, n_pages), float32 BLAS, pages of equal length."""
    q = np.concatenate(queries)  # (query_tokens, dim)
    starts = np.cumsum([0] + [len(x) for x in queries[:-1]])  # (nq,)
    tokens = np.stack(pages)  # (n_pages, tokens, dim)
    sim = (q @ tokens.reshape(-1, tokens.shape[2]).T).reshape(len(q), len(pages), -1).max(axis=2)  # (qt, n_pages)
    return np.add.reduceat(sim, starts, axis=0)  # (nq, n_pages)
