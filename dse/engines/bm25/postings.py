"""BM25's postings of consecutive pages (term-major) with their files, and bm25s's IDF and term-frequency formulas."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dse.engines.files import atomic_write

FIELD_MARK = ":"
"""In a field token (`dse.text.fields`: `d:<key>`, `t:<token>`), never in a word the tokenizer makes."""


def idf_of(method: str) -> Callable[[int, int], float]:
    """Inverse document frequency of a term in `df` of `n` pages (bm25s's formulas)."""
    def robertson(df: int, n: int) -> float:
        return math.log(max((n - df + 0.5) / (df + 0.5), 1.0))

    return {
        "robertson": robertson,
        "lucene": lambda df, n: math.log(1 + (n - df + 0.5) / (df + 0.5)),
        "atire": lambda df, n: math.log(n / df),
        "bm25l": lambda df, n: math.log((n + 1) / (df + 0.5)),
        "bm25+": lambda df, n: math.log((n + 1) / df),
    }[method]


def tf_component(method: str, tf: Any, norm: Any, k1: float, delta: float) -> Any:
    """Term-frequency component; `norm` is `(1 - b) + b * |d| / avgdl` (float64)."""
    if method in ("robertson", "lucene"):
        return tf / (k1 * norm + tf)
    if method == "atire":
        return (tf * (k1 + 1)) / (tf + k1 * norm)
    if method == "bm25l":
        c = tf / norm
        return ((k1 + 1) * (c + delta)) / (k1 + c + delta)
    return ((k1 + 1) * tf) / (k1 * norm + tf) + delta  # bm25+


@dataclass
class Postings:
    """The postings of consecutive pages (term-major).

    Attributes:
        terms: Term -> column.
        indptr: int64 (n_terms + 1,): postings of column c are `[indptr[c], indptr[c + 1])`.
        docs: int32 (nnz,) page of each posting, relative to the segment's first page.
        tfs: float32 (nnz,) how often the term occurs on that page.
        lengths: int64 (pages,) tokens per page.
        pending: The token lists, until the segment is saved.
        shard: The segment's .jsonl once saved (its token lists, for `tokens`).
    """

    terms: dict[str, int]
    indptr: np.ndarray
    docs: np.ndarray
    tfs: np.ndarray
    lengths: np.ndarray
    pending: list[list[str]] | None = field(default=None, repr=False)
    shard: Path | None = None

    @property
    def pages(self) -> int:
        return int(len(self.lengths))

    def df(self, term: str) -> int:
        col = self.terms.get(term)
        return 0 if col is None else int(self.indptr[col + 1] - self.indptr[col])

    @classmethod
    def build(cls, docs: Sequence[Sequence[str]], keep_docs: bool, fields: bool = False) -> "Postings":
        """Postings of token lists (duplicates counted as term frequency).

        With `fields`, a page's length counts its words only, not its field tokens (`FIELD_MARK`).
        """
        terms: dict[str, int] = {}
        cols, rows, tfs = [], [], []
        for row, tokens in enumerate(docs):
            for term, tf in Counter(tokens).items():
                cols.append(terms.setdefault(term, len(terms)))
                rows.append(row)
                tfs.append(tf)
        col = np.asarray(cols, np.int64)
        order = np.argsort(col, kind="stable")  # term-major, pages ascending within a term
        indptr = np.zeros(len(terms) + 1, np.int64)
        np.cumsum(np.bincount(col, minlength=len(terms)), out=indptr[1:])
        lengths = np.asarray([sum(1 for t in d if FIELD_MARK not in t) if fields else len(d) for d in docs], np.int64)
        return cls(terms, indptr, np.asarray(rows, np.int32)[order], np.asarray(tfs, np.float32)[order], lengths,
                   [list(d) for d in docs] if keep_docs else None)

    def head(self, keep: int) -> "Postings":
        """The postings of the first `keep` pages."""
        if keep >= self.pages:
            return self
        alive = self.docs < keep  # (nnz,)
        column = np.repeat(np.arange(len(self.terms)), np.diff(self.indptr))  # (nnz,) term of each posting
        indptr = np.zeros(len(self.terms) + 1, np.int64)
        np.cumsum(np.bincount(column[alive], minlength=len(self.terms)), out=indptr[1:])
        pending = None if self.pending is None else self.pending[:keep]
        return Postings(self.terms, indptr, self.docs[alive], self.tfs[alive], self.lengths[:keep], pending, self.shard)


def save_postings(path: Path, seg: Postings) -> None:
    """Atomically write a segment's postings (no pickles: terms as one newline-joined UTF-8 blob)."""
    blob = np.frombuffer("\n".join(seg.terms).encode("utf-8"), dtype=np.uint8)

    def write(f: Any) -> None:
        np.savez(f, terms=blob, n_terms=np.int64(len(seg.terms)), indptr=seg.indptr, docs=seg.docs, tfs=seg.tfs,
                 lengths=seg.lengths)

    atomic_write(path, write)


def load_postings(path: Path) -> Postings | None:
    """A segment's postings, or None when the file is absent or does not fit (then the JSONL is read)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            n_terms = int(z["n_terms"])
            terms = z["terms"].tobytes().decode("utf-8").split("\n") if n_terms else []
            seg = Postings({t: i for i, t in enumerate(terms)}, z["indptr"].astype(np.int64), z["docs"].astype(np.int32),
                           z["tfs"].astype(np.float32), z["lengths"].astype(np.int64))
    except (OSError, ValueError, KeyError, UnicodeDecodeError):
        return None
    if len(seg.terms) != n_terms or len(seg.indptr) != n_terms + 1 or len(seg.docs) != len(seg.tfs) or (
            len(seg.docs) and (int(seg.indptr[-1]) != len(seg.docs) or int(seg.docs.max()) >= seg.pages)):
        return None
    return seg
