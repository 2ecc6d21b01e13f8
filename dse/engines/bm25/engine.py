"""Lexical search: BM25 over the token lists of the pages' text layer, incremental by segment.

Pages are held as segments (one per shard): a segment's postings list, for each of its terms,
the pages that contain it and how often. Document frequencies, the page count and the average
length are summed over segments when a query is scored, so adding a shard never rebuilds what
is there: a commit reads or writes one segment, and opening an index reads each shard's
postings instead of re-tokenising its text. Scores equal bm25s's (the library this engine
replaced, kept as its test oracle) for every `method`, in the same float32 arithmetic.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from dse.engines.bm25.documents import with_documents
from dse.engines.bm25.postings import Postings, idf_of, load_postings, save_postings, tf_component
from dse.engines.files import atomic_write, shard_path
from dse.engines.results import check_allowed, check_k, empty_result, topk
from dse.engines.shards import SegmentedEngine
from dse.types import VectorKind

METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
_POSTINGS = ".postings.npz"  # derived from the .jsonl (the data and the shard's commit marker), written before it


class BM25Engine(SegmentedEngine):
    """Pages as token lists, scored with BM25; IDF and average length over every stored page.

    Scores are bm25s's for `method` (default "lucene": ``idf = ln(1 + (N - df + 0.5) / (df + 0.5))``,
    ``tf / (tf + k1 (1 - b + b |d| / avgdl))`` per query token, duplicates counted). Query tokens
    absent from the corpus are ignored; an empty query or page scores 0 (bm25l and bm25+ give
    every page their non-occurrence score, as bm25s does).

    On disk: `shard-NNNNNN.jsonl`, one JSON list of tokens per page (the data; written last, it
    commits the shard), and `shard-NNNNNN.postings.npz`, the postings derived from it (indexes
    written before it existed are read from the JSONL).

    Args:
        k1: Term-frequency saturation.
        b: Length normalisation.
        method: bm25s variant ("lucene", "robertson", "atire", "bm25l", "bm25+").
        delta: The bm25l / bm25+ delta (bm25s's default).
        documents: Weight of the document score in a page's score (`dse.engines.bm25.documents`;
            pages need text-field version 2's `d:` tokens); 0: page scores alone, as
            bm25s's. Recorded only when set, so indexes from before it keep 0.
    """

    kind: ClassVar[VectorKind] = "text"
    marker: ClassVar[str] = ".jsonl"

    def __init__(
        self, k1: float = 1.5, b: float = 0.75, method: str = "lucene", delta: float = 0.5, documents: float = 0.0,
    ) -> None:
        super().__init__()
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"need k1 >= 0 and 0 <= b <= 1, got k1={k1!r}, b={b!r}")
        if method not in METHODS:
            raise ValueError(f"unknown BM25 method {method!r}; use one of {', '.join(METHODS)}")
        if not (math.isfinite(documents) and documents >= 0):
            raise ValueError(f"documents (the document score's weight) must be a finite number >= 0, got {documents!r}")
        self.k1, self.b, self.method, self.delta = float(k1), float(b), method, float(delta)
        self.documents = float(documents)
        self._total_length = 0

    def options(self) -> dict[str, Any]:
        """Constructor options, recorded in the manifest."""
        out: dict[str, Any] = {"k1": self.k1, "b": self.b, "method": self.method}
        if self.method in ("bm25l", "bm25+"):
            out["delta"] = self.delta
        if self.documents:
            out["documents"] = self.documents
        return out

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

    def _append(self, segment: Any) -> None:
        super()._append(segment)
        self._total_length += int(segment.lengths.sum()) if segment.pages else 0

    def add(self, vectors: Sequence[Sequence[str]]) -> None:
        """Append pages, each a list of tokens (as `dse.text.tokenizer.Tokenizer.tokenize_all` returns)."""
        docs = self._check(vectors, "pages")
        if docs:
            self._append(Postings.build(docs, keep_docs=True, fields=self.documents > 0))

    def scores(self, queries: Sequence[Sequence[str]]) -> np.ndarray:
        """BM25 score of every page for every query, float32 (n_queries, n_pages)."""
        qs = self._check(queries, "queries")
        n = self._n
        out = np.zeros((len(qs), n), np.float32)  # (nq, n)
        if n == 0:
            return out
        segments, starts = list(self._segments), list(self._starts)  # this state, whatever is appended later
        avgdl = np.float64(self._total_length) / n  # as bm25s: numpy float64 mean
        formula = idf_of(self.method)
        ratio = avgdl / avgdl if avgdl else np.float64(1.0)  # as bm25s (pages with no text at all: 1)
        nonocc_norm = (1 - self.b) + self.b * ratio
        for qi, q in enumerate(qs):
            absent: list[np.float32] = []  # bm25l / bm25+: non-occurrence score of each query token
            for term in q:
                df = sum(seg.df(term) for seg in segments)
                if df == 0:
                    continue
                raw_idf = formula(df, n)
                idf = np.float32(raw_idf)
                nonocc = None
                if self.method in ("bm25l", "bm25+"):
                    nonocc = np.float32(raw_idf * tf_component(self.method, 0, nonocc_norm, self.k1, self.delta))
                    absent.append(nonocc)
                for seg, first in zip(segments, starts):
                    col = seg.terms.get(term)
                    if col is None:
                        continue
                    a, z = int(seg.indptr[col]), int(seg.indptr[col + 1])
                    docs = seg.docs[a:z]  # (m,) pages of this segment holding the term
                    norm = (1 - self.b) + self.b * seg.lengths[docs] / avgdl  # (m,) float64
                    tfs = seg.tfs[a:z].astype(np.float64)  # (m,)
                    contrib = idf * tf_component(self.method, tfs, norm, self.k1, self.delta)
                    if nonocc is not None:
                        contrib = contrib - nonocc
                    out[qi, first + docs] += contrib.astype(np.float32)  # (m,), each page once per term
            if absent:
                out[qi] += np.asarray(absent, np.float32).sum()  # as bm25s adds them, to every page
        return out

    def search(
        self, queries: Sequence[Sequence[str]], k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k pages by BM25 for each token-list query (ties: lower row first).

        With `documents` > 0, page scores are combined with their documents' scores
        (`dse.engines.bm25.documents`), which count only the allowed pages.

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
        scores = self.scores(qs)  # (nq, n)
        if self.documents:
            scores = with_documents(self, qs, scores, self.documents, mask)
        if idx is None:
            return topk(scores, k)
        top, cols = topk(scores[:, idx], k)  # (nq, k'), (nq, k') over the allowed columns
        return top, idx[cols]

    def tokens(self, row: int) -> list[str]:
        """Token list of one page (read from its shard once saved)."""
        if not 0 <= row < self._n:
            raise IndexError(f"row {row} out of range for {self._n} pages")
        s = int(np.searchsorted(np.asarray(self._starts), row, side="right") - 1)
        seg, first = self._segments[s], self._starts[s]
        if seg.pending is not None:
            return list(seg.pending[row - first])
        assert seg.shard is not None  # a segment is pending until saved, then read from its shard
        return self._read_lines(seg.shard)[row - first]

    # ------------------------------------------------------------------ persistence

    def _read_lines(self, path: Path) -> list[list[str]]:
        docs = []
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    tokens = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{line_no} is not JSON: {exc}") from None
                docs.append(self._check([tokens], f"{path}:{line_no}")[0])
        return docs

    def _read_shard(self, directory: Path, number: int, keep: int) -> int:
        path = shard_path(directory, number, self.marker)
        segment, total = load_postings(shard_path(directory, number, _POSTINGS)), None
        if segment is not None:
            total = segment.pages
        else:  # an index written before postings files: tokenised text only
            docs = self._read_lines(path)
            segment, total = Postings.build(docs[:keep], keep_docs=False, fields=self.documents > 0), len(docs)
        segment.shard = path
        self._append(segment.head(keep))
        return total

    def _saved(self, directory: Path, number: int, start: int, stop: int) -> None:
        """The pages just saved stay in memory as postings (their token lists are dropped)."""
        while self._segments and self._starts[-1] >= start:
            seg = self._segments.pop()
            self._starts.pop()
            self._total_length -= int(seg.lengths.sum())
        self._n = start
        self._read_shard(directory, number, stop - start)

    def _pending_docs(self, start: int, stop: int) -> list[list[str]]:
        docs: list[list[str]] = []
        for seg, first in zip(self._segments, self._starts):
            if first + seg.pages <= start or first >= stop:
                continue
            if seg.pending is None:
                raise ValueError(f"rows {first}..{first + seg.pages} are not pending")
            docs.extend(seg.pending[max(start - first, 0): stop - first])
        return docs

    def _write_shard(self, directory: Path, number: int, start: int, stop: int) -> None:
        docs = self._pending_docs(start, stop)
        save_postings(shard_path(directory, number, _POSTINGS), Postings.build(docs, keep_docs=False, fields=self.documents > 0))
        self._write_lines(shard_path(directory, number, self.marker), docs)  # commits the shard

    def _write_lines(self, path: Path, docs: Sequence[Sequence[str]]) -> None:
        data = "".join(json.dumps(list(d), ensure_ascii=False) + "\n" for d in docs).encode("utf-8")
        atomic_write(path, lambda f: f.write(data))

    def _truncate_shard(self, directory: Path, number: int, keep: int) -> None:
        path = shard_path(directory, number, self.marker)
        docs = self._read_lines(path)[:keep]
        save_postings(shard_path(directory, number, _POSTINGS), Postings.build(docs, keep_docs=False, fields=self.documents > 0))
        self._write_lines(path, docs)


__all__ = ["BM25Engine", "METHODS"]
