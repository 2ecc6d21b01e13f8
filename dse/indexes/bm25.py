"""Lexical search: BM25 (bm25s) over the token lists of the pages' text layer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from dse.encoders.base import VectorKind
from dse.indexes.base import topk
from dse.indexes.shards import ShardedEngine, atomic_write, check_allowed, check_k, empty_result, shard_path


class BM25Engine(ShardedEngine):
    """Pages as token lists, scored with BM25 by `bm25s`.

    The token lists are the data (kept in memory and on disk); the bm25s model is derived from
    them and rebuilt lazily on the first search after an add, because appending pages changes
    document frequencies and the average length, hence every IDF and length norm. Scores are
    bm25s's for `method` (default "lucene": ``idf = ln(1 + (N - df + 0.5) / (df + 0.5))``,
    ``tf / (tf + k1 (1 - b + b |d| / avgdl))`` per query token, duplicates counted). Query
    tokens absent from the corpus are ignored; an empty query or page scores 0.

    On disk: `shard-NNNNNN.jsonl`, one JSON list of tokens per page.

    Args:
        k1: Term-frequency saturation.
        b: Length normalisation.
        method: bm25s variant ("lucene", "robertson", "atire", "bm25l", "bm25+").
    """

    kind: ClassVar[VectorKind] = "text"
    marker: ClassVar[str] = ".jsonl"

    def __init__(self, k1: float = 1.5, b: float = 0.75, method: str = "lucene") -> None:
        super().__init__()
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"need k1 >= 0 and 0 <= b <= 1, got k1={k1!r}, b={b!r}")
        methods = ("lucene", "robertson", "atire", "bm25l", "bm25+")
        if method not in methods:
            raise ValueError(f"unknown BM25 method {method!r}; use one of {', '.join(methods)}")
        self.k1, self.b, self.method = float(k1), float(b), method
        self._docs: list[list[str]] = []
        self._model: Any = None  # bm25s.BM25, None when stale
        self._vocab: dict[str, int] = {}
        self._built: tuple[Any, dict[str, int]] = (None, {})

    def __len__(self) -> int:
        return len(self._docs)

    def options(self) -> dict[str, Any]:
        """Constructor options, recorded in the manifest."""
        return {"k1": self.k1, "b": self.b, "method": self.method}

    @staticmethod
    def _check(items: Sequence[Any], what: str) -> list[list[str]]:
        if isinstance(items, str):
            raise ValueError(f"{what} must be a list of token lists, got a string")
        out = []
        for i, tokens in enumerate(items):
            if isinstance(tokens, str) or not all(isinstance(t, str) for t in tokens):
                raise ValueError(f"{what}[{i}] must be a list of str tokens, got {type(tokens).__name__}")
            out.append(list(tokens))
        return out

    def add(self, vectors: Sequence[Sequence[str]]) -> None:
        """Append pages, each a list of tokens (as `BM25Encoder.encode_pages` returns)."""
        docs = self._check(vectors, "pages")
        if docs:
            self._docs.extend(docs)
            self._model = None

    def _copy_containers(self) -> None:
        self._docs = list(self._docs)

    def prepare(self) -> None:
        """Build the bm25s model now (it is otherwise built by the first search after an add)."""
        if self._model is None and self._docs:
            self._build()

    def _build(self) -> None:
        """(Re)build the bm25s model from all token lists."""
        import bm25s

        vocab: dict[str, int] = {}
        ids = [[vocab.setdefault(t, len(vocab)) for t in doc] for doc in self._docs]
        model = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        if vocab:
            model.index((ids, vocab), create_empty_token=False, show_progress=False)
        self._built = (model, vocab)
        self._model, self._vocab = model, vocab

    def scores(self, queries: Sequence[Sequence[str]]) -> np.ndarray:
        """BM25 score of every page for every query, float32 (n_queries, n_pages)."""
        qs = self._check(queries, "queries")
        if self._model is None:
            self._build()
        model, vocab = self._built  # one consistent pair, even while another thread rebuilds
        out = np.zeros((len(qs), len(self._docs)), np.float32)  # (nq, n)
        for i, q in enumerate(qs):
            ids = [vocab[t] for t in q if t in vocab]
            if ids:
                out[i] = model.get_scores_from_ids(ids)  # (n,)
        return out

    def search(
        self, queries: Sequence[Sequence[str]], k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k pages by BM25 for each token-list query (ties: lower row first).

        Scoring walks the postings of the query's tokens only (its cost does not grow with the
        pages a filter excludes); with `allowed`, the top-k is then taken among the allowed
        pages' scores alone. IDF and average length stay those of every stored page, deleted
        ones included, so a page's score does not depend on the filter.

        Returns:
            scores float32 (n_queries, k'), rows int64 (n_queries, k').
        """
        k = check_k(k)
        qs = self._check(queries, "queries")
        mask = check_allowed(allowed, len(self))
        idx = None if mask is None else np.flatnonzero(mask)  # (m,) allowed rows
        if min(k, len(self) if idx is None else len(idx)) == 0 or not qs:
            return empty_result(len(qs))
        if idx is None:
            return topk(self.scores(qs), k)
        top, cols = topk(self.scores(qs)[:, idx], k)  # (nq, k'), (nq, k') over the allowed columns
        return top, idx[cols]

    def tokens(self, row: int) -> list[str]:
        """Token list of one page."""
        return list(self._docs[row])

    def _read_shard(self, directory: Path, number: int, keep: int) -> int:
        path = shard_path(directory, number, self.marker)
        total = 0
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                total += 1
                if total <= keep:
                    try:
                        tokens = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}:{line_no} is not JSON: {exc}") from None
                    self.add(self._check([tokens], f"{path}:{line_no}"))
        return total

    def _write_lines(self, path: Path, docs: Sequence[Sequence[str]]) -> None:
        data = "".join(json.dumps(list(d), ensure_ascii=False) + "\n" for d in docs).encode("utf-8")
        atomic_write(path, lambda f: f.write(data))

    def _write_shard(self, directory: Path, number: int, start: int, stop: int) -> None:
        self._write_lines(shard_path(directory, number, self.marker), self._docs[start:stop])

    def _truncate_shard(self, directory: Path, number: int, keep: int) -> None:
        path = shard_path(directory, number, self.marker)
        with open(path, encoding="utf-8") as f:
            lines = [json.loads(line) for line in f if line.strip()][:keep]
        self._write_lines(path, lines)
