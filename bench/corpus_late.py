"""Bench corpora for multi-vector search: a realistic generator, the old easy one, real embeddings.

`RealisticCorpus` (the default of bench/late.py) has, each as a parameter, the properties that
make real ColQwen2 output hard for approximate late interaction:

- documents of many pages sharing a template: a document draws `template_words` visual words,
  and `template_share` of each page's content tokens come from them (layout, headers, logos,
  recurring text), so siblings are near-duplicates that differ in a few words;
- Zipf-distributed visual words (exponent `zipf`) from a vocabulary of `vocab` words that are
  themselves grouped in `word_clusters` semantic clusters (words of a cluster have cosine about
  0.5), so common words appear on most pages;
- a large share (`background`) of near-identical background patches (8 global directions,
  noise `bg_noise`);
- all page tokens in one cone (`cone`: weight of a shared mean direction);
- queries offset from image tokens by a modality gap: a query token is ``word_w * w + gap * m
  + noise`` with `m` one global "text" direction, so its best-match cosine to the right page is
  0.3-0.6 and lower to the others (printed by the bench);
- generic query-augmentation tokens (`aug_tokens`, the "Query:" prefix and padding tokens
  ColQwen2 appends): the same few directions in every query, each close to a background
  direction, so every page scores about the same on them (near-ties).

Every page is generated alone from (seed, page) (the corpus is never held in memory); pages of
a document are consecutive, as `dse index` commits them. `EasyCorpus` is the earlier generator
(bench/late_corpus.py, private page centroids: flatters the cascade); `NpzCorpus` reads real
embeddings exported by `dse export-vectors`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class RealisticCorpus:
    """Templated documents of Zipf visual words, background patches, modality-gapped queries."""

    def __init__(
        self, pages: int, seed: int = 0, tokens: int = 768, dim: int = 128, vocab: int = 32768,
        word_clusters: int = 2048, word_spread: float = 1.0, zipf: float = 1.0, doc_pages: float = 24.0,
        template_words: int = 96, template_share: float = 0.8, page_words: int = 16, background: float = 0.4,
        bg_noise: float = 0.15, token_noise: float = 0.5, cone: float = 0.3, query_words: int = 12,
        query_template_share: float = 0.6, word_weight: float = 0.45, gap: float = 0.55, query_noise: float = 0.7,
        aug_tokens: int = 8,
    ) -> None:
        self.n, self.seed, self.tokens, self.dim = pages, seed, tokens, dim
        self.template_words, self.template_share, self.page_words = template_words, template_share, page_words
        self.background, self.bg_noise, self.token_noise, self.cone = background, bg_noise, token_noise, cone
        self.query_words, self.query_template_share = query_words, query_template_share
        self.word_weight, self.gap, self.query_noise, self.aug_tokens = word_weight, gap, query_noise, aug_tokens
        self._table: np.ndarray | None = None  # noise rows, drawn on first use
        rng = np.random.default_rng([seed, 1 << 30])
        centres = _unit(rng.standard_normal((word_clusters, dim)))  # (clusters, dim)
        self.words = _unit(centres[rng.integers(0, word_clusters, vocab)]
                           + word_spread * rng.standard_normal((vocab, dim)) / np.sqrt(dim))  # (vocab, dim)
        p = 1.0 / np.arange(1, vocab + 1) ** zipf
        self.word_cdf = np.cumsum(p / p.sum())  # Zipf over word ranks (ranks = rows: the rows are random anyway)
        self.mean = _unit(rng.standard_normal((1, dim)))[0]  # (dim,) the image tokens' cone
        self.text = _unit(rng.standard_normal((1, dim)))[0]  # (dim,) the modality gap direction
        self.bg = _unit(rng.standard_normal((8, dim)))  # (8, dim)
        self.aug = _unit(self.bg[np.arange(aug_tokens) % 8] + 0.8 * rng.standard_normal((aug_tokens, dim)) / np.sqrt(dim))
        self.doc_starts, self.doc_of = documents(rng, pages, doc_pages)

    def _noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Gaussian noise N(0, I / dim) (rows of a seeded table with random signs: 20x faster than drawing)."""
        if self._table is None:
            self._table = np.random.default_rng([self.seed, 2]).standard_normal((1 << 20, self.dim), dtype=np.float32)
            self._table /= np.float32(np.sqrt(self.dim))
        sign = np.where(rng.random(n) < 0.5, np.float32(-1), np.float32(1))[:, None]
        return self._table[rng.integers(0, len(self._table), n)] * sign  # (n, dim)

    def _zipf(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.minimum(np.searchsorted(self.word_cdf, rng.random(n)), len(self.words) - 1)  # (n,) word ids

    def _template(self, doc: int) -> np.ndarray:
        return self._zipf(np.random.default_rng([self.seed, 3, doc]), self.template_words)

    def _page_words(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Template words page i uses (with weights) and its own words."""
        template = self._template(int(self.doc_of[i]))
        rng = np.random.default_rng([self.seed, 4, i])
        own = self._zipf(rng, self.page_words)
        used = rng.random(len(template)) < 0.7  # each page shows most of its document's template
        return template[used] if used.any() else template, own

    def page(self, i: int) -> np.ndarray:
        """Page i: float32 (tokens, dim)."""
        template, own = self._page_words(i)
        rng = np.random.default_rng([self.seed, 5, i])
        n_bg = int(round(self.tokens * self.background))
        n_content = self.tokens - n_bg
        n_template = int(round(n_content * self.template_share))
        words = np.concatenate([template[rng.integers(0, len(template), n_template)],
                                own[rng.integers(0, len(own), n_content - n_template)]])
        content = self.words[words] + self.token_noise * self._noise(rng, n_content)
        bg = self.bg[rng.integers(0, 8, n_bg)] + self.bg_noise * self._noise(rng, n_bg)
        return _unit(np.concatenate([content, bg]) + self.cone * self.mean)  # (tokens, dim)

    def query(self, target: int) -> np.ndarray:
        """A query for page `target`: float32 (query_words + aug_tokens, dim)."""
        template, own = self._page_words(target)
        rng = np.random.default_rng([self.seed, 6, target])
        n_template = int(round(self.query_words * self.query_template_share))
        words = np.concatenate([rng.choice(template, n_template), rng.choice(own, self.query_words - n_template)])
        q = self.word_weight * self.words[words] + self.gap * self.text + self.query_noise * self._noise(rng, len(words))
        aug = self.aug + self.gap * self.text + 0.3 * self._noise(rng, self.aug_tokens)
        return _unit(np.concatenate([q, aug]))

    def describe(self) -> dict:
        return {"kind": "realistic", "pages": self.n, "documents": len(self.doc_starts) - 1, "tokens": self.tokens,
                "dim": self.dim, "query_tokens": self.query_words + self.aug_tokens}


class EasyCorpus:
    """The earlier generator (bench/late_corpus.py): private page centroids; labelled "easy"."""

    def __init__(self, pages: int, seed: int = 0, tokens: int = 768, dim: int = 128, query_tokens: int = 20) -> None:
        import importlib.util

        spec = importlib.util.spec_from_file_location("late_corpus", Path(__file__).with_name("late_corpus.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # by path: bench/ is not put on sys.path (its ingest.py would shadow ingest)
        Corpus = module.Corpus  # noqa: N806

        self.n, self.dim, self.tokens, self._c, self._qt = pages, dim, tokens, Corpus(seed, tokens, dim), query_tokens
        self.doc_starts = np.arange(pages + 1, dtype=np.int64)  # one page a document

    def page(self, i: int) -> np.ndarray:
        return self._c.page(i)

    def query(self, target: int) -> np.ndarray:
        return self._c.query(target, self._qt)

    def describe(self) -> dict:
        return {"kind": "easy", "pages": self.n, "tokens": self.tokens, "dim": self.dim, "query_tokens": self._qt}


class NpzCorpus:
    """Real embeddings from one .npz (`dse export-vectors`).

    Keys: ``page_tokens`` (T, dim) float16/float32 and ``page_offsets`` (pages + 1,) int64;
    ``query_tokens`` (Tq, dim) and ``query_offsets`` (queries + 1,); optional ``targets``
    (queries,) int64 (the page each query was written for, -1: unknown) and ``doc_starts``.
    """

    def __init__(self, path: str | Path, pages: int | None = None) -> None:
        data = np.load(path, mmap_mode="r")
        self._tokens, self._offsets = data["page_tokens"], np.asarray(data["page_offsets"], np.int64)
        self.n = len(self._offsets) - 1 if pages is None else min(pages, len(self._offsets) - 1)
        self.dim = int(self._tokens.shape[1])
        self.tokens = int(np.mean(np.diff(self._offsets[: self.n + 1]))) if self.n else 0
        qt, qo = np.asarray(data["query_tokens"], np.float32), np.asarray(data["query_offsets"], np.int64)
        self.queries = [qt[qo[j] : qo[j + 1]] for j in range(len(qo) - 1)]
        self.targets = np.asarray(data["targets"], np.int64) if "targets" in data else np.full(len(self.queries), -1)
        self.doc_starts = (np.asarray(data["doc_starts"], np.int64) if "doc_starts" in data
                           else np.arange(self.n + 1, dtype=np.int64))
        self.doc_starts = np.unique(np.clip(np.concatenate([self.doc_starts, [self.n]]), 0, self.n))

    def page(self, i: int) -> np.ndarray:
        return np.asarray(self._tokens[self._offsets[i] : self._offsets[i + 1]], np.float32)

    def describe(self) -> dict:
        return {"kind": "npz", "pages": self.n, "tokens_mean": self.tokens, "dim": self.dim,
                "queries": len(self.queries)}


def documents(rng: np.random.Generator, pages: int, doc_pages: float) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive documents of geometric lengths (mean `doc_pages`, the last one cut) covering `pages`
    pages: their starts int64 (docs + 1,) and each page's document (pages,)."""
    sizes: list[int] = []
    while sum(sizes) < pages:
        sizes.append(int(rng.geometric(1.0 / doc_pages)))
    sizes[-1] -= sum(sizes) - pages
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64), np.repeat(np.arange(len(sizes)), sizes)


def groups(doc_starts: np.ndarray, n: int, commit_pages: int) -> list[tuple[int, int]]:
    """Page ranges committed together, as `dse index` does: whole documents until >= commit_pages pages."""
    out, a = [], 0
    bounds = doc_starts[(doc_starts > 0) & (doc_starts <= n)]
    for b in bounds:
        if b - a >= commit_pages or b == n:
            out.append((a, int(b)))
            a = int(b)
    if a < n:
        out.append((a, n))
    return out
